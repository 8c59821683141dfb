"""Folds by play: which whole plays a run tests on, which it validates on, and which it trains on.

A language model scored on text from the plays it trained on (or on plays that chose its settings)
looks better than it is. So a quality figure comes from several folds, each holding out a few whole
plays as its *test* plays (scored once, at the end) and a few others as its *validation* plays (the
only text any choice of settings or checkpoint may look at); the rest of the plays train.

Within a fold the three sets are disjoint and together hold every play. Across folds the test
plays are disjoint, and so are the validation plays, and no fold's validation play is another
fold's test play: each play is held out at most once. Where the plays differ in length, the held-out
plays are dealt so that the folds' test sets (and validation sets) come out near the same size.

The split depends only on its inputs: plays are ordered by a SHA-256 of the seed and the name, not
by Python's ``hash`` (which changes from process to process), the global random state, or the order
the names came in. No torch here: the bench and the tests import it without loading PyTorch.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from lstm_core.errors import InputError

MIN_FOLDS = 3
"""Fewer folds than this give a median that is one fold's figure, or the mean of two."""


@dataclass(frozen=True)
class Fold:
    """One fold's plays, each set sorted by name."""

    index: int
    """0, 1, ...: the fold's place in the split."""
    test: tuple[str, ...]
    valid: tuple[str, ...]
    train: tuple[str, ...]

    def to_dict(self) -> dict[str, object]:
        return {"index": self.index, "test": list(self.test), "valid": list(self.valid), "train": list(self.train)}


def _draw_order(names: Collection[str], seed: int) -> list[str]:
    """The names in an order fixed by ``seed`` alone: sorted by the SHA-256 of the seed and the name."""

    def key(name: str) -> tuple[bytes, str]:
        return hashlib.sha256(f"{seed}\0{name}".encode()).digest(), name

    return sorted(names, key=key)


def _deal(drawn: Sequence[str], folds: int, per_fold: int, sizes: Mapping[str, float]) -> list[list[str]]:
    """Deal ``drawn`` (``folds * per_fold`` names) into ``folds`` groups of ``per_fold``, balancing sizes.

    The largest first, each to the group with the smallest total so far that still has room (ties:
    the lower group). With equal sizes that is dealing round the table in the drawn order.
    """
    groups: list[list[str]] = [[] for _ in range(folds)]
    totals = [0.0] * folds
    for name in sorted(drawn, key=lambda name: -sizes.get(name, 1.0)):  # sorted() is stable: drawn order breaks ties
        open_groups = [index for index in range(folds) if len(groups[index]) < per_fold]
        target = min(open_groups, key=lambda index: (totals[index], index))
        groups[target].append(name)
        totals[target] += sizes.get(name, 1.0)
    return groups


def split_by_play(
    plays: Collection[str],
    folds: int = MIN_FOLDS,
    seed: int = 0,
    *,
    test_plays: int = 3,
    valid_plays: int = 3,
    sizes: Mapping[str, float] | None = None,
    not_for_test: Collection[str] = (),
) -> list[Fold]:
    """Split ``plays`` into ``folds`` folds of ``test_plays`` test and ``valid_plays`` validation plays.

    ``sizes`` (a play's length in any unit, e.g. its words or its file's bytes; every play counts 1
    without it) balances the folds' held-out sets. ``not_for_test`` names plays that may validate or
    train but never test: plays that have already steered a choice of settings. Raises
    :class:`InputError` when the plays cannot fill the folds, or the arguments make no sense.
    """
    names = list(plays)
    if len(set(names)) != len(names):
        repeated = sorted({name for name in names if names.count(name) > 1})
        raise InputError(f"each play can be in a split once; repeated: {', '.join(repeated)}")
    if folds < MIN_FOLDS:
        raise InputError(f"a split by play needs at least {MIN_FOLDS} folds, got {folds}")
    if test_plays < 1 or valid_plays < 1:
        raise InputError(
            f"each fold needs at least one test play and one validation play, got {test_plays} and {valid_plays}"
        )
    unknown = sorted(set(not_for_test) - set(names))
    if unknown:
        raise InputError(f"plays kept from testing are not among the plays to split: {', '.join(unknown)}")
    if sizes is not None:
        unsized = sorted(set(names) - set(sizes))
        if unsized:
            raise InputError(f"no size given for: {', '.join(unsized)}")
        if any(not sizes[name] > 0 for name in names):
            raise InputError("every play's size must be a positive number")
    testable = [name for name in names if name not in set(not_for_test)]
    if len(testable) < folds * test_plays:
        raise InputError(
            f"{folds} folds of {test_plays} test plays need {folds * test_plays} plays that may be tested, "
            f"but there are {len(testable)}"
        )
    if len(names) < folds * (test_plays + valid_plays):
        raise InputError(
            f"{folds} folds of {test_plays} test and {valid_plays} validation plays hold out "
            f"{folds * (test_plays + valid_plays)} plays in all (each play at most once), but there are {len(names)}"
        )
    weights = sizes or {}
    test_drawn = _draw_order(testable, seed)[: folds * test_plays]
    rest = set(names) - set(test_drawn)
    valid_drawn = _draw_order(rest, seed)[: folds * valid_plays]
    test_groups = _deal(test_drawn, folds, test_plays, weights)
    valid_groups = _deal(valid_drawn, folds, valid_plays, weights)
    split = []
    for index, (test, valid) in enumerate(zip(test_groups, valid_groups, strict=True)):
        held_out = set(test) | set(valid)
        train = sorted(name for name in names if name not in held_out)
        split.append(Fold(index, tuple(sorted(test)), tuple(sorted(valid)), tuple(train)))
    return split
