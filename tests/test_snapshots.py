"""Snapshots of a run's model at its evaluations (lstm_core/runs/folder.py, the trainer), and its baselines file."""

from __future__ import annotations

import itertools
import json

import pytest
import torch

from lstm_core.errors import InputError
from lstm_core.evaluation.baselines import Baseline
from lstm_core.model.checkpoint import load_checkpoint, save_checkpoint
from lstm_core.runs import folder as runs
from lstm_core.sampling.decoding import generate
from lstm_core.sampling.options import SamplingOptions
from lstm_core.training.events import CheckpointEvent, EvalEvent
from lstm_core.training.trainer import Trainer


def thinned_as_the_run_goes(steps: list[int], limit: int) -> list[list[int]]:
    """What is kept after each new snapshot, as the trainer thins them: one snapshot at a time."""
    kept: list[int] = []
    history = []
    for step in steps:
        kept = runs.thin_snapshots([*kept, step], limit)
        history.append(kept)
    return history


@pytest.mark.parametrize(
    "steps",
    [
        list(range(100, 6001, 100)),  # an evaluation every 100 steps
        [7, 9, 30, 31, 32, 33, 90, 200, 201, 260, 400, 401, 402, 700, 1000, 1100, 1111, 1500, 2000, 2001],
    ],
)
@pytest.mark.parametrize("limit", [2, 3, 8])
def test_at_most_the_limit_is_kept_first_and_newest_always_spread_over_the_run(steps, limit):
    widest_evaluation_gap = max(b - a for a, b in itertools.pairwise(steps))
    for seen, kept in enumerate(thinned_as_the_run_goes(steps, limit), start=1):
        assert len(kept) == min(seen, limit)
        assert kept[0] == steps[0] and kept[-1] == steps[seen - 1]
        assert set(kept) <= set(steps[:seen]) and kept == sorted(kept)
        if len(kept) > 2:
            mean_gap = (kept[-1] - kept[0]) / (limit - 1)
            widest = max(b - a for a, b in itertools.pairwise(kept))
            assert widest <= max(2 * mean_gap, widest_evaluation_gap)


def test_the_snapshot_whose_neighbours_are_closest_goes_first_and_of_equals_the_oldest():
    assert runs.thin_snapshots([0, 10, 20, 25, 40], limit=4) == [0, 10, 25, 40]  # 10..25 is the smallest hole
    assert runs.thin_snapshots([100, 200, 300, 400, 500], limit=4) == [100, 300, 400, 500]
    assert runs.thin_snapshots([300, 100, 200, 200], limit=8) == [100, 200, 300]  # sorted, each step once
    history = thinned_as_the_run_goes(list(range(100, 6001, 100)), 8)
    assert history[9] == [100, 300, 500, 600, 700, 800, 900, 1000]  # the examples in the docstring
    assert history[-1] == [100, 900, 1900, 2700, 3400, 4100, 5000, 6000]


@pytest.mark.parametrize("limit", [1, 0, True, 2.5])
def test_a_limit_that_cannot_keep_the_first_and_the_newest_is_refused(limit):
    with pytest.raises(InputError, match="at least 2 snapshots"):
        runs.thin_snapshots([1, 2, 3], limit)


def test_snapshots_are_listed_by_step_from_their_names(tmp_path):
    assert runs.list_snapshots(tmp_path) == []
    for step in (1200, 40, 10_000_000):
        path = runs.snapshot_path(tmp_path, step)
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"")
    (tmp_path / runs.SNAPSHOTS_DIR / ".step-0000050.pt.x1y2.part").write_bytes(b"")  # being written
    (tmp_path / runs.SNAPSHOTS_DIR / "notes.txt").write_text("")
    assert runs.snapshot_path(tmp_path, 40).name == "step-0000040.pt"
    assert [(step, path.name) for step, path in runs.list_snapshots(tmp_path)] == [
        (40, "step-0000040.pt"),
        (1200, "step-0001200.pt"),
        (10_000_000, "step-10000000.pt"),
    ]
    dropped = runs.prune_snapshots(tmp_path, limit=2)
    assert [path.name for path in dropped] == ["step-0001200.pt"] and not dropped[0].exists()
    assert [step for step, _ in runs.list_snapshots(tmp_path)] == [40, 10_000_000]


@pytest.mark.slow
def test_the_trainer_keeps_a_bounded_number_of_snapshots_of_its_evaluations(tiny_config, tiny_dataset, tmp_path):
    events = []
    trainer = Trainer(tiny_config.replace(eval_every=4), tiny_dataset, out_dir=tmp_path, callback=events.append)
    trainer.fit()
    evaluated = [e.step for e in events if isinstance(e, EvalEvent)]
    assert len(evaluated) > runs.MAX_SNAPSHOTS  # enough evaluations for the thinning to act
    found = runs.list_snapshots(tmp_path)
    assert [step for step, _ in found] == thinned_as_the_run_goes(evaluated, runs.MAX_SNAPSHOTS)[-1]
    for step, path in found:
        snapshot = load_checkpoint(path)
        assert snapshot.step == step and snapshot.optimizer is None and snapshot.carry is None
        assert all(t.dtype == torch.float16 for t in snapshot.weights.values() if t.is_floating_point())
    assert not [p for p in (tmp_path / runs.SNAPSHOTS_DIR).iterdir() if p.name.endswith(".part")]


def test_without_a_folder_no_snapshot_is_written(tiny_config, tiny_dataset, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Trainer(tiny_config, tiny_dataset).fit()
    assert list(tmp_path.iterdir()) == []


def test_a_snapshot_writes_exactly_what_the_checkpoint_saved_at_its_step_writes(tiny_config, tiny_dataset, tmp_path):
    saved_at: dict[int, bytes] = {}  # step -> last.pt as the trainer saved it then

    def keep_last(event):
        if isinstance(event, CheckpointEvent) and not event.best:
            saved_at[event.step] = (tmp_path / runs.LAST_CHECKPOINT).read_bytes()

    Trainer(tiny_config, tiny_dataset, out_dir=tmp_path, callback=keep_last).fit()
    found = runs.list_snapshots(tmp_path)
    assert len(found) >= 3
    texts = []
    for step, path in found:
        exported = tmp_path / f"export-{step}.pt"  # what `export --half` makes of that last.pt
        save_checkpoint(load_checkpoint(saved_at[step], name="last.pt").without_training_state(half=True), exported)
        snapshot, export = load_checkpoint(path), load_checkpoint(exported)
        assert snapshot.step == export.step == step
        models = snapshot.build_model(), export.build_model()
        for options in (SamplingOptions(method="greedy"), SamplingOptions(method="sample", seed=7)):
            written = [generate(model, snapshot.vocab, "thou art more", 12, options).words for model in models]
            assert written[0] == written[1]
        texts.append(written[0])
    assert len({tuple(words) for words in texts}) > 1  # the model changed between snapshots


def test_baselines_are_written_and_read_back_and_missing_or_damaged_read_as_none(tmp_path):
    assert runs.read_baselines(tmp_path) == []
    baselines = [Baseline(5, "5-gram", "5-gram (Kneser-Ney)", 263.1, 41314), Baseline(0, "uniform", "uniform", 88, 99)]
    runs.write_baselines(tmp_path, baselines)
    assert json.loads((tmp_path / runs.BASELINES_FILE).read_text())[0]["name"] == "5-gram"
    assert runs.read_baselines(tmp_path) == sorted(baselines, key=lambda b: b.order)
    for damaged in ("[{", '{"order": 0}', '[{"order": 0, "name": "uniform"}]'):
        (tmp_path / runs.BASELINES_FILE).write_text(damaged)
        assert runs.read_baselines(tmp_path) == []
