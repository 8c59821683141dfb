"""Batching (lstm_core.data.batching): contiguous streams, one-step targets, no wrap-around."""

from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from lstm_core.data.batching import batchify, min_tokens, num_windows, steps_per_epoch, windows


def test_batchify_cuts_contiguous_rows_and_drops_the_remainder() -> None:
    # The module docstring's picture: 25 ids, batch_size 3 -> rows of 8, the last id dropped.
    streams = batchify(list(range(25)), batch_size=3, seq_len=3)
    assert streams.shape == (3, 8)
    assert streams.dtype == torch.long
    assert streams.tolist() == [list(range(0, 8)), list(range(8, 16)), list(range(16, 24))]


def test_batchify_accepts_a_tensor() -> None:
    ids = torch.arange(10, 30)
    assert torch.equal(batchify(ids, batch_size=2, seq_len=4), ids.view(2, 10))


def test_windows_shapes_and_targets_match_the_diagram() -> None:
    streams = batchify(list(range(25)), batch_size=3, seq_len=3)
    got = list(windows(streams, seq_len=3))
    assert [tuple(x.shape) for x, _ in got] == [(3, 3), (3, 3), (3, 1)]
    assert [tuple(y.shape) for _, y in got] == [(3, 3), (3, 3), (3, 1)]
    inputs, targets = got[0]
    assert inputs.tolist() == [[0, 1, 2], [8, 9, 10], [16, 17, 18]]
    assert targets.tolist() == [[1, 2, 3], [9, 10, 11], [17, 18, 19]]
    assert got[2][0].tolist() == [[6], [14], [22]]
    assert got[2][1].tolist() == [[7], [15], [23]]
    assert num_windows(streams, 3) == 3


def _random_ids(n: int, seed: int = 0) -> torch.Tensor:
    # Distinct ids, in a shuffled order, so that any misplaced id is detected.
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(n, generator=generator)


def test_targets_are_inputs_moved_one_step_and_each_row_continues_its_stream() -> None:
    streams = batchify(_random_ids(103), batch_size=4, seq_len=5)
    begin = 0
    for inputs, targets in windows(streams, seq_len=5):
        length = inputs.size(1)
        assert torch.equal(targets[:, :-1], inputs[:, 1:])
        # Each row's last target is the next id of that row's stream (never another row's,
        # never the row's own first id).
        assert torch.equal(targets[:, -1], streams[:, begin + length])
        begin += length
    assert begin == streams.size(1) - 1


def test_consecutive_windows_are_contiguous_without_wrap_around() -> None:
    streams = batchify(_random_ids(200, seed=1), batch_size=6, seq_len=7)
    got = list(windows(streams, seq_len=7))
    assert torch.equal(torch.cat([x for x, _ in got], dim=1), streams[:, :-1])
    assert torch.equal(torch.cat([y for _, y in got], dim=1), streams[:, 1:])
    for (x0, y0), (x1, _) in itertools.pairwise(got):
        assert torch.equal(x1[:, 0], y0[:, -1])  # window k + 1 starts where window k's targets end
        assert x0.size(1) == 7


def test_start_offset_skips_windows() -> None:
    streams = batchify(list(range(100)), batch_size=2, seq_len=4)
    everything = list(windows(streams, seq_len=4))
    for start in (0, 1, 3, len(everything) - 1):
        resumed = list(windows(streams, seq_len=4, start=start))
        assert len(resumed) == len(everything) - start
        for (x, y), (ex, ey) in zip(resumed, everything[start:], strict=True):
            assert torch.equal(x, ex) and torch.equal(y, ey)
    assert list(windows(streams, seq_len=4, start=len(everything))) == []
    assert list(windows(streams, seq_len=4, start=len(everything) + 5)) == []


def test_exactly_min_tokens_gives_one_full_window() -> None:
    assert min_tokens(3, 3) == 12
    streams = batchify(list(range(12)), batch_size=3, seq_len=3)
    got = list(windows(streams, seq_len=3))
    assert len(got) == 1 == num_windows(streams, 3)
    assert got[0][0].shape == (3, 3)


def test_too_short_text_says_the_minimum_number_of_words() -> None:
    with pytest.raises(ValueError, match=r"at least batch_size x \(seq_len \+ 1\) = 12 words") as info:
        batchify(list(range(11)), batch_size=3, seq_len=3, what="the validation text")
    assert "the validation text has 11 words" in str(info.value)


def test_minimum_is_formatted_with_thousands_separators() -> None:
    with pytest.raises(ValueError, match="2,080 words"):
        batchify([1, 2, 3], batch_size=32, seq_len=64)


@pytest.mark.parametrize(("batch_size", "seq_len"), [(0, 5), (5, 0), (-1, 5)])
def test_batch_size_and_seq_len_must_be_positive(batch_size: int, seq_len: int) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        batchify(list(range(100)), batch_size=batch_size, seq_len=seq_len)


@given(
    n=st.integers(min_value=1, max_value=400),
    batch_size=st.integers(min_value=1, max_value=8),
    seq_len=st.integers(min_value=1, max_value=12),
)
def test_num_windows_agrees_with_windows_and_all_ids_are_used(n: int, batch_size: int, seq_len: int) -> None:
    ids = torch.arange(n)
    if n < min_tokens(batch_size, seq_len):
        with pytest.raises(ValueError):
            batchify(ids, batch_size, seq_len)
        return
    streams = batchify(ids, batch_size, seq_len)
    assert streams.shape == (batch_size, n // batch_size)
    got = list(windows(streams, seq_len))
    assert num_windows(streams, seq_len) == len(got) == steps_per_epoch(n, batch_size, seq_len)
    assert all(1 <= x.size(1) <= seq_len and x.shape == y.shape for x, y in got)
    assert all(x.size(1) == seq_len for x, _ in got[:-1])
    assert torch.equal(torch.cat([y for _, y in got], dim=1), streams[:, 1:])
    # With ids 0, 1, 2, ... every target is its input plus one: nothing wraps around.
    assert all(torch.equal(y, x + 1) for x, y in got)
