"""Ids -> batches: parallel contiguous streams cut into windows, the way LSTM LMs are trained.

The token stream is cut into ``batch_size`` equal, contiguous streams, one per row::

    ids:      a b c d e f g h i j k l m n o p q r s t u v w x y      (25 ids, batch_size 3)
    streams:  a b c d e f g h      <- row 0      (the last 25 % 3 = 1 id, y, is dropped)
              i j k l m n o p      <- row 1
              q r s t u v w x      <- row 2

Windows of ``seq_len`` columns are then read left to right; the targets are the same window
moved one column on, so every input has the true next word as its target::

    window 0 (seq_len 3):  inputs  a b c   targets  b c d
                                   i j k            j k l
                                   q r s            r s t
    window 1:              inputs  d e f   targets  e f g
    window 2 (shorter):    inputs  g       targets  h

Row ``r`` of window ``k + 1`` continues row ``r`` of window ``k``, so the LSTM state at the end
of one window is the right state to start the next (truncated back-propagation through time).
Nothing wraps around and nothing is padded: the recipe's ``np.resize`` repeated the text to fill
its batches, and its ``np.roll`` gave each row's last input the row's own first word as target.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

from lstm_core.errors import InputError


def min_tokens(batch_size: int, seq_len: int) -> int:
    """The fewest ids that make one full window: ``batch_size * (seq_len + 1)``."""
    return batch_size * (seq_len + 1)


def batchify(ids: Sequence[int] | torch.Tensor, batch_size: int, seq_len: int, what: str = "the text") -> torch.Tensor:
    """``(batch_size, n)`` contiguous streams; raises ValueError if ``ids`` cannot fill one window."""
    if batch_size < 1 or seq_len < 1:
        raise InputError(f"batch_size and seq_len must be at least 1, got {batch_size} and {seq_len}")
    ids = torch.as_tensor(ids, dtype=torch.long)
    needed = min_tokens(batch_size, seq_len)
    if ids.numel() < needed:
        raise InputError(
            f"{what} has {ids.numel():,} words, too few for batch_size {batch_size} and sequence length "
            f"{seq_len}: one training window needs at least batch_size x (seq_len + 1) = {needed:,} words. "
            f"Use more text or a smaller batch size or sequence length."
        )
    n = ids.numel() // batch_size
    return ids[: n * batch_size].view(batch_size, n)


def _windows_in(length: int, seq_len: int) -> int:
    """How many windows of at most ``seq_len`` inputs streams of ``length`` ids hold (each input
    needs the next id as its target)."""
    return max(0, -(-(length - 1) // seq_len))


def num_windows(streams: torch.Tensor, seq_len: int) -> int:
    """How many windows :func:`windows` yields (the last may be shorter than ``seq_len``)."""
    return _windows_in(streams.size(1), seq_len)


def steps_per_epoch(train_tokens: int, batch_size: int, seq_len: int) -> int:
    """How many steps one epoch over ``train_tokens`` words takes in one process: the windows of
    :func:`batchify`'s streams, counted without building them (for a page that has not prepared
    the data)."""
    return _windows_in(train_tokens // batch_size, seq_len)


def windows(streams: torch.Tensor, seq_len: int, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(inputs, targets)``, each ``(batch, <=seq_len)``, in order, from window ``start``."""
    last = streams.size(1) - 1
    for begin in range(start * seq_len, last, seq_len):
        length = min(seq_len, last - begin)
        yield streams[:, begin : begin + length], streams[:, begin + 1 : begin + 1 + length]
