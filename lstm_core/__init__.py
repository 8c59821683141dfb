"""LSTM Playhouse core: text pipeline, model, trainer, checkpoints and samplers (no UI code).

The folders follow the data, from a text's words to what a trained model writes::

    text/         where words come from and how they become ids (no torch: the first page imports it)
    data/         ids -> the batches the trainer reads
    model/        the model, its fast inference path, checkpoints, memory estimates
    training/     the trainer, its events (no torch), averaging, several processes
    runs/         a training run as a folder on disk
    evaluation/   scoring a text, the n-gram baselines, where a run stands
    sampling/     choosing words: options, processors, decoding, step by step
    explain/      looking inside a trained model
    system/       devices, threads, memory and other processes
    cli/          the command line

Beside them: config.py (the hyperparameters), fields.py (the field metadata flags and widgets
are built from), errors.py (the error bad input raises), files.py (atomic writes).
"""
