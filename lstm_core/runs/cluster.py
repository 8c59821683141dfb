"""The Ray runner: each run's training is a job on a Ray cluster, submitted through its Jobs API.

The job runs exactly the local runner's command (:func:`lstm_core.runs.local.train_command`: the
same trainer under the same caps), started in the package's folder with it on ``PYTHONPATH``, as
the local runner starts it. So every Ray worker must have what a web server has: the same install
at the same path (the same image) and ``LSTM_PLAYHOUSE_DATA`` mounted at the same path. Ray is
asked for CPUs equal to the run's threads and for the run's memory cap, so it places a job only
where both are free (and holds it ``PENDING`` until they are).

The run folder records the job (``process.json``: the runner, the cluster's address, the job id,
the host that submitted it), so any web server sharing the data folder asks the cluster where it
stands (:mod:`lstm_core.runs.liveness`). Stop writes the folder's stop file, as for a local run:
the trainer saves and exits within a step. Only a job still running :data:`STOP_GRACE_S` later is
ended through the Jobs API (a trainer that no longer reads its folder).
"""

from __future__ import annotations

import os
import secrets
import shlex
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from lstm_core.runs import folder as runs
from lstm_core.runs import ray_jobs
from lstm_core.runs.liveness import this_host
from lstm_core.runs.local import PACKAGE_ROOT, active_runs, mark_active, train_command
from lstm_core.runs.runner import ProcessState

if TYPE_CHECKING:
    from lstm_core.runs.limits import RunLimits

STOP_GRACE_S = 60.0
"""How long after Stop a job may go on before the cluster is asked to end it: longer than a save
(a Best run's ``last.pt``, ``best.pt`` and a snapshot, about 100 MB, take a few seconds on a
shared filesystem) plus the step the trainer finishes first."""


def job_entrypoint(command: list[str]) -> str:
    """The shell line Ray runs: ``command`` in the package's folder, as the process itself
    (``exec``), so that the job's exit code is the trainer's and a stop signals the trainer."""
    return f"cd {shlex.quote(str(PACKAGE_ROOT))} && exec {shlex.join(command)}"


class RayRunner:
    """Trains each run as a job on the Ray cluster whose dashboard is at ``address``
    (``http://HOST:8265``); see the module's notes."""

    def __init__(self, address: str, *, stop_grace_s: float = STOP_GRACE_S) -> None:
        self.address = address.rstrip("/")
        self.stop_grace_s = stop_grace_s

    def start(self, data_root: Path, folder: Path, limits: RunLimits) -> None:
        """Submit the run's training as a job (raises :class:`~lstm_core.runs.runner.RunnerUnavailable`
        when the cluster does not take it) and record it in the folder."""
        command = train_command(folder, limits)
        (folder / runs.STOP_FILE).unlink(missing_ok=True)
        runs.touch_heartbeat(folder)
        job_id = f"lstm-playhouse-{folder.name}-{secrets.token_hex(3)}"
        search_path = os.pathsep.join(filter(None, [str(PACKAGE_ROOT), os.environ.get("PYTHONPATH")]))
        ray_jobs.submit(
            self.address,
            job_id,
            job_entrypoint(command),
            cpus=limits.threads,
            memory=int(limits.run_memory_mb * 1_000_000),
            env={"PYTHONPATH": search_path},
        )
        record = {
            "runner": "ray",
            "host": this_host(),
            "address": self.address,
            "job_id": job_id,
            "started": time.time(),
            "command": command,
        }
        runs.write_json(folder / runs.PROCESS_FILE, record)
        mark_active(data_root, folder)

    def training(self, data_root: Path) -> list[runs.RunSummary]:
        """The runs training now, whichever server or runner started them (the shared markers)."""
        return active_runs(data_root)

    def process(self, folder: Path) -> ProcessState:
        """What the cluster says of the folder's job (not answered when the folder records none)."""
        record = runs.read_json(folder / runs.PROCESS_FILE) or {}
        if record.get("runner") != "ray":
            return ProcessState(alive=False, answered=False, detail="no Ray job is recorded for this run")
        return ray_jobs.job_state(str(record.get("address", "")), str(record.get("job_id", "")))

    def stop(self, folder: Path) -> None:
        """Write the stop file now; end the job through the cluster only if it still runs
        :attr:`stop_grace_s` later (a thread waits for that, so Stop returns at once)."""
        runs.request_stop(folder)
        record = runs.read_json(folder / runs.PROCESS_FILE) or {}
        if record.get("runner") != "ray":
            return
        address, job_id = str(record.get("address", "")), str(record.get("job_id", ""))

        def end_if_still_running() -> None:
            ray_jobs.forget(address, job_id)
            if ray_jobs.job_state(address, job_id).alive:
                ray_jobs.stop(address, job_id)

        timer = threading.Timer(self.stop_grace_s, end_if_still_running)
        timer.name = f"stop-{folder.name}"
        timer.daemon = True
        timer.start()
