"""Folds by whole play: disjoint, complete, and the same for the same inputs in any process."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from lstm_core.errors import InputError
from lstm_core.evaluation.folds import split_by_play
from lstm_core.text.corpus import list_plays

ROOT = Path(__file__).resolve().parent.parent
OLD_TEST_PLAYS = ("hamlet", "the-tempest", "julius-caesar")


# ---- the splitter ---------------------------------------------------------------------------


def test_every_fold_splits_all_plays_into_disjoint_test_validation_and_training_sets() -> None:
    plays = list(list_plays())
    folds = split_by_play(plays, 4, seed=7)
    assert [fold.index for fold in folds] == [0, 1, 2, 3]
    for fold in folds:
        assert (len(fold.test), len(fold.valid)) == (3, 3)
        assert len(fold.train) == len(plays) - 6
        assert sorted(fold.test + fold.valid + fold.train) == sorted(plays)  # every play, each once
    held_out = [name for fold in folds for name in fold.test + fold.valid]
    # No play is held out twice: test sets are disjoint across folds, and no fold validates on another's test play.
    assert len(held_out) == len(set(held_out)) == 24


def test_the_split_depends_only_on_the_plays_the_folds_and_the_seed() -> None:
    plays = list(list_plays())
    random.seed(1)
    first = split_by_play(plays, 3, seed=5)
    random.seed(2)  # the global random state plays no part
    shuffled = plays[:]
    random.Random(3).shuffle(shuffled)
    assert split_by_play(shuffled, 3, seed=5) == first  # nor the order the names come in
    assert split_by_play(set(plays), 3, seed=5) == first
    assert split_by_play(plays, 3, seed=6) != first  # while the seed does


def test_the_split_is_the_same_in_another_process_with_another_string_hash() -> None:
    plays = sorted(list_plays())
    expected = [fold.to_dict() for fold in split_by_play(plays, 3, seed=11)]
    script = (
        "import json, sys\n"
        "from lstm_core.evaluation.folds import split_by_play\n"
        "folds = split_by_play(json.loads(sys.argv[1]), 3, seed=11)\n"
        "print(json.dumps({'folds': [f.to_dict() for f in folds], 'torch': 'torch' in sys.modules}))\n"
    )
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        done = subprocess.run(
            [sys.executable, "-c", script, json.dumps(plays[::-1])],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        answer = json.loads(done.stdout)
        assert answer["folds"] == expected
        assert answer["torch"] is False  # the splitter loads no PyTorch


def test_plays_kept_from_testing_only_validate_or_train() -> None:
    plays = list(list_plays())
    for seed in range(5):
        for fold in split_by_play(plays, 3, seed, not_for_test=OLD_TEST_PLAYS):
            assert not set(fold.test) & set(OLD_TEST_PLAYS)
            assert set(OLD_TEST_PLAYS) <= set(fold.valid + fold.train)


def test_sizes_balance_the_folds_test_plays() -> None:
    # Six plays may be tested, so all six are, two to a fold: 6+1, 5+2 and 4+3 are the even deal.
    sizes = {f"play-{size}": float(size) for size in range(1, 7)}
    kept = [f"kept-{index}" for index in range(6)]
    plays = list(sizes) + kept
    folds = split_by_play(
        plays, 3, seed=0, test_plays=2, valid_plays=2, sizes={**sizes, **dict.fromkeys(kept, 1.0)}, not_for_test=kept
    )
    assert sorted(sum(sizes[name] for name in fold.test) for fold in folds) == [7.0, 7.0, 7.0]


def test_too_few_folds_or_plays_are_refused_with_the_reason() -> None:
    plays = list(list_plays())
    with pytest.raises(InputError, match="at least 3 folds, got 2"):
        split_by_play(plays, 2)
    with pytest.raises(InputError, match=r"hold out 42 plays in all .* there are 38"):
        split_by_play(plays, 7)
    with pytest.raises(InputError, match="need 6 plays that may be tested, but there are 5"):
        split_by_play([f"p{index}" for index in range(12)], 3, test_plays=2, not_for_test=[f"p{i}" for i in range(7)])
    with pytest.raises(InputError, match="repeated: hamlet"):
        split_by_play([*plays, "hamlet"], 3)
    with pytest.raises(InputError, match="not among the plays to split: macbath"):
        split_by_play(plays, 3, not_for_test=["macbath"])
    with pytest.raises(InputError, match="at least one test play"):
        split_by_play(plays, 3, test_plays=0)
