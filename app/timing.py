"""An opt-in log of the server's script runs, for benchmarks: how long each page took on the server.

Set ``LSTM_PLAYHOUSE_TIMING_LOG`` to a file path before starting the server and the entry script
appends one JSON line per script run (a page view, a widget change, a page switch)::

    {"page": "Generate", "start": 1764300000.123, "end": 1764300000.171, "cpu": 0.031}

``start`` is when the entry script began, after its imports (the widget change has arrived and
the run was picked up), and ``end`` when it finished, in seconds since the epoch (``time.time()``);
``cpu`` is the processor time the script run's thread used in between (``time.thread_time()``).
A browser's own time is not in either, so a benchmark whose browsers share the server's cores can
tell the two apart; and where they compete for the cores, ``end - start`` includes the waits
for one while ``cpu`` does not. The variable is read once, when this module is first imported; unset (the default),
nothing is written. A fragment's own reruns (the sidebar's training status) are not script runs
and are not logged.
"""

from __future__ import annotations

import json
import os

PATH = os.environ.get("LSTM_PLAYHOUSE_TIMING_LOG") or None


def record(page: str, start: float, end: float, cpu: float | None = None) -> None:
    """Append one script run to the log, if there is one (one ``write``: lines never interleave)."""
    if PATH is None:
        return
    entry: dict[str, str | float] = {"page": page, "start": round(start, 6), "end": round(end, 6)}
    if cpu is not None:
        entry["cpu"] = round(cpu, 6)
    line = json.dumps(entry) + "\n"
    descriptor = os.open(PATH, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(descriptor, line.encode("utf-8"))
    finally:
        os.close(descriptor)
