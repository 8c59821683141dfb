"""Turning a dataset into a trained model.

trainer.py      truncated BPTT, validation, checkpoints and snapshots, events through one callback
averaging.py    weight averaging over the last part of a run
distributed.py  one trainer as one rank of several processes (torchrun)
"""
