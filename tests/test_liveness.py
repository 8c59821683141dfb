"""Whether a run still trains when this server cannot see its process (lstm_core/runs/liveness.py),
the lock every server sharing the data folder respects (lstm_core/runs/lock.py), and the runner
settings (lstm_core/runs/limits.py). No process trains here: the run folders are written by hand.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest

from lstm_core.config import Config
from lstm_core.data.dataset import prepare
from lstm_core.runs import control as runs
from lstm_core.runs import folder as run_files
from lstm_core.runs import liveness, lock, recording
from lstm_core.runs.limits import RunLimits, RunnerSettings, SettingError
from lstm_core.runs.local import LocalRunner, mark_active
from lstm_core.runs.sweep import sweep
from lstm_core.system import processes
from tests.conftest import TINY_TEXT

SMALL = Config(rnn_size=16, batch_size=4, training_seq_len=8, epochs=2, eval_every=10, seed=3)


@pytest.fixture
def run_folder(tmp_path):
    dataset = prepare(TINY_TEXT, 0, (0.8, 0.1, 0.1), name="sonnet")
    return run_files.create_run(tmp_path / "data" / "visitors" / "a" / "runs" / "r1", SMALL, dataset)


def trains_elsewhere(folder, updated: float, pid: int | None = None) -> None:
    """The folder of a run whose local process another web server started on host ``web-2``."""
    pid = pid or os.getpid()  # a pid alive *here*, which must not count for a process over there
    start = processes.process_start_time(pid)
    launched = {"runner": "local", "host": "web-2", "pid": pid, "pid_start": start, "started": updated - 60}
    run_files.write_json(folder / run_files.PROCESS_FILE, launched)
    status = {"state": "running", "host": "web-2", "pid": pid, "pid_start": start, "step": 7, "updated": updated}
    run_files.write_json(folder / run_files.STATUS_FILE, status)


def test_a_run_on_another_host_is_judged_by_its_status_never_by_this_hosts_processes(run_folder):
    trains_elsewhere(run_folder, updated=time.time())
    run = run_files.read_run(run_folder)
    assert run.state == "running" and run.pid is None  # no pid of another host is offered here
    trains_elsewhere(run_folder, updated=time.time() - liveness.STALE_AFTER_S - 1)
    run = run_files.read_run(run_folder)
    assert run.state == "crashed" and run.ended_unexpectedly
    assert run.message == "the training process on web-2 stopped reporting (its server may have stopped)"
    assert LocalRunner().process(run_folder).answered is False  # this host cannot tell


def test_a_run_of_this_host_still_goes_by_its_process(run_folder):
    trains_elsewhere(run_folder, updated=time.time() - 3600)
    for name in (run_files.PROCESS_FILE, run_files.STATUS_FILE):  # the same records, made on this host
        record = run_files.read_json(run_folder / name)
        run_files.write_json(run_folder / name, {**record, "host": liveness.this_host()})
    assert run_files.read_run(run_folder).state == "running"  # stale, but its process lives here
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    trains_elsewhere(run_folder, updated=time.time(), pid=int(dead.stdout))
    record = run_files.read_json(run_folder / run_files.STATUS_FILE)
    run_files.write_json(run_folder / run_files.STATUS_FILE, {**record, "host": liveness.this_host(), "pid_start": 1})
    run_files.write_json(run_folder / run_files.PROCESS_FILE, {"host": liveness.this_host(), "pid": int(dead.stdout)})
    assert run_files.read_run(run_folder).state == "crashed"  # fresh, but its process here is gone


def test_the_caps_and_the_sweep_count_a_run_training_on_another_server(run_folder):
    data = run_folder.parents[3]
    trains_elsewhere(run_folder, updated=time.time())
    mark_active(data, run_folder)
    old = time.time() - 30 * 86400
    os.utime(run_folder / run_files.RUN_FILE, (old, old))
    assert [run.path for run in runs.active_runs(data)] == [run_folder]
    assert sweep(data, RunLimits(keep_days=1, disk_mb=0)) == []  # never deleted while it trains there
    trains_elsewhere(run_folder, updated=time.time() - liveness.STALE_AFTER_S - 1)
    assert runs.active_runs(data) == []  # gone quiet: its marker is cleared
    assert not (data / "active" / run_folder.name).exists()


@pytest.mark.slow  # starts a training process
def test_the_training_process_keeps_its_status_fresh_while_the_trainer_is_busy(tmp_path):
    recorder = recording.RunRecorder(tmp_path, lambda reason: None)
    recorder.begin(step=0)
    recorder.keep_alive()
    first = run_files.read_json(tmp_path / run_files.STATUS_FILE)
    assert first["host"] == liveness.this_host()
    time.sleep(2.5)  # no event from the trainer all this while (building a model, evaluating)
    later = run_files.read_json(tmp_path / run_files.STATUS_FILE)
    assert later["updated"] >= first["updated"] + 1.0 and later["state"] == "running"
    recorder.end("stopped")
    ended = run_files.read_json(tmp_path / run_files.STATUS_FILE)
    time.sleep(1.5)
    assert run_files.read_json(tmp_path / run_files.STATUS_FILE) == ended  # quiet once it ended


def test_a_ray_run_whose_cluster_does_not_answer_is_unreachable_not_crashed(run_folder):
    # Ray's own module is needed to ask (CI installs it); the cluster here is a port nobody listens on.
    launched = {"runner": "ray", "host": "web-1", "address": "http://127.0.0.1:9", "job_id": "lstm-playhouse-r1-abc"}
    run_files.write_json(run_folder / run_files.PROCESS_FILE, {**launched, "started": time.time() - 600})
    status = {"state": "running", "host": "ray-worker-3", "pid": 4321, "step": 40, "updated": time.time() - 600}
    run_files.write_json(run_folder / run_files.STATUS_FILE, status)
    run = run_files.read_run(run_folder)
    assert run.state == "unreachable" and run.message.startswith("the training cluster is not answering (")
    assert run.active and not run.ended_unexpectedly and run.step == 40  # as it last reported
    assert "not answering" in runs.resume_problem(run, RunLimits())
    assert sweep(run_folder.parents[3], RunLimits(keep_days=0, disk_mb=0)) == []


# ---- the lock ---------------------------------------------------------------------------------------


def test_the_lock_lets_one_start_in_at_a_time(tmp_path):
    inside, overlaps = [], []

    def start() -> None:
        with lock.runs_lock(tmp_path):
            if inside:
                overlaps.append(1)
            inside.append(1)
            time.sleep(0.05)
            inside.pop()

    threads = [threading.Thread(target=start) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert overlaps == [] and not (tmp_path / lock.LOCK_NAME).exists()


def test_a_lock_left_by_a_dead_holder_or_held_too_long_is_broken(tmp_path, monkeypatch):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    held = tmp_path / lock.LOCK_NAME
    held.mkdir()
    owner = {"host": liveness.this_host(), "pid": int(dead.stdout), "pid_start": 1, "since": time.time()}
    (held / lock.OWNER_FILE).write_text(json.dumps(owner))
    with lock.runs_lock(tmp_path, timeout_s=5):  # its holder died: taken at once
        pass
    held.mkdir()
    owner = {"host": "web-2", "pid": 1, "since": time.time()}  # a live holder on another server
    (held / lock.OWNER_FILE).write_text(json.dumps(owner))
    with pytest.raises(TimeoutError, match="another start holds"), lock.runs_lock(tmp_path, timeout_s=0.3):
        pass
    owner["since"] = time.time() - lock.BREAK_AFTER_S - 1  # ... until it has held it far too long
    (held / lock.OWNER_FILE).write_text(json.dumps(owner))
    with lock.runs_lock(tmp_path, timeout_s=5):
        pass
    assert [path.name for path in tmp_path.iterdir()] == []


# ---- the runner settings -----------------------------------------------------------------------------


def test_the_runner_is_local_unless_ray_is_asked_for_with_an_address(monkeypatch):
    monkeypatch.delenv("LSTM_PLAYHOUSE_RUNNER", raising=False)
    monkeypatch.delenv("LSTM_PLAYHOUSE_RAY_ADDRESS", raising=False)
    assert RunnerSettings.from_environment() == RunnerSettings("local", None)
    assert isinstance(runs.default_runner(), LocalRunner)
    secrets = {"LSTM_PLAYHOUSE_RUNNER": "ray", "LSTM_PLAYHOUSE_RAY_ADDRESS": "http://10.0.0.5:8265/"}
    assert RunnerSettings.from_environment(secrets.get) == RunnerSettings("ray", "http://10.0.0.5:8265")
    monkeypatch.setenv("LSTM_PLAYHOUSE_RUNNER", "ray")
    with pytest.raises(SettingError, match="LSTM_PLAYHOUSE_RAY_ADDRESS is not set"):
        RunnerSettings.from_environment()
    monkeypatch.setenv("LSTM_PLAYHOUSE_RAY_ADDRESS", "10.0.0.5:6379")
    with pytest.raises(SettingError, match="must be the Ray dashboard's http:// or https:// address"):
        RunnerSettings.from_environment()
    monkeypatch.setenv("LSTM_PLAYHOUSE_RUNNER", "kubernetes")
    with pytest.raises(SettingError, match="LSTM_PLAYHOUSE_RUNNER must be one of local, ray, got 'kubernetes'"):
        RunnerSettings.from_environment()


def test_ray_asked_for_without_ray_installed_is_a_setting_error(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a))
    monkeypatch.setenv("LSTM_PLAYHOUSE_RUNNER", "ray")
    monkeypatch.setenv("LSTM_PLAYHOUSE_RAY_ADDRESS", "http://127.0.0.1:8265")
    with pytest.raises(SettingError, match=r"Ray is not installed here: pip install 'lstm-playhouse\[ray\]'"):
        RunnerSettings.from_environment()


def test_a_cluster_that_does_not_answer_is_asked_once_for_all_its_runs(monkeypatch):
    from lstm_core.runs import ray_jobs
    from lstm_core.runs.runner import RunnerUnavailable

    asked = []

    def silent(address: str):
        asked.append(address)
        raise RunnerUnavailable(f"the training cluster at {address} is not answering: connection refused")

    monkeypatch.setattr(ray_jobs, "client", silent)
    address = "http://ray-head.invalid:8265"
    states = [ray_jobs.job_state(address, f"job-{i}", now=100.0 + i) for i in range(4)]  # one page, four runs
    assert len(asked) == 1 and [state.answered for state in states] == [False] * 4
    assert states[-1].detail == "connection refused"
    ray_jobs.job_state(address, "job-0", now=100.0 + ray_jobs.QUIET_S + 0.1)
    assert len(asked) == 2  # asked again once the quiet period is over
