"""The command line: ``python -m lstm_core train | evaluate | generate | export | plays``.

main.py          the parser assembled from the commands, and main()
flags.py         flags built from the settings dataclasses, UsageError and the exit codes
progress.py      the training progress on a terminal
train.py         train: the text and settings from the flags, admitted, the run folder begun
training_run.py  one training process: trainer, recorder, printer, memory watchdog, signals
evaluate.py      evaluate: a model's perplexity on a text
generate.py      generate: continue prime texts
export.py        export: a model-only copy of a checkpoint
plays.py         plays: the bundled plays' names
"""
