"""Runs on disk (lstm_core/runs/folder.py) and the app's training processes (lstm_core/runs/control.py).

The process tests start real ``python -m lstm_core train`` processes on a tiny text, the way the
app does, and read their run folders.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lstm_core.data.dataset import Dataset, prepare
from lstm_core.model.checkpoint import load_checkpoint
from lstm_core.runs import control as runs
from lstm_core.runs import folder as run_files
from lstm_core.runs import recording
from lstm_core.runs.control import CapacityError
from lstm_core.runs.limits import NICE, RunLimits, SettingError
from lstm_core.runs.local import wait_unreaped
from lstm_core.runs.sweep import sweep
from lstm_core.system import processes
from lstm_core.system.resources import Resources
from lstm_core.training.events import EvalEvent, StepEvent
from lstm_core.training.trainer import Trainer
from tests.conftest import SMALL_RUN, TINY_TEXT

ROOT = Path(__file__).resolve().parent.parent
SMALL = SMALL_RUN
LIMITS = RunLimits(threads=1)


@pytest.fixture
def dataset() -> Dataset:
    return prepare(TINY_TEXT, 0, (0.8, 0.1, 0.1), name="sonnet")


@pytest.fixture
def data(tmp_path):
    folder = tmp_path / "data"
    yield folder
    for run in runs.active_runs(folder):  # never leave a process behind
        run_files.request_stop(run.path)
    deadline = time.monotonic() + 60
    while runs.active_runs(folder) and time.monotonic() < deadline:
        time.sleep(0.1)


def wait(folder: Path, until, timeout: float = 120.0) -> run_files.RunSummary:
    deadline = time.monotonic() + timeout
    run = run_files.read_run(folder)
    while not (run is not None and until(run)) and time.monotonic() < deadline:
        time.sleep(0.05)
        run = run_files.read_run(folder)
    assert run is not None and until(run), f"gave up waiting: {run}"
    return run


def ended(run: run_files.RunSummary) -> bool:
    return not run.active


def events(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / run_files.EVENTS_FILE).read_text().splitlines()]


# ---- the server's caps -----------------------------------------------------------------------


def test_caps_come_from_the_environment_then_the_secrets(monkeypatch):
    monkeypatch.delenv("LSTM_PLAYHOUSE_THREADS", raising=False)
    monkeypatch.delenv("LSTM_PLAYHOUSE_RUN_MEMORY_MB", raising=False)
    eight_cpus = Resources(8.0, 64 * 10**9, "a test", "a test")
    monkeypatch.setenv("LSTM_PLAYHOUSE_MAX_RUNS", "3")
    secrets = {"LSTM_PLAYHOUSE_MAX_RUNS": "7", "LSTM_PLAYHOUSE_IDLE_MINUTES": "2.5", "LSTM_PLAYHOUSE_DISK_MB": "500"}
    limits = RunLimits.from_environment(secrets.get, eight_cpus)
    # threads default to the CPUs shared by the runs: 8 // 3
    assert (limits.max_runs, limits.idle_minutes, limits.threads, limits.disk_mb) == (3, 2.5, 2, 500)
    two_cpus = Resources(2.0, 64 * 10**9, "a test", "a test")
    assert RunLimits.from_environment(resources=two_cpus).threads == 1  # never zero
    monkeypatch.setenv("LSTM_PLAYHOUSE_THREADS", "4")
    assert RunLimits.from_environment(resources=two_cpus).threads == 4  # an explicit choice wins
    monkeypatch.setenv("LSTM_PLAYHOUSE_THREADS", "two")
    with pytest.raises(SettingError, match="LSTM_PLAYHOUSE_THREADS must be a number, got 'two'"):
        RunLimits.from_environment(resources=two_cpus)
    monkeypatch.setenv("LSTM_PLAYHOUSE_THREADS", "-1")
    with pytest.raises(SettingError, match="must be positive"):
        RunLimits.from_environment(resources=two_cpus)


# ---- reading a run folder ---------------------------------------------------------------------


def test_a_new_run_counts_the_steps_its_trainer_will_take(tmp_path, dataset):
    # The page shows "step 0 of N" before the process starts, from the same rule as the trainer.
    for name, config in (("short", SMALL), ("long", SMALL.replace(epochs=7, batch_size=3, training_seq_len=5))):
        run = run_files.read_run(run_files.create_run(tmp_path / name, config, dataset))
        assert run.total_steps == Trainer(config, dataset).total_steps > 0
    timed = run_files.read_run(run_files.create_run(tmp_path / "timed", SMALL.replace(train_minutes=1.0), dataset))
    assert timed.total_steps == 0  # planned by the clock: the trainer finds out as it goes


def test_a_run_says_it_crashed_when_its_process_is_gone(tmp_path, dataset):
    folder = run_files.create_run(tmp_path / "run", SMALL, dataset)
    assert run_files.read_run(folder).state == "starting"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    status = {"state": "running", "pid": pid, "pid_start": 1, "step": 7, "total_steps": 70}
    run_files.write_json(folder / run_files.STATUS_FILE, status)
    run = run_files.read_run(folder)
    assert run.state == "crashed" and "the server may have restarted" in run.message
    run_files.write_json(folder / run_files.EXIT_FILE, {"returncode": -signal.SIGKILL})
    run = run_files.read_run(folder)
    assert run.state == "crashed" and run.message.endswith("(killed by signal 9 (SIGKILL))")
    assert run.ended_unexpectedly and not run.active
    run_files.write_json(folder / run_files.EXIT_FILE, {"returncode": run_files.EXIT_OUT_OF_MEMORY})
    assert run_files.read_run(folder).state == "out_of_memory"
    # A live process keeps the run active.
    status.update(pid=os.getpid(), pid_start=processes.process_start_time(os.getpid()))
    run_files.write_json(folder / run_files.STATUS_FILE, status)
    assert run_files.read_run(folder).state == "running"
    # ... but not a live process that merely got the same pid later.
    (folder / run_files.EXIT_FILE).unlink()
    status.update(pid_start=status["pid_start"] + 1)
    run_files.write_json(folder / run_files.STATUS_FILE, status)
    assert run_files.read_run(folder).state == "crashed"


def test_a_process_that_ended_but_is_not_yet_reaped_is_ending_not_gone(tmp_path, dataset):
    """Between a training process's end and its server's record of how it ended, a reader must
    not call it gone (the server may have restarted): that message would stay on the page."""
    folder = run_files.create_run(tmp_path / "run", SMALL, dataset)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    start = processes.process_start_time(child.pid)
    status = {"state": "running", "pid": child.pid, "pid_start": start, "step": 7, "total_steps": 70}
    run_files.write_json(folder / run_files.STATUS_FILE, status)
    child.kill()
    assert wait_unreaped(child) == -signal.SIGKILL
    assert processes.process_ending(child.pid, start) and not processes.process_alive(child.pid, start)
    assert not processes.process_ending(child.pid, start + 1)  # another process's start time
    run = run_files.read_run(folder)
    assert run.state == "running" and run.pid is None  # ending: its record comes next
    run_files.write_json(folder / run_files.EXIT_FILE, {"returncode": -signal.SIGKILL})
    assert run_files.read_run(folder).message.endswith("(killed by signal 9 (SIGKILL))")
    assert child.wait() == -signal.SIGKILL  # reaped now, and Popen agrees on how it ended
    assert not processes.process_ending(child.pid, start)
    (folder / run_files.EXIT_FILE).unlink()
    assert "the server may have restarted" in run_files.read_run(folder).message


def test_waiting_unreaped_gives_popens_return_code():
    for code in ("0", "3"):
        child = subprocess.Popen([sys.executable, "-c", f"raise SystemExit({code})"])
        assert wait_unreaped(child) == int(code) == child.wait()


def test_the_event_tail_reads_only_complete_new_lines(tmp_path):
    path = tmp_path / "events.jsonl"
    tail = recording.EventTail(path)
    assert tail.read() == []
    path.write_text('{"kind": "step", "step": 1}\n{"kind": "st')
    assert [e["step"] for e in tail.read()] == [1]  # the half-written line waits
    with path.open("a") as file:
        file.write('ep", "step": 2}\nnot json\n{"kind": "eval", "step": 2}\n')
    assert [e["kind"] for e in tail.read()] == ["step", "step", "eval"]  # a damaged line loses itself only
    path.unlink()
    path.write_text('{"kind": "step", "step": 1}\n')  # a new file starts again
    assert len(tail.read()) == 1


def test_the_recorder_thins_steps_and_stops_on_request(tmp_path):
    now = [1000.0]
    stops = []
    recorder = recording.RunRecorder(tmp_path, stops.append, idle_s=60, clock=lambda: now[0])
    for step in range(1, 101):  # 100 steps in one second
        now[0] += 0.01
        recorder(StepEvent(0, step, 100, 1.0, 0.01, 10.0, step * 0.01, 1.0))
    recorder(EvalEvent(0, 100, 2.0, 7.4, True, 1.0))
    steps = [e["step"] for e in events(tmp_path) if e["kind"] == "step"]
    assert 3 <= len(steps) <= 6 and steps[-1] == 100  # about 4 a second, and the last one before the eval
    status = json.loads((tmp_path / run_files.STATUS_FILE).read_text())
    assert status["step"] == 100 and status["best_perplexity"] == 7.4
    assert stops == []
    run_files.request_stop(tmp_path)
    now[0] += 1
    recorder(StepEvent(0, 101, 200, 1.0, 0.01, 10.0, 1.1, 1.0))
    assert stops == ["stopped"]
    (tmp_path / run_files.STOP_FILE).unlink()
    now[0] += 61  # nobody touched the heartbeat for over a minute
    recorder(StepEvent(0, 102, 200, 1.0, 0.01, 10.0, 1.2, 1.0))
    assert stops == ["stopped", "idle"]


# ---- training processes --------------------------------------------------------------------------


@pytest.mark.slow
def test_a_run_trains_in_its_own_process_and_leaves_everything_in_its_folder(data, dataset):
    run = runs.start_run(data, data / "v" / "runs", SMALL, dataset, LIMITS)
    assert run.active and len(runs.active_runs(data)) == 1
    run = wait(run.path, ended)
    assert run.state == "finished" and run.step == run.total_steps > 0
    assert run.pid is None and runs.active_runs(data) == []
    checkpoint = load_checkpoint(run.path / run_files.LAST_CHECKPOINT)
    assert checkpoint.step == run.step and checkpoint.config == SMALL
    assert [e["kind"] for e in events(run.path)][-1] == "end"
    deadline = time.monotonic() + 30  # the thread that waited for the process records how it ended
    while not (run.path / run_files.EXIT_FILE).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert json.loads((run.path / run_files.EXIT_FILE).read_text())["returncode"] == 0
    command = json.loads((run.path / run_files.PROCESS_FILE).read_text())["command"]
    assert command[command.index("--nice") + 1] == str(NICE)


@pytest.mark.slow
def test_a_run_nobody_watches_stops_itself_and_keeps_its_work(data, dataset):
    limits = RunLimits(threads=1, idle_minutes=0.02)  # 1.2 s without a page looking at it
    run = runs.start_run(data, data / "v" / "runs", SMALL.replace(epochs=10_000), dataset, limits)
    run = wait(run.path, ended)
    assert run.state == "idle" and 0 < run.step < run.total_steps and run.has_last
    assert runs.resume_problem(run, limits) is None  # it can go on


@pytest.mark.slow
def test_a_run_killed_mid_training_is_reported_and_resumes_from_its_last_checkpoint(data, dataset):
    config = SMALL.replace(epochs=10_000, eval_every=5)
    run = runs.start_run(data, data / "v" / "runs", config, dataset, LIMITS)
    run = wait(run.path, lambda r: r.state == "running" and r.has_last and r.step >= 10)
    os.kill(run.pid, signal.SIGKILL)
    # Once the server's thread has reaped the process, the run says how it ended.
    run = wait(run.path, lambda r: not r.active and "signal" in r.message)
    assert run.state == "crashed" and "killed by signal 9 (SIGKILL)" in run.message and run.has_last
    saved = load_checkpoint(run.path / run_files.LAST_CHECKPOINT).step
    assert saved >= 5 and runs.resume_problem(run, LIMITS) is None
    before = len(events(run.path))
    runs.resume_run(data, run, LIMITS)
    resumed = wait(run.path, lambda r: r.state == "running" and r.step > saved)
    run_files.request_stop(resumed.path)
    resumed = wait(run.path, ended)
    assert resumed.state == "stopped"
    resumed_steps = [e["step"] for e in events(run.path)[before:] if e["kind"] == "step"]
    assert resumed_steps[0] == saved + 1  # it went on from the checkpoint, not from step 0


@pytest.mark.slow
def test_the_time_limit_counts_the_whole_run_across_resumes(data, dataset):
    limits = RunLimits(threads=1, max_minutes=0.02)
    run = runs.start_run(data, data / "v" / "runs", SMALL.replace(epochs=10_000), dataset, limits)
    run = wait(run.path, ended)
    assert run.state == "time_limit" and run.elapsed_s >= 1.2
    assert "the most this server allows per run" in runs.resume_problem(run, limits)
    with pytest.raises(ValueError, match="the most this server allows per run"):
        runs.resume_run(data, run, limits)


@pytest.mark.slow
def test_no_more_runs_than_the_server_and_the_visitor_may_have(data, dataset):
    limits = RunLimits(threads=1, max_runs=2, runs_per_visitor=1)
    long = SMALL.replace(epochs=10_000)
    runs.start_run(data, data / "a" / "runs", long, dataset, limits)
    with pytest.raises(CapacityError, match="You already have a run training"):
        runs.start_run(data, data / "a" / "runs", long, dataset, limits)
    runs.start_run(data, data / "b" / "runs", long, dataset, limits)
    with pytest.raises(CapacityError, match="already trains 2 model"):
        runs.start_run(data, data / "c" / "runs", long, dataset, limits)
    assert not (data / "c").exists()  # a refused start writes nothing


def test_a_refused_start_allocates_nothing(data, dataset):
    limits = RunLimits(threads=1, max_parameters=1_000)
    with pytest.raises(ValueError, match="this server allows 1,000"):
        runs.start_run(data, data / "v" / "runs", SMALL, dataset, limits)
    big = SMALL.replace(batch_size=256, training_seq_len=200, output_layer="full")
    with pytest.raises(ValueError, match=r"this server's limit per run is 1\.0 GB"):
        words = prepare([f"w{i % 8000}" for i in range(60_000)], 0)  # 8,000 words, enough for one window
        runs.start_run(data, data / "v" / "runs", big, words, RunLimits(threads=1))
    assert not (data / "v").exists()


@pytest.mark.slow
def test_two_runs_at_once_give_the_same_losses_as_either_alone(tmp_path, dataset):
    """Each run is a process with its own random generator: dropout in one cannot reseed the other."""
    dataset.save(tmp_path / "data")
    config = SMALL.replace(dropout=0.3, num_layers=2, epochs=3, eval_every=0)
    (tmp_path / "config.json").write_text(json.dumps(config.to_dict()))

    def train(name: str) -> subprocess.Popen:
        command = [sys.executable, "-m", "lstm_core", "train", "--dataset", str(tmp_path / "data")]
        command += ["--config", str(tmp_path / "config.json"), "--out", str(tmp_path / name), "--threads", "1"]
        return subprocess.Popen([*command, "--quiet"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def losses(name: str) -> list[float]:
        return [s["loss"] for s in load_checkpoint(tmp_path / name / "last.pt").history["steps"]]

    alone = train("alone")
    assert alone.wait(120) == 0, alone.stderr.read()
    together = [train("first"), train("second")]
    for process in together:
        assert process.wait(120) == 0, process.stderr.read()
    assert losses("first") == losses("second") == losses("alone")


# ---- the disk ------------------------------------------------------------------------------------


def make_finished_run(folder: Path, dataset: Dataset, age_days: float, size: int = 0) -> Path:
    run_files.create_run(folder, SMALL, dataset)
    run_files.write_json(folder / run_files.STATUS_FILE, {"state": "finished"})
    if size:
        (folder / "last.pt").write_bytes(bytes(size))
    then = time.time() - age_days * 86400
    for path in [folder, *folder.rglob("*")]:
        os.utime(path, (then, then))
    return folder


def test_old_runs_go_first_and_running_ones_never(data, dataset):
    visitors = data / "visitors"
    old = make_finished_run(visitors / "a" / "runs" / "old", dataset, age_days=8)
    week = make_finished_run(visitors / "a" / "runs" / "week", dataset, age_days=6, size=3_000_000)
    day = make_finished_run(visitors / "b" / "runs" / "day", dataset, age_days=1, size=3_000_000)
    fresh = make_finished_run(visitors / "b" / "runs" / "fresh", dataset, age_days=0, size=3_000_000)
    running = make_finished_run(visitors / "c" / "runs" / "running", dataset, age_days=30, size=3_000_000)
    me = {"state": "running", "pid": os.getpid(), "pid_start": processes.process_start_time(os.getpid())}
    run_files.write_json(running / run_files.STATUS_FILE, me)
    upload = visitors / "a" / "uploads" / "text.txt"
    upload.parent.mkdir(parents=True)
    upload.write_text("words")
    os.utime(upload, (time.time() - 9 * 86400,) * 2)
    shared = data / "shared" / "a-shared-model-id-0123"
    shared.mkdir(parents=True)
    (shared / "meta.json").write_text("{}")
    os.utime(shared / "meta.json", (time.time() - 10 * 86400,) * 2)
    deleted = sweep(data, RunLimits(keep_days=7, disk_mb=7))
    assert old in deleted and upload in deleted and shared in deleted  # past the keeping time
    assert week in deleted and day in deleted  # the oldest, until everything fits in 7 MB
    assert fresh.exists() and running.exists()


def test_snapshots_count_towards_the_disk_cap(data, dataset):
    visitors = data / "visitors"
    older = make_finished_run(visitors / "a" / "runs" / "older", dataset, age_days=2)
    newer = make_finished_run(visitors / "a" / "runs" / "newer", dataset, age_days=1)
    for step in (10, 20, 30):  # 3 MB of snapshots, and no other large file
        path = run_files.snapshot_path(older, step)
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(bytes(1_000_000))
    assert sweep(data, RunLimits(keep_days=7, disk_mb=2)) == [older]
    assert newer.exists()
