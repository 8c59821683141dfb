"""What a fresh server does once, after its first page has been sent: importing what the other
pages need, then its start-up chores, in a thread of their own.

A fresh server's first visitor sees the Data page, which needs neither torch nor the trainer
(see :mod:`app.services`). The Train, Generate and Inside pages do, and importing torch and the
modules around it takes about a second and a half: done when a visitor clicks there, that is a
slow page switch; done before the first page, a slow first page. So the entry script calls
:func:`start` after each script run, and the first call imports :data:`MODULES` and then runs
the chores it is given (loading the demo model, clearing out old runs) while the visitor reads
the page. A page that needs one of them before it is ready waits for it (Python's import lock,
the demo model's own lock) instead of doing it again.
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
    for name in MODULES:
        try:
            importlib.import_module(name)
        except Exception:
            continue  # the page that needs it shows the error itself
    for chore in chores:
        try:
            chore()
        except Exception:
            continue  # each chore is also done where it is needed (a run's start sweeps; a page loads the model)


def start(*chores: Callable[[], object]) -> None:
    """The imports, then ``chores``, in a thread, once per server process (later calls do nothing)."""
    global _started
    with _lock:
        if _started:
            return
        _started = True
    threading.Thread(target=_run, args=(chores,), name="after the first page", daemon=True).start()
