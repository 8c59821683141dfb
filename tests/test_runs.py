"""Background training runs (app/runs.py): the caps a shared server relies on."""

from __future__ import annotations

import pytest

from app.runs import REGISTRY, CapacityError, RunLimits, TrainingRun
from lstm_core.trainer import StepEvent


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_run_whose_page_is_gone_stops_itself_and_can_be_resumed(tiny_config, tiny_dataset):
    clock = FakeClock()
    limits = RunLimits(idle_minutes=1.0)
    run = TrainingRun(tiny_config.replace(epochs=50), tiny_dataset, limits, clock=clock)
    run.touch()
    clock.now = 61.0  # a minute and a second without the page asking for progress
    run.start()
    run.join(timeout=60)
    assert run.status == "abandoned"
    steps = [e for e in run.events() if isinstance(e, StepEvent)]
    assert len(steps) < run.trainer.total_steps  # it stopped early...
    assert run.result_checkpoint is not None and run.result_checkpoint.step == steps[-1].step  # ...and kept its work
    assert REGISTRY.active == 0


def test_a_watched_run_is_not_stopped(tiny_config, tiny_dataset):
    clock = FakeClock()
    run = TrainingRun(tiny_config, tiny_dataset, RunLimits(idle_minutes=1.0), clock=clock)
    clock.now = 59.0
    run.start()
    run.join(timeout=60)
    assert run.status == "finished"
    assert run.result_checkpoint.step == run.trainer.total_steps


def test_the_time_limit_stops_a_run(tiny_config, tiny_dataset):
    run = TrainingRun(tiny_config.replace(epochs=10_000), tiny_dataset, RunLimits(max_minutes=0.01))
    run.start()
    run.join(timeout=60)
    assert run.status == "time_limit"
    assert 0 < run.result_checkpoint.step < run.trainer.total_steps


def test_no_more_runs_than_the_server_allows(tiny_config, tiny_dataset):
    limits = RunLimits(max_runs=1)
    first = TrainingRun(tiny_config.replace(epochs=10_000), tiny_dataset, limits)
    first.start()
    try:
        second = TrainingRun(tiny_config, tiny_dataset, limits)
        with pytest.raises(CapacityError, match="already trains 1 model"):
            second.start()
    finally:
        first.stop()
        first.join(timeout=60)
    assert first.status == "stopped" and REGISTRY.active == 0
    second.start()  # the slot is free again
    second.join(timeout=60)
    assert second.status == "finished"


def test_a_model_over_the_parameter_cap_is_refused(tiny_config, tiny_dataset):
    with pytest.raises(ValueError, match="this server allows at most 1,000"):
        TrainingRun(tiny_config, tiny_dataset, RunLimits(max_parameters=1_000))


def test_caps_come_from_the_environment_then_the_secrets(monkeypatch):
    monkeypatch.delenv("LSTM_PLAYHOUSE_THREADS", raising=False)
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    monkeypatch.setenv("LSTM_PLAYHOUSE_MAX_RUNS", "3")
    secrets = {"LSTM_PLAYHOUSE_MAX_RUNS": "7", "LSTM_PLAYHOUSE_IDLE_MINUTES": "2.5"}.get
    limits = RunLimits.from_environment(secrets)
    # threads default to the cores shared by the runs: 8 // 3
    assert (limits.max_runs, limits.idle_minutes, limits.threads) == (3, 2.5, 2)
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert RunLimits.from_environment().threads == 1  # never zero
    monkeypatch.setenv("LSTM_PLAYHOUSE_THREADS", "4")
    assert RunLimits.from_environment().threads == 4  # an explicit choice wins
    monkeypatch.setenv("LSTM_PLAYHOUSE_THREADS", "two")
    with pytest.raises(ValueError, match="LSTM_PLAYHOUSE_THREADS must be a number, got 'two'"):
        RunLimits.from_environment()
