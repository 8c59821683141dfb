"""Import what the other pages need in the background, once the first page has been sent.

A fresh server's first visitor sees the Data page, which needs neither torch nor the trainer
(see :mod:`app.services`). The Train, Generate and Inside pages do, and importing torch and the
modules around it takes one to two seconds: done when a visitor clicks there, that is a slow page
switch; done before the first page, a slow first page. So the entry script calls :func:`start`
after each script run, and the first call imports these in a thread of their own while the
visitor reads the page; a page that needs one of them before it is ready waits for that import
(Python's import lock) instead of doing it again.
"""

from __future__ import annotations

import importlib
import threading

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


def _import_all() -> None:
    for name in MODULES:
        try:
            importlib.import_module(name)
        except Exception:
            continue  # the page that needs it shows the error itself


def start() -> None:
    """Start the imports once per server process (later calls do nothing)."""
    global _started
    with _lock:
        if _started:
            return
        _started = True
    threading.Thread(target=_import_all, name="warm-up imports", daemon=True).start()
