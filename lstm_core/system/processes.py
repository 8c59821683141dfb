"""Other processes, by pid: alive, ending, or gone, and how one ended. Linux's ``/proc`` where there is one.

A pid alone does not name a process for good (the system reuses it once the process ends), so a
record of a process keeps its start time beside its pid (:func:`process_start_time`), and
:func:`process_alive` checks both. Nothing here imports torch: the server reads runs with it.
"""

from __future__ import annotations

import os
import signal
from typing import Any


def process_stat(pid: int) -> list[str] | None:
    """The fields of Linux's ``/proc/PID/stat`` after the command name (``[0]`` is the state, ``T``:
    stopped, ``Z``: zombie; ``[19]`` the start time), or None where the process or ``/proc`` is not."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as file:
            return file.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def process_start_time(pid: int) -> int | None:
    """The start time of process ``pid`` (clock ticks since boot, from ``/proc``), or None if it
    is not running (or is a zombie). With the pid it names one process for good: a pid can be
    reused by another process after the first one ends, its start time cannot."""
    fields = process_stat(pid)
    if fields is None:
        return None if os.path.isdir("/proc") else _start_time_without_proc(pid)
    if fields[0] in ("Z", "X"):  # a zombie has ended; it only waits to be reaped
        return None
    return int(fields[19])


def _start_time_without_proc(pid: int) -> int | None:
    """Where there is no ``/proc`` (macOS): alive or not, without a start time to compare."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return 0
    return 0


def process_alive(pid: Any, start: Any) -> bool:
    """Whether the process ``pid`` that started at ``start`` (see :func:`process_start_time`) runs."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    now = process_start_time(pid)
    return now is not None and (not isinstance(start, int) or now == 0 or now == start)


def process_ending(pid: Any, start: Any) -> bool:
    """Whether the process ``pid`` that started at ``start`` has ended but not yet been reaped
    (a zombie): its parent is about to learn, and record, how it ended."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    fields = process_stat(pid)
    return fields is not None and fields[0] == "Z" and (not isinstance(start, int) or int(fields[19]) == start)


def signal_name(returncode: int) -> str:
    """``-9`` -> ``"killed by signal 9 (SIGKILL)"``; ``1`` -> ``"exit code 1"``."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = "unknown"
        return f"killed by signal {-returncode} ({name})"
    return f"exit code {returncode}"
