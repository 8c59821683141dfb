"""Whether a run still trains: judged from its folder and the runner that started it, never only from a pid.

A run folder says what its training process last wrote (``status.json``: a state, and ``updated``,
rewritten every second while the process lives, :class:`lstm_core.runs.recording.RunRecorder`)
and who started that process (``process.json``: the runner, the host, and the process id or the
cluster's job id). A reader believes a state that says the run ended; a state that says it trains
is checked against whoever can know:

* a local process on this host: its pid and start time in ``/proc`` (a reused pid is not it);
* a local process on another host (a second web server sharing the data folder): this host's
  ``/proc`` knows nothing of it, so ``status.json``'s freshness decides (:data:`STALE_AFTER_S`);
* a Ray job: the cluster's job status (:mod:`lstm_core.runs.ray_jobs`). A cluster that does not
  answer makes the run ``unreachable``, which counts as training (the caps count it, the sweep
  keeps it, a resume is refused) until the cluster answers; a job the cluster no longer knows
  (it restarted) ended only once its status has gone stale, so that a run is never resumed while
  its old process may still write to the folder.

Whoever started a local process records how it ended (``exit.json``); a Ray job's end is the
cluster's to say. Nothing here imports torch, Streamlit, or Ray until a Ray job is asked about.
"""

from __future__ import annotations

import socket
import time
from typing import Any, Literal

from lstm_core.system.processes import process_alive, process_ending, signal_name

State = Literal[
    "starting",
    "running",
    "unreachable",
    "finished",
    "stopped",
    "time_limit",
    "idle",
    "interrupted",
    "diverged",
    "out_of_memory",
    "failed",
    "crashed",
]
"""``starting``/``running`` while a process trains it; ``unreachable`` while the cluster that runs it
does not answer (it may still train); the trainer's end reasons (``finished``, ``stopped``,
``time_limit``, ``idle``, ``interrupted``); ``diverged``, ``out_of_memory`` and ``failed`` when the
process ended on an error it could report; ``crashed`` when it ended without a word (killed, or
gone with the server or the cluster), which only a reader can tell."""

ACTIVE_STATES = frozenset({"starting", "running", "unreachable"})
"""States in which the run may be training: it counts against the caps, is never swept, and
cannot be resumed."""
EXIT_OUT_OF_MEMORY = 3
STARTUP_GRACE_S = 120.0
"""A run that says ``starting`` with no live process after this long failed to start."""
STALE_AFTER_S = 15.0
"""A training process rewrites ``status.json`` every second (a thread of its own does, whatever
the trainer is busy with); one not rewritten for this long belongs to a process that is gone.
Fifteen times the period leaves room for a loaded machine, a shared filesystem's caching and a
few seconds of clock difference between hosts."""


def this_host() -> str:
    """This machine's name as the runs record it (a container's own name in a container)."""
    return socket.gethostname()


def _here(record: dict[str, Any]) -> bool:
    """Whether a process record names this host (a record without a host is from before hosts were
    recorded, when every run was this server's child)."""
    host = record.get("host")
    return host is None or host == this_host()


def number(value: Any, default: float = 0.0) -> float:
    """A run file's JSON field as a float; ``default`` where it is missing, a bool or not a number."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else default


def status_fresh(status: dict[str, Any], now: float | None = None) -> bool:
    """Whether the training process rewrote ``status`` less than :data:`STALE_AFTER_S` ago."""
    now = time.time() if now is None else now
    return now - number(status.get("updated"), 0.0) < STALE_AFTER_S


def _ended(code: int, message: str) -> tuple[State, str, None]:
    if code == EXIT_OUT_OF_MEMORY:
        return "out_of_memory", message or "the training process went over its memory limit", None
    return "crashed", f"the training process ended unexpectedly ({signal_name(code)})", None


def _local_state(
    status: dict[str, Any], launched: dict[str, Any], exit_info: dict[str, Any] | None, now: float
) -> tuple[State, str, int | None]:
    state: State = status.get("state", "starting")
    message = str(status.get("message", ""))
    records = [record for record in (status, launched) if _here(record)]
    for record in records:
        if process_alive(record.get("pid"), record.get("pid_start")):
            pid = record.get("pid")
            return state, message, pid if isinstance(pid, int) else None
    if exit_info is not None and isinstance(exit_info.get("returncode"), int):
        return _ended(exit_info["returncode"], message)
    if any(process_ending(record.get("pid"), record.get("pid_start")) for record in records):
        return state, message, None  # ended a moment ago: the server that started it records how next
    elsewhere = [record.get("host") for record in (status, launched) if not _here(record)]
    if elsewhere and status_fresh(status, now):
        return state, message, None  # trains on another host, which keeps its status fresh
    started = number(launched.get("started"), number(status.get("updated"), 0.0))
    if state == "starting" and not status.get("pid") and now - started < STARTUP_GRACE_S:
        return "starting", message, None  # the process is still on its way (or its record is)
    if elsewhere:
        message = f"the training process on {elsewhere[0]} stopped reporting (its server may have stopped)"
        return "crashed", message, None
    return "crashed", "the training process is gone (the server may have restarted)", None


def _ray_state(status: dict[str, Any], launched: dict[str, Any], now: float) -> tuple[State, str, int | None]:
    from lstm_core.runs.ray_jobs import job_state

    state: State = status.get("state", "starting")
    message = str(status.get("message", ""))
    job = job_state(str(launched.get("address", "")), str(launched.get("job_id", "")))
    if not job.answered:
        return "unreachable", f"the training cluster is not answering ({job.detail})", None
    if job.alive:
        return state, message, None
    if job.lost:
        if status_fresh(status, now):
            return state, message, None  # its process still writes the folder: not over yet
        return "crashed", "the training job is gone from the cluster (the cluster may have restarted)", None
    if job.returncode is not None:
        return _ended(job.returncode, message)
    return "crashed", f"the training job ended unexpectedly ({job.detail or 'no exit code'})", None


def effective_state(
    status: dict[str, Any],
    launched: dict[str, Any],
    exit_info: dict[str, Any] | None,
    now: float | None = None,
) -> tuple[State, str, int | None]:
    """The state a reader should believe, its message, and the live local process's pid (None when
    there is none on this host): from ``status.json``, ``process.json`` (``launched``) and
    ``exit.json`` (``exit_info``, None when missing)."""
    now = time.time() if now is None else now
    state = status.get("state", "starting")
    if state not in ACTIVE_STATES:
        return state, str(status.get("message", "")), None
    if launched.get("runner") == "ray":
        return _ray_state(status, launched, now)
    return _local_state(status, launched, exit_info, now)
