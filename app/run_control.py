"""Training runs for a shared server: each run a folder on disk and a process of its own.

The app never trains in its own process. It prepares a run folder (:func:`lstm_core.runs.folder.create_run`:
the config and the prepared data) and starts ``python -m lstm_core train --resume RUN`` on it, the
same trainer the command line runs. The pages only read the folder. So:

* a reload, a second tab or a server restart find the same run (the folder is the truth);
* a crash, a memory kill or a runaway run ends that run's process only, and every run has its
  own random generator;
* Stop writes the folder's ``stop`` file; the process saves and exits within a step.

Hosted-demo safety, all decided before anything is allocated (:func:`start_run`):

* at most ``max_runs`` runs train at once on the server and ``runs_per_visitor`` per visitor
  (a file lock makes the check and the start one step, across tabs and processes);
* a run's memory is estimated from its config (:mod:`lstm_core.model.memory`) and refused over
  ``run_memory_mb``; the process gets that limit too (a watchdog and an address-space limit),
  so an underestimate ends the run, not the server;
* the process runs ``nice``-r than the server (``nice``, 10 by default), so visitors' pages come first;
* its training time is capped across resumes (``max_minutes``), and it stops by itself when no
  page has looked at it for ``idle_minutes``;
* old runs are deleted after ``keep_days``, and the oldest first when all runs together pass
  ``disk_mb`` (:func:`sweep`).

Nothing here imports Streamlit: pages own the UI, this module owns the processes.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lstm_core.config import Config
from lstm_core.model.memory import check_memory, estimate_memory, memory_advice
from lstm_core.runs import folder as runs
from lstm_core.system.processes import process_start_time

if TYPE_CHECKING:  # the server imports this module for its caps; torch waits until a run is admitted
    from lstm_core.data.dataset import Dataset

ROOT = Path(__file__).resolve().parent.parent
NICE = 10
"""How much lower a training process's CPU priority is than the server's (``os.nice``) by default;
``LSTM_PLAYHOUSE_NICE`` sets it (0 to 19; 0 gives the runs the server's priority)."""
MAX_NICE = 19


class SettingError(ValueError):
    """A cap set by the environment or the secrets file is not a usable value."""


def _setting(name: str, default: float, secrets_get: Callable[[str], Any] | None = None) -> float:
    """A number from the environment (``LSTM_PLAYHOUSE_<NAME>``), else the secrets, else the default."""
    key = f"LSTM_PLAYHOUSE_{name.upper()}"
    raw: Any = os.environ.get(key)
    if raw is None and secrets_get is not None:
        raw = secrets_get(key)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise SettingError(f"{key} must be a number, got {raw!r}") from None
    if not value > 0:
        raise SettingError(f"{key} must be positive, got {raw!r}")
    return value


@dataclass(frozen=True)
class RunLimits:
    """Caps for a shared server. Each can be set by an environment variable (see the README)."""

    max_runs: int = 2
    runs_per_visitor: int = 1
    max_minutes: float = 30.0
    max_parameters: int = 20_000_000
    run_memory_mb: float = 1000.0
    idle_minutes: float = 5.0
    threads: int = 1
    keep_days: float = 7.0
    disk_mb: float = 2000.0
    nice: int = NICE

    @classmethod
    def from_environment(cls, secrets_get: Callable[[str], Any] | None = None) -> RunLimits:
        """The caps from the environment or secrets; threads default to the cores shared by the runs.

        With ``max_runs`` runs at once, each gets ``cores // max_runs`` threads (at least one), so
        that the runs never ask for more threads than there are cores (threads fighting over cores
        make small steps many times slower).
        """
        defaults = cls()

        def get(name: str) -> float:
            return _setting(name, getattr(defaults, name), secrets_get)

        max_runs = int(get("max_runs"))
        fair_share = max(1, (os.cpu_count() or 1) // max_runs)
        return cls(
            max_runs=max_runs,
            runs_per_visitor=int(get("runs_per_visitor")),
            max_minutes=get("max_minutes"),
            max_parameters=int(get("max_parameters")),
            run_memory_mb=get("run_memory_mb"),
            idle_minutes=get("idle_minutes"),
            threads=int(_setting("threads", fair_share, secrets_get)),
            keep_days=get("keep_days"),
            disk_mb=get("disk_mb"),
            nice=_nice(secrets_get),
        )


def _nice(secrets_get: Callable[[str], Any] | None) -> int:
    """``LSTM_PLAYHOUSE_NICE``: a whole number from 0 to 19 (0 is allowed here, unlike the caps)."""
    key = "LSTM_PLAYHOUSE_NICE"
    raw: Any = os.environ.get(key)
    if raw is None and secrets_get is not None:
        raw = secrets_get(key)
    if raw is None or raw == "":
        return NICE
    try:
        value = int(str(raw))
    except ValueError:
        raise SettingError(f"{key} must be a whole number from 0 to {MAX_NICE}, got {raw!r}") from None
    if not 0 <= value <= MAX_NICE:
        raise SettingError(f"{key} must be a whole number from 0 to {MAX_NICE}, got {raw!r}")
    return value


class CapacityError(RuntimeError):
    """The server, or this visitor, already trains as many models as allowed."""


# ---- where things live ---------------------------------------------------------------------


def active_dir(data_root: Path) -> Path:
    """One marker file per run whose process this server started and has not seen end."""
    return data_root / "active"


@contextlib.contextmanager
def _server_lock(data_root: Path) -> Iterator[None]:
    """One start at a time across the server's threads and processes (two tabs clicking Start)."""
    data_root.mkdir(parents=True, exist_ok=True)
    with (data_root / "runs.lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def new_run_id() -> str:
    """``<date>-<time>-<random>``: sorts by start time, and cannot be guessed or collide."""
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(4)}"


def active_runs(data_root: Path) -> list[runs.RunSummary]:
    """The runs training on this server now (all visitors); stale markers are cleared."""
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


# ---- admission -------------------------------------------------------------------------------


def admission_problems(config: Config, dataset_vocab_counts: list[int], tokens: int, limits: RunLimits) -> list[str]:
    """Why this server would refuse to train ``config`` on this data (empty if it would not)."""
    from lstm_core.model.network import count_parameters  # torch, once a visitor asks to train

    problems = []
    parameters = count_parameters(config, len(dataset_vocab_counts), dataset_vocab_counts)
    if parameters > limits.max_parameters:
        problems.append(
            f"This model would have {parameters:,} parameters; this server allows {limits.max_parameters:,}. "
            "Choose a smaller rnn_size, embedding_size or fewer layers (or a larger min_word_freq)."
        )
    estimate = estimate_memory(config, dataset_vocab_counts, tokens, parameters)
    memory = check_memory(estimate, int(limits.run_memory_mb * 1_000_000))
    if memory:
        problems.append(f"{memory} {memory_advice(config)}.")
    return problems


def _check_capacity(data_root: Path, visitor_runs: Path, limits: RunLimits) -> None:
    active = active_runs(data_root)
    mine = [run for run in active if run.path.parent == visitor_runs]
    if len(mine) >= limits.runs_per_visitor:
        raise CapacityError(
            "You already have a run training (in this tab or another): stop it, or wait for it to end, "
            "before you start another."
        )
    if len(active) >= limits.max_runs:
        raise CapacityError(
            f"This server already trains {len(active)} model(s) at once, its limit; please try again in a few "
            "minutes (or run the app on your own machine: see the README)."
        )


def start_run(
    data_root: Path, visitor_runs: Path, config: Config, dataset: Dataset, limits: RunLimits
) -> runs.RunSummary:
    """Admit, create and start a new run for a visitor; raise CapacityError or ValueError if refused.

    Nothing is written and no process started unless every check passes.
    """
    tokens = dataset.train.numel() + dataset.valid.numel() + dataset.test.numel()
    problems = admission_problems(config, dataset.vocab.counts, tokens, limits)
    if problems:
        raise ValueError(" ".join(problems))
    sweep(data_root, limits)
    with _server_lock(data_root):
        _check_capacity(data_root, visitor_runs, limits)
        folder = visitor_runs / new_run_id()
        runs.create_run(folder, config, dataset)
        _launch(data_root, folder, limits)
    summary = runs.read_run(folder)
    assert summary is not None, "a run folder just created must read back"
    return summary


def resume_problem(run: runs.RunSummary, limits: RunLimits) -> str | None:
    """Why ``run`` cannot be resumed here (None if it can)."""
    if run.active:
        return "This run is still training."
    if not run.has_last and run.step > 0:
        return "This run has no checkpoint to resume from."
    if run.state == "finished":
        return "This run has finished all its epochs."
    if run.elapsed_s >= limits.max_minutes * 60:
        return f"This run has trained for {limits.max_minutes:g} minutes in all, the most this server allows per run."
    return None


def resume_run(data_root: Path, run: runs.RunSummary, limits: RunLimits) -> None:
    """Start the process again on ``run``'s own folder: its config, its data, its last checkpoint."""
    problem = resume_problem(run, limits)
    if problem:
        raise ValueError(problem)
    with _server_lock(data_root):
        _check_capacity(data_root, run.path.parent, limits)
        (run.path / runs.EXIT_FILE).unlink(missing_ok=True)
        runs.write_json(run.path / runs.STATUS_FILE, {**_status(run.path), "state": "starting", "message": ""})
        _launch(data_root, run.path, limits)


def _status(folder: Path) -> dict[str, Any]:
    return runs.read_json(folder / runs.STATUS_FILE) or {}


def stop_run(run: runs.RunSummary) -> None:
    """Ask the run's process to save and stop (it does within a step)."""
    runs.request_stop(run.path)


# ---- the process ------------------------------------------------------------------------------


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


def _launch(data_root: Path, folder: Path, limits: RunLimits) -> None:
    """Start the training process, record it, and wait for it in a thread (which records its end).

    The process stays in the server's process group: stopping the server's group (a deploy, a
    test, Ctrl-C in a terminal) stops its runs too, each saving first.
    """
    command = train_command(folder, limits)
    (folder / runs.STOP_FILE).unlink(missing_ok=True)
    runs.touch_heartbeat(folder)
    log = (folder / runs.LOG_FILE).open("ab")
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    process = subprocess.Popen(
        command, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=environment
    )
    record = {
        "pid": process.pid,
        "pid_start": process_start_time(process.pid),
        "started": time.time(),
        "command": command,
    }
    runs.write_json(folder / runs.PROCESS_FILE, record)
    marker = active_dir(data_root) / folder.name
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(str(folder), encoding="utf-8")

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


# ---- keeping the disk in bounds ------------------------------------------------------------


def _last_activity(folder: Path) -> float:
    times = []
    for name in (runs.STATUS_FILE, runs.HEARTBEAT_FILE, runs.RUN_FILE, "meta.json"):
        with contextlib.suppress(OSError):
            times.append((folder / name).stat().st_mtime)
    return max(times, default=0.0)


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(item.stat().st_size for item in path.rglob("*") if item.is_file())


@dataclass(frozen=True)
class _Stored:
    """One thing kept on disk for visitors: a run, an upload, an uploaded or a shared model."""

    path: Path
    used: float  # when it was last used (seconds since the epoch)
    size: int
    training: bool  # a run that trains now: never deleted


def _stored(data_root: Path) -> list[_Stored]:
    found = []
    for visitor in (data_root / "visitors").glob("*"):
        for path in visitor.glob("runs/*"):
            run = runs.read_run(path)
            used = _last_activity(path) if run is not None else path.stat().st_mtime
            found.append(_Stored(path, used, _size(path), run is not None and run.active))
        for path in [*visitor.glob("uploads/*"), *visitor.glob("models/*")]:
            found.append(_Stored(path, path.stat().st_mtime, _size(path), False))
    for path in (data_root / "shared").glob("*"):  # used when a page last opened it (its meta.json)
        found.append(_Stored(path, _last_activity(path), _size(path), False))
    return found


def sweep(data_root: Path, limits: RunLimits, now: float | None = None) -> list[Path]:
    """Delete what visitors keep (runs, uploads, uploaded and shared models) unused for
    ``keep_days``, then the least recently used while everything together passes ``disk_mb``.
    A run that is training is never deleted. Returns what was deleted."""
    now = time.time() if now is None else now
    stored = _stored(data_root)
    expired = [item for item in stored if not item.training and now - item.used > limits.keep_days * 86400]
    kept = sorted((item for item in stored if item not in expired), key=lambda item: item.used)
    total = sum(item.size for item in kept)
    over: list[_Stored] = []
    for item in kept:
        if total <= limits.disk_mb * 1_000_000:
            break
        if not item.training:
            over.append(item)
            total -= item.size
    for item in [*expired, *over]:
        _remove(item.path)
    return [item.path for item in [*expired, *over]]


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
