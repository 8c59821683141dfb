"""The command line: ``python -m lstm_core train | evaluate | generate | export | plays | resources``.

main.py                the parser assembled from the commands, and main()
flags.py               flags built from the settings dataclasses, UsageError and the exit codes
progress.py            the training progress on a terminal
train_command.py       train: the text and settings from the flags, admitted, the run folder begun
training_run.py        one training process: trainer, recorder, printer, memory watchdog, signals
evaluate_command.py    evaluate: a model's perplexity on a text
generate_command.py    generate: continue prime texts
export_command.py      export: a model-only copy of a checkpoint
plays_command.py       plays: the bundled plays' names
resources_command.py   resources: the CPUs and memory this process may use, and the app's caps here
"""
