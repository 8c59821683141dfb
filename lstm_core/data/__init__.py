"""Ids -> what the trainer reads.

dataset.py      a text prepared to train on: vocabulary and id tensors per split, saved as plain files
batching.py     contiguous streams cut into windows with one-step-shifted targets
"""
