"""Keeping a shared server's disk in bounds: what visitors keep, deleted when old or when too much.

Visitors keep runs, uploaded texts, uploaded models and shared models under the data folder.
:func:`sweep` deletes those unused for ``keep_days``, then the least recently used while all of
them together pass ``disk_mb`` (:class:`~lstm_core.runs.limits.RunLimits`). A run that trains is
never deleted. The server sweeps once after its first page and before each run starts.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from lstm_core.runs import folder as runs
from lstm_core.runs.limits import RunLimits


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
