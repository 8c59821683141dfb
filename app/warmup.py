"""What a fresh server does once, after its first page has been sent: its start-up chores, and
importing what the other pages need, in a thread of their own.

A fresh server's first visitor sees the Data page, which needs neither torch nor the trainer
(see :mod:`app.services`). The Train, Generate and Inside pages do, and importing torch and the
modules around it takes about a second and a half: done when a visitor clicks there, that is a
slow page switch; done before the first page, a slow first page. So the entry script calls
:func:`start` after each script run, and the first call runs the chores it is given (clearing
out old runs) and then imports :data:`MODULES` while the visitor reads the page; a page that
needs one of them before it is ready waits for that import (Python's import lock) instead of
doing it again.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable

MODULES = (
    "torch",
    "lstm_core.model",
    "lstm_core.checkpoint",
    "lstm_core.trainer",
    "lstm_core.sampling",
    "lstm_core.inspection",
    "app.charts",  # Altair and pandas
    "app.inside_charts",
    "app.models",
    "app.widgets",
)
"""What the Train, Generate and Inside pages import beyond what the Data page already has."""

_lock = threading.Lock()
_started = False


def _run(chores: tuple[Callable[[], object], ...]) -> None:
    for chore in chores:
        chore()
    for name in MODULES:
        try:
            importlib.import_module(name)
        except Exception:
            continue  # the page that needs it shows the error itself


def start(*chores: Callable[[], object]) -> None:
    """Run ``chores``, then the imports, in a thread, once per server process (later calls do nothing)."""
    global _started
    with _lock:
        if _started:
            return
        _started = True
    threading.Thread(target=_run, args=(chores,), name="after the first page", daemon=True).start()
