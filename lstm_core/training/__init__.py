"""Turning a dataset into a trained model.

trainer.py      the loop: truncated BPTT, evaluations, checkpoints and snapshots, events through one callback
events.py       what the trainer reports (steps, evaluations, samples, checkpoints, the end); no torch
objective.py    what training minimises (the loss plus activation penalties) and the optimizer
schedule.py     the learning rate at each step
clock.py        the run's training time across resumes, its time limit and its time budget
validation.py   what an evaluation measures: the validation loss over the ranks, prime-text samples
resume.py       a run as a checkpoint and back; the settings a resume may change
averaging.py    weight averaging over the last part of a run
distributed.py  one trainer as one rank of several processes (torchrun)
handshake.py    rank 0's setup of the run (config, data, checkpoint) sent to the other ranks
"""
