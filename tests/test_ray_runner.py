"""Runs trained as Ray jobs (lstm_core/runs/cluster.py) on a real Ray head started on this machine.

The head (tests/ray_cluster.py) listens on 127.0.0.1 only, on free ports, with Ray's token
authentication on; one serves the whole session, and the test that stops a cluster mid-run has
its own. The runs train ``python -m lstm_core train`` on a tiny text, as the app's do.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lstm_core.model.checkpoint import load_checkpoint
from lstm_core.runs import control as runs
from lstm_core.runs import folder as run_files
from lstm_core.runs import liveness
from lstm_core.runs.cluster import RayRunner, job_entrypoint
from lstm_core.runs.limits import RunLimits
from lstm_core.runs.local import train_command
from lstm_core.runs.runner import RunnerUnavailable
from lstm_core.runs.sweep import sweep
from tests.conftest import SMALL_RUN, start_ray_head
from tests.ray_cluster import LocalRayHead, use_token
from tests.test_runs import wait

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
SMALL = SMALL_RUN
LONG = SMALL.replace(epochs=10_000, eval_every=5)
LIMITS = RunLimits(threads=1)


@pytest.fixture
def data(tmp_path):
    folder = tmp_path / "data"
    yield folder
    stop_everything(folder)


def stop_everything(folder: Path, timeout: float = 60.0) -> None:
    """Never leave a job behind: stop files for every run that may train, then wait."""
    for run in runs.active_runs(folder):
        run_files.request_stop(run.path)
    deadline = time.monotonic() + timeout
    while any(run.state != "unreachable" for run in runs.active_runs(folder)) and time.monotonic() < deadline:
        time.sleep(0.2)


def job_of(folder: Path) -> dict:
    return json.loads((folder / run_files.PROCESS_FILE).read_text())


def job_info(head: LocalRayHead, folder: Path):
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(head.address).get_job_info(job_of(folder)["job_id"])


def training_pid(folder: Path) -> int:
    return json.loads((folder / run_files.STATUS_FILE).read_text())["pid"]


def events(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / run_files.EVENTS_FILE).read_text().splitlines()]


def test_a_run_trains_as_a_ray_job_of_the_local_runners_command(ray_head, data, tiny_dataset):
    runner = RayRunner(ray_head.address)
    run = runs.start_run(data, data / "v" / "runs", SMALL, tiny_dataset, LIMITS, runner)
    record = job_of(run.path)
    assert record["runner"] == "ray" and record["address"] == ray_head.address
    assert record["command"] == train_command(run.path, LIMITS)  # the same command, the same caps
    assert run.active and len(runs.active_runs(data)) == 1
    assert job_info(ray_head, run.path).entrypoint == job_entrypoint(train_command(run.path, LIMITS))
    run = wait(run.path, lambda r: not r.active)
    assert run.state == "finished" and run.step == run.total_steps > 0 and run.pid is None
    assert load_checkpoint(run.path / run_files.LAST_CHECKPOINT).step == run.step
    deadline = time.monotonic() + 30  # the process exits a moment after it records its end
    while not job_info(ray_head, run.path).status.is_terminal() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert job_info(ray_head, run.path).status.value == "SUCCEEDED"
    assert runs.active_runs(data) == []


@pytest.mark.parametrize(
    "limits",
    [RunLimits(threads=3), RunLimits(threads=1, run_memory_mb=10_000_000)],
    ids=["more threads than the cluster's 2 CPUs", "more memory than the cluster has"],
)
def test_ray_holds_a_job_until_a_node_has_the_runs_threads_and_memory_free(ray_head, data, tiny_dataset, limits):
    from ray.job_submission import JobStatus

    runner = RayRunner(ray_head.address)
    run = runs.start_run(data, data / "v" / "runs", SMALL, tiny_dataset, limits, runner)
    try:
        time.sleep(3.0)  # a job that fits is running within about a second here
        assert job_info(ray_head, run.path).status == JobStatus.PENDING
        run = run_files.read_run(run.path)
        assert run.state == "starting" and run.active  # waiting for room counts against the caps
    finally:
        from lstm_core.runs import ray_jobs

        ray_jobs.stop(ray_head.address, job_of(run.path)["job_id"])


def test_a_ray_job_killed_on_the_cluster_is_reported_and_resumes_from_its_last_checkpoint(ray_head, data, tiny_dataset):
    runner = RayRunner(ray_head.address)
    run = runs.start_run(data, data / "v" / "runs", LONG, tiny_dataset, LIMITS, runner)
    run = wait(run.path, lambda r: r.state == "running" and r.has_last and r.step >= 10)
    os.kill(training_pid(run.path), signal.SIGKILL)  # the job's process, on the cluster's node
    run = wait(run.path, lambda r: not r.active, timeout=30)
    assert run.state == "crashed" and run.ended_unexpectedly and run.has_last
    assert run.message == "the training process ended unexpectedly (killed by signal 9 (SIGKILL))"
    saved = load_checkpoint(run.path / run_files.LAST_CHECKPOINT).step
    assert runs.resume_problem(run, LIMITS) is None
    before = len(events(run.path))
    first_job = job_of(run.path)["job_id"]
    runs.resume_run(data, run, LIMITS, runner)
    assert job_of(run.path)["job_id"] != first_job  # a new job, on the same folder
    wait(run.path, lambda r: r.state == "running" and r.step > saved)
    runs.stop_run(run_files.read_run(run.path), runner)
    resumed = wait(run.path, lambda r: not r.active)
    assert resumed.state == "stopped"
    resumed_steps = [e["step"] for e in events(run.path)[before:] if e["kind"] == "step"]
    assert resumed_steps[0] == saved + 1  # it went on from the checkpoint, not from step 0


def test_a_job_that_does_not_stop_by_itself_is_ended_by_the_cluster_after_the_grace_period(
    ray_head, data, tiny_dataset
):
    runner = RayRunner(ray_head.address, stop_grace_s=3.0)
    run = runs.start_run(data, data / "v" / "runs", LONG, tiny_dataset, LIMITS, runner)
    run = wait(run.path, lambda r: r.state == "running" and r.step >= 5)
    pid = training_pid(run.path)
    os.kill(pid, signal.SIGSTOP)  # a trainer that no longer reads its folder
    try:
        started = time.monotonic()
        runs.stop_run(run, runner)
        assert (run.path / run_files.STOP_FILE).exists()  # the stop file first, as for a local run
        time.sleep(1.0)
        assert run_files.read_run(run.path).active  # not ended before the grace period
        run = wait(run.path, lambda r: not r.active, timeout=60)
        assert time.monotonic() - started >= 3.0
        assert run.state == "crashed" and run.message == "the training job ended unexpectedly (stopped on the cluster)"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


def test_the_caps_hold_when_two_servers_start_runs_at_the_same_moment(ray_head, data, tmp_path):
    # Three web servers' processes (one visitor each) share the data folder and click Start within a
    # millisecond of each other; the caps allow two runs in all.
    go = tmp_path / "go"
    workers = []
    for index in range(3):
        ready = tmp_path / f"ready-{index}"
        command = [sys.executable, str(ROOT / "tests" / "start_run_worker.py"), str(data), f"visitor-{index}"]
        command += [ray_head.address, "2", str(ready), str(go)]
        workers.append((ready, subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)))
    deadline = time.monotonic() + 120
    while not all(ready.exists() for ready, _ in workers):
        assert time.monotonic() < deadline and all(p.poll() is None for _, p in workers), "a worker did not get ready"
        time.sleep(0.05)
    go.write_text("go")
    said = [process.communicate(timeout=120)[0].strip() for _, process in workers]
    started = [line for line in said if line.startswith("started ")]
    refused = [line for line in said if line.startswith("refused: ")]
    assert len(started) == 2 and len(refused) == 1, said
    assert "already trains 2 model(s) at once" in refused[0]
    training = runs.active_runs(data)
    assert sorted(str(run.path) for run in training) == sorted(line.removeprefix("started ") for line in started)
    assert all(job_of(run.path)["runner"] == "ray" for run in training)


def test_a_cluster_that_stops_mid_run_is_not_answering_and_the_run_resumes_once_it_is_back(
    data, tiny_dataset, tmp_path
):
    head = start_ray_head(tmp_path)
    try:
        runner = RayRunner(head.address)
        run = runs.start_run(data, data / "v" / "runs", LONG, tiny_dataset, LIMITS, runner)
        run = wait(run.path, lambda r: r.state == "running" and r.has_last and r.step >= 10)
        head.stop()  # the whole cluster, and with it the job's process
        run = wait(run.path, lambda r: r.state == "unreachable", timeout=30)
        assert run.active and not run.ended_unexpectedly  # not taken for a crashed run
        assert run.message.startswith("the training cluster is not answering")
        assert "not answering" in runs.resume_problem(run, LIMITS)
        with pytest.raises(ValueError, match="not answering"):
            runs.resume_run(data, run, LIMITS, runner)
        assert [r.path for r in runs.active_runs(data)] == [run.path]  # the caps count it
        assert run.path not in sweep(data, RunLimits(keep_days=0, disk_mb=0))  # never swept
        with pytest.raises(RunnerUnavailable, match="not answering"):
            runs.start_run(data, data / "w" / "runs", SMALL, tiny_dataset, LIMITS, runner)
        assert not (data / "w" / "runs").exists() or not any((data / "w" / "runs").iterdir())
        head.start()  # back, on the same address, knowing nothing of the old job
        run = wait(run.path, lambda r: not r.active, timeout=liveness.STALE_AFTER_S + 30)
        assert run.state == "crashed" and "gone from the cluster" in run.message and run.has_last
        saved = load_checkpoint(run.path / run_files.LAST_CHECKPOINT).step
        runs.resume_run(data, run, LIMITS, runner)
        wait(run.path, lambda r: r.state == "running" and r.step > saved)
        runs.stop_run(run_files.read_run(run.path), runner)
        assert wait(run.path, lambda r: not r.active).state == "stopped"
    finally:
        head.remove()


def test_a_cluster_that_never_answers_is_said_so_and_nothing_is_kept(data, tiny_dataset):
    use_token()
    runner = RayRunner("http://127.0.0.1:9")  # the discard port: nothing listens there
    with pytest.raises(RunnerUnavailable, match="not answering"):
        runs.start_run(data, data / "v" / "runs", SMALL, tiny_dataset, LIMITS, runner)
    assert list((data / "v" / "runs").iterdir()) == []
