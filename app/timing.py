"""An opt-in log of the server's script runs, for benchmarks: how long each page took on the server.

Set ``LSTM_PLAYHOUSE_TIMING_LOG`` to a file path before starting the server and the entry script
appends one JSON line per script run (a page view, a widget change, a page switch)::

    {"page": "Generate", "start": 1764300000.123, "end": 1764300000.171}

``start`` is when the entry script began, after its imports (the widget change has arrived and
the run was picked up), and ``end`` when it finished, in seconds since the epoch (``time.time()``). A browser's own
time is not in it, so a benchmark whose browsers share the server's cores can tell the two
apart. The variable is read once, when this module is first imported; unset (the default),
nothing is written. A fragment's own reruns (the sidebar's training status) are not script runs
and are not logged.
"""

from __future__ import annotations

import json
import os

PATH = os.environ.get("LSTM_PLAYHOUSE_TIMING_LOG") or None


def record(page: str, start: float, end: float) -> None:
    """Append one script run to the log, if there is one (one ``write``: lines never interleave)."""
    if PATH is None:
        return
    line = json.dumps({"page": page, "start": round(start, 6), "end": round(end, 6)}) + "\n"
    descriptor = os.open(PATH, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(descriptor, line.encode("utf-8"))
    finally:
        os.close(descriptor)
