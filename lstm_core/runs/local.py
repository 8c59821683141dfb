"""The local runner: each run's training is a child process of the server, waited for by a thread.

The process is ``python -m lstm_core train --resume RUN`` under the server's caps
(:func:`train_command`): its threads, its time across resumes, its idle stop, its memory limit and
a lower CPU priority than the server's. While it trains, a marker file in the data folder's
``active/`` names its run folder, so the servers that share the data folder count its runs without
walking every visitor's folder (:func:`active_runs`, which the Ray runner shares); a thread waits
for the process and records how it ended (``exit.json``) before it removes the marker.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from lstm_core.runs import folder as runs
from lstm_core.runs.liveness import this_host
from lstm_core.runs.runner import ProcessState
from lstm_core.system import processes

if TYPE_CHECKING:
    from lstm_core.runs.limits import RunLimits

PACKAGE_ROOT = Path(__file__).resolve().parents[2]
"""The folder that holds ``lstm_core``: where the training process starts, so it imports this copy."""


def active_dir(data_root: Path) -> Path:
    """One marker file per run that a server sharing ``data_root`` started and has not seen end."""
    return data_root / "active"


def active_runs(data_root: Path) -> list[runs.RunSummary]:
    """The runs training now (all visitors, every server that shares ``data_root``, either runner),
    each judged by :mod:`lstm_core.runs.liveness`; markers of runs that ended are cleared."""
    folder = active_dir(data_root)
    found = []
    for marker in sorted(folder.glob("*")) if folder.is_dir() else []:
        try:
            run_path = Path(marker.read_text(encoding="utf-8").strip())
        except OSError:
            continue
        run = runs.read_run(run_path)
        if run is not None and run.active:
            found.append(run)
        else:
            marker.unlink(missing_ok=True)
    return found


def mark_active(data_root: Path, folder: Path) -> Path:
    """Write the marker that counts ``folder``'s run as training (see :func:`active_runs`)."""
    marker = active_dir(data_root) / folder.name
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(str(folder), encoding="utf-8")
    return marker


def train_command(folder: Path, limits: RunLimits) -> list[str]:
    """The command that trains (or continues) the run in ``folder`` under this server's caps."""
    return [
        sys.executable,
        "-m",
        "lstm_core",
        "train",
        "--resume",
        str(folder),
        "--quiet",
        "--threads",
        str(limits.threads),
        "--max-minutes",
        f"{limits.max_minutes:g}",
        "--stop-when-idle",
        f"{limits.idle_minutes:g}",
        "--memory-limit-mb",
        f"{limits.run_memory_mb:g}",
        "--nice",
        str(limits.nice),
    ]


def wait_unreaped(process: subprocess.Popen) -> int:
    """Wait for ``process`` to end and return its return code as ``Popen`` gives it, leaving it
    unreaped (a zombie) where the system allows: until it is reaped, readers take the run for one
    still ending (:func:`lstm_core.system.processes.process_ending`), so none of them finds it gone without
    a record of how it ended. Reap it with ``process.wait()`` once that is written."""
    info = os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOWAIT) if hasattr(os, "waitid") else None
    if info is None:  # macOS has no waitid: reaped at once, leaving a moment without a record
        return process.wait()
    return info.si_status if info.si_code == os.CLD_EXITED else -info.si_status


class LocalRunner:
    """Runs each training as a child process of this server (the :class:`~lstm_core.runs.runner.Runner`
    there is now).

    The process stays in the server's process group: stopping the server's group (a deploy, a
    test, Ctrl-C in a terminal) stops its runs too, each saving first.
    """

    def start(self, data_root: Path, folder: Path, limits: RunLimits) -> None:
        """Start the training process, record it, and wait for it in a thread (which records its end)."""
        command = train_command(folder, limits)
        (folder / runs.STOP_FILE).unlink(missing_ok=True)
        runs.touch_heartbeat(folder)
        log = (folder / runs.LOG_FILE).open("ab")
        search_path = os.pathsep.join(filter(None, [str(PACKAGE_ROOT), os.environ.get("PYTHONPATH")]))
        process = subprocess.Popen(
            command,
            cwd=PACKAGE_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": search_path},
        )
        record = {
            "runner": "local",
            "host": this_host(),
            "pid": process.pid,
            "pid_start": processes.process_start_time(process.pid),
            "started": time.time(),
            "command": command,
        }
        runs.write_json(folder / runs.PROCESS_FILE, record)
        marker = mark_active(data_root, folder)

        def wait() -> None:
            try:
                returncode = wait_unreaped(process)
                runs.write_json(folder / runs.EXIT_FILE, {"returncode": returncode, "ended": time.time()})
            except OSError:
                pass  # the run folder was deleted meanwhile: nothing to record
            finally:
                process.wait()
                log.close()
                marker.unlink(missing_ok=True)

        threading.Thread(target=wait, name=f"wait-{folder.name}", daemon=True).start()

    def training(self, data_root: Path) -> list[runs.RunSummary]:
        """The runs training now, whichever server started them (:func:`active_runs`)."""
        return active_runs(data_root)

    def process(self, folder: Path) -> ProcessState:
        """From the folder's records: the process this runner started (``process.json``), and how it
        ended (``exit.json``, written by the thread that waited for it)."""
        ended = runs.read_json(folder / runs.EXIT_FILE)
        if ended is not None and isinstance(ended.get("returncode"), int):
            return ProcessState(alive=False, returncode=ended["returncode"])
        record = runs.read_json(folder / runs.PROCESS_FILE) or {}
        if record.get("host", this_host()) != this_host():
            return ProcessState(alive=False, answered=False, detail=f"it runs on {record['host']}")
        pid, start = record.get("pid"), record.get("pid_start")
        return ProcessState(alive=processes.process_alive(pid, start) or processes.process_ending(pid, start))

    def stop(self, folder: Path) -> None:
        """Write the folder's stop file: the process sees it within a step, saves and exits."""
        runs.request_stop(folder)
