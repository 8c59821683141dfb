"""Folds by whole play, and the quality protocol of bench/bench_quality.py: test plays read once, at the end."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

import bench.bench_quality as bench_quality
from bench.bench_quality import FoldRow, medians, run_folds, score_saved, table, train_fold
from lstm_core.config import Config
from lstm_core.data.dataset import prepare_pair
from lstm_core.errors import InputError
from lstm_core.evaluation.folds import Fold, split_by_play
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


# ---- the protocol ---------------------------------------------------------------------------

WORDS = tuple(f"word{index}" for index in range(16))


def made_up_plays(count: int = 8, words: int = 240) -> dict[str, str]:
    """Small texts over one small vocabulary, each its own mix of it, ten words a line."""
    plays = {}
    for index in range(count):
        draw = random.Random(index)
        text = [draw.choice(WORDS[: 8 + index]) for _ in range(words)]
        plays[f"play-{index}"] = "\n".join(" ".join(text[start : start + 10]) for start in range(0, words, 10))
    return plays


@pytest.fixture
def protocol_config(tiny_config: Config) -> Config:
    return tiny_config.replace(epochs=1, min_word_freq=0)


def test_no_fold_reads_its_test_plays_until_every_fold_has_trained(
    protocol_config: Config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plays = made_up_plays()
    folds = split_by_play(plays, 3, seed=1, test_plays=1, valid_plays=1)
    log: list[tuple[str, object]] = []
    test_splits_seen_by_the_trainer: list[int] = []

    class WatchedTrainer(bench_quality.Trainer):
        def __init__(self, config, dataset, **options) -> None:  # type: ignore[no-untyped-def]
            test_splits_seen_by_the_trainer.append(dataset.test.numel())
            super().__init__(config, dataset, **options)

        def fit(self):  # type: ignore[no-untyped-def]
            result = super().fit()
            log.append(("trained", None))
            return result

    def read_play(name: str) -> str:
        log.append(("read", name))
        return plays[name]

    monkeypatch.setattr(bench_quality, "Trainer", WatchedTrainer)
    rows = run_folds(
        folds,
        protocol_config,
        tmp_path,
        time_limit_s=None,
        order=2,
        read_play=read_play,
        on_stage=lambda stage: log.append((stage.what, stage.fold)),
    )

    assert test_splits_seen_by_the_trainer == [0, 0, 0]
    stages = [index for index, (what, _) in enumerate(log) if what != "read"]
    kinds = [log[index] for index in stages]
    assert kinds == [
        *[entry for fold in folds for entry in (("prepare", fold.index), ("train", fold.index), ("trained", None))],
        *[("score", fold.index) for fold in folds],
    ]
    # The reads that follow each stage, up to the next one.
    reads_after = {
        log[start]: [log[index][1] for index in range(start + 1, end) if log[index][0] == "read"]
        for start, end in zip(stages, [*stages[1:], len(log)], strict=True)
    }
    for fold in folds:
        assert reads_after[("prepare", fold.index)] == [*fold.train, *fold.valid]  # never its test plays
        assert reads_after[("score", fold.index)] == list(fold.test)  # its test plays, once, at the end
    assert [row.fold for row in rows] == [1, 2, 3]
    for row, fold in zip(rows, folds, strict=True):
        assert row.test_plays == fold.test and row.valid_plays == fold.valid
        assert row.test_perplexity is not None and row.kneser_ney_perplexity is not None
        assert 1 < row.test_perplexity < len(WORDS) * 4 and 1 < row.kneser_ney_perplexity < len(WORDS) * 4
        assert row.below_kneser_ney == pytest.approx(1 - row.test_perplexity / row.kneser_ney_perplexity)
        assert math.isfinite(row.valid_perplexity) and row.steps > 0
        assert (tmp_path / f"fold-{row.fold}" / "best.pt").is_file()


def test_validation_only_never_reads_a_test_play_for_its_own_fold(protocol_config: Config, tmp_path: Path) -> None:
    plays = made_up_plays()
    folds = split_by_play(plays, 3, seed=2, test_plays=1, valid_plays=1)
    reads: Counter[str] = Counter()
    stages: list[str] = []

    def read_play(name: str) -> str:
        reads[name] += 1
        return plays[name]

    rows = run_folds(
        folds,
        protocol_config,
        tmp_path,
        time_limit_s=None,
        validate_only=True,
        read_play=read_play,
        on_stage=lambda stage: stages.append(stage.what),
    )
    assert "score" not in stages
    # A play is read once for each fold it trains or validates in, and never for a fold it tests.
    assert reads == Counter({name: sum(name not in fold.test for fold in folds) for name in plays})
    assert all(row.test_perplexity is None and row.below_kneser_ney is None for row in rows)
    assert "test perplexity" not in table(rows)


def test_folds_chosen_on_validation_are_scored_later_as_they_would_have_been_at_once(
    protocol_config: Config, tmp_path: Path
) -> None:
    plays = made_up_plays()
    folds = split_by_play(plays, 3, seed=3, test_plays=1, valid_plays=1)
    at_once = run_folds(
        folds, protocol_config, tmp_path / "at-once", time_limit_s=None, order=2, read_play=plays.__getitem__
    )
    validated = run_folds(
        folds, protocol_config, tmp_path / "later", time_limit_s=None, validate_only=True, read_play=plays.__getitem__
    )
    log: list[tuple[str, object]] = []

    def read_play(name: str) -> str:
        log.append(("read", name))
        return plays[name]

    later = score_saved(
        folds,
        protocol_config,
        tmp_path / "later",
        order=2,
        read_play=read_play,
        on_stage=lambda stage: log.append((stage.what, stage.fold)),
    )
    # Same seed, same data: the same runs and the same scores (only the time they took differs).
    assert [dataclasses.replace(row, minutes=0) for row in later] == [
        dataclasses.replace(row, minutes=0) for row in at_once
    ]
    assert [row.valid_perplexity for row in later] == [row.valid_perplexity for row in validated]
    # Every fold is found (its training and validation plays read) before its test plays are, once, at the end.
    stages = [index for index, (what, _) in enumerate(log) if what != "read"]
    assert [log[index] for index in stages] == [
        *[("prepare", fold.index) for fold in folds],
        *[("score", fold.index) for fold in folds],
    ]
    reads_after = {
        log[start]: [log[index][1] for index in range(start + 1, end)]
        for start, end in zip(stages, [*stages[1:], len(log)], strict=True)
    }
    for fold in folds:
        assert reads_after[("prepare", fold.index)] == [*fold.train, *fold.valid]
        assert reads_after[("score", fold.index)] == list(fold.test)


def test_scoring_saved_folds_refuses_other_settings_another_split_or_a_missing_fold(
    protocol_config: Config, tmp_path: Path
) -> None:
    plays = made_up_plays()
    folds = split_by_play(plays, 3, seed=4, test_plays=1, valid_plays=1)
    run_folds(folds[:2], protocol_config, tmp_path, time_limit_s=None, validate_only=True, read_play=plays.__getitem__)
    stages: list[str] = []
    options = {"read_play": plays.__getitem__, "on_stage": lambda stage: stages.append(stage.what)}

    with pytest.raises(InputError, match="trained with other settings"):
        score_saved(folds[:2], protocol_config.replace(rnn_size=protocol_config.rnn_size + 1), tmp_path, **options)
    with pytest.raises(InputError, match=r"fold 3 was not trained into .*trained\.json is missing"):
        score_saved(folds, protocol_config, tmp_path, **options)
    other = split_by_play(plays, 3, seed=5, test_plays=1, valid_plays=1)
    with pytest.raises(InputError, match="another split's fold 1"):
        score_saved(other[:1], protocol_config, tmp_path, **options)
    assert stages and "score" not in stages  # refused before any fold's test plays were read
    assert score_saved(folds[:2], protocol_config, tmp_path, order=2, **options)[1].test_perplexity is not None


def test_a_fold_cannot_train_on_data_that_carries_its_test_split(protocol_config: Config, tmp_path: Path) -> None:
    plays = made_up_plays(3)
    dataset = prepare_pair(plays["play-0"], plays["play-1"], 0, test_text=plays["play-2"])
    fold = Fold(0, test=("play-2",), valid=("play-1",), train=("play-0",))
    with pytest.raises(ValueError, match="must not carry its test plays"):
        train_fold(fold, dataset, protocol_config, tmp_path, None)
    assert not any(tmp_path.iterdir())  # refused before anything was written


# ---- the table ------------------------------------------------------------------------------


def made_up_row(fold: int, valid: float, test: float | None, kneser_ney: float | None, minutes: float) -> FoldRow:
    below = None if test is None or kneser_ney is None else 1 - test / kneser_ney
    return FoldRow(fold, (f"t{fold}",), (f"v{fold}",), valid, test, kneser_ney, below, minutes, 100, 1.0, "finished")


def test_the_median_is_taken_over_folds_for_each_column() -> None:
    rows = [
        made_up_row(1, 120.0, 100.0, 200.0, 9.0),  # 50% below Kneser-Ney
        made_up_row(2, 130.0, 150.0, 200.0, 8.0),  # 25%
        made_up_row(3, 110.0, 160.0, 400.0, 10.0),  # 60%
    ]
    middle = medians(rows)
    assert middle["valid_perplexity"] == 120.0 and middle["test_perplexity"] == 150.0
    assert middle["kneser_ney_perplexity"] == 200.0 and middle["minutes"] == 9.0
    # The median of the folds' shares (50%), not the share of the medians (1 - 150/200 = 25%).
    assert middle["below_kneser_ney"] == pytest.approx(0.5)
    assert medians([*rows, made_up_row(4, 140.0, 170.0, 200.0, 7.0)])["test_perplexity"] == 155.0

    lines = table(rows).splitlines()
    assert len(lines) == 2 + 3 + 1
    assert lines[2] == "| 1 | t1 | 120.00 | 100.00 | 200.00 | 50.0% | 9.00 |"
    assert lines[-1] == "| median | | 120.00 | 150.00 | 200.00 | 50.0% | 9.00 |"


def test_a_validation_table_has_a_median_of_validation_only() -> None:
    rows = [made_up_row(1, 120.0, None, None, 9.0), made_up_row(2, 130.0, None, None, 8.0)]
    assert medians(rows)["test_perplexity"] is None
    lines = table(rows).splitlines()
    assert lines[0].startswith("| fold | validation plays | validation perplexity |")
    assert lines[-1] == "| median | | 125.00 | | | 8.50 |"


def test_the_command_refuses_fewer_than_three_folds_or_an_unknown_setting(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        bench_quality.main(["--folds", "2", "--minutes", "0.01"])
    assert "at least 3 folds, got 2" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench_quality.main(["--set", "rnn_sise=64"])
    assert "rnn_sise" in capsys.readouterr().err
