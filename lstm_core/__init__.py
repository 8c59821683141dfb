"""LSTM Playhouse core: text pipeline, model, trainer, checkpoints and samplers (no UI code)."""
