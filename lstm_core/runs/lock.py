"""One start at a time across every web server that shares the data folder: a lock made by ``mkdir``.

Admitting a run is a check and a write that must be one step (count the runs, then start one),
across a server's threads, its processes and, with ``LSTM_PLAYHOUSE_DATA`` on a shared
filesystem, other machines' servers. ``flock`` and ``fcntl`` locks span machines only on some
filesystems and mount options (NFS with ``local_lock`` set, or without a lock manager, keeps them
on one client); creating a directory is atomic on every POSIX filesystem, NFS included: exactly
one of two servers that ``mkdir`` the same name at once succeeds. So the lock is the directory
``<data>/runs.lock.d``; its ``owner`` file says who holds it (host, pid, since when).

A holder that died inside the lock (a server killed mid-start) leaves it behind: a lock whose
holder is a dead process on this host, or that is older than :data:`BREAK_AFTER_S` (a start
takes a second or two, a few more when the cluster is slow), is broken by renaming it away
(atomic too, so two servers cannot both break it and both enter). The runner is not the source
of truth for the caps because the caps count per visitor and per server, which Ray knows nothing
of, and a local runner has no such source at all.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

from lstm_core.runs.liveness import this_host
from lstm_core.system.processes import process_alive, process_start_time

LOCK_NAME = "runs.lock.d"
OWNER_FILE = "owner"
BREAK_AFTER_S = 60.0
"""A lock held this long is taken to be left behind by a holder that died."""
POLL_S = 0.05


def _owner(lock: Path) -> dict[str, object] | None:
    try:
        data = json.loads((lock / OWNER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _left_behind(lock: Path, now: float) -> bool:
    """Whether the lock's holder is gone: a dead process here, or a lock older than the limit."""
    owner = _owner(lock)
    if owner is None:  # the holder has not written its name yet, or died before it did
        try:
            since = lock.stat().st_mtime
        except OSError:
            return False  # released meanwhile
    else:
        if owner.get("host") == this_host() and not process_alive(owner.get("pid"), owner.get("pid_start")):
            return True
        recorded = owner.get("since")
        since = float(recorded) if isinstance(recorded, (int, float)) else 0.0
    return now - since > BREAK_AFTER_S


def _break(lock: Path) -> None:
    aside = lock.with_name(f"{lock.name}.stale-{secrets.token_hex(4)}")
    try:
        lock.rename(aside)  # only one breaker wins; the others find the lock gone, or a new one
    except OSError:
        return
    shutil.rmtree(aside, ignore_errors=True)


@contextlib.contextmanager
def runs_lock(data_root: Path, timeout_s: float = 2 * BREAK_AFTER_S) -> Iterator[None]:
    """Hold the data folder's start lock (see the module's notes); raises TimeoutError if it cannot
    be had within ``timeout_s``."""
    data_root.mkdir(parents=True, exist_ok=True)
    lock = data_root / LOCK_NAME
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            lock.mkdir()
            break
        except FileExistsError:
            if _left_behind(lock, time.time()):
                _break(lock)
                continue
            if time.monotonic() > deadline:
                raise TimeoutError(f"another start holds {lock}; try again in a moment") from None
            time.sleep(POLL_S)
    try:
        owner = {"host": this_host(), "pid": os.getpid(), "pid_start": process_start_time(os.getpid())}
        (lock / OWNER_FILE).write_text(json.dumps({**owner, "since": time.time()}), encoding="utf-8")
        yield
    finally:
        shutil.rmtree(lock, ignore_errors=True)
