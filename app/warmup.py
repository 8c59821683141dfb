"""What a fresh server does once, after its first page has been sent: importing what the other
pages need, then its start-up chores, in a thread of their own.

A fresh server's first visitor sees the Data page, which needs neither torch nor the trainer
(see :mod:`app.services`). The Train, Generate and Inside pages do, and importing torch and the
modules around it takes about a second and a half: done when a visitor clicks there, that is a
slow page switch; done before the first page, a slow first page. So the entry script calls
:func:`start` after each script run, and the first call imports what those pages import and then runs
the chores it is given (loading the demo model, clearing out old runs) while the visitor reads
the page. A page that needs one of them before it is ready waits for it (Python's import lock,
the demo model's own lock) instead of doing it again.

The modules are read from the pages' own import statements (:func:`page_imports`), and from
those of the app's modules they import (a page's parts, e.g. ``app/generate_page/``), so a page
that gains an import is warmed up without anyone remembering to list it here.
"""

from __future__ import annotations

import ast
import importlib
import sys
import threading
from collections.abc import Callable
from pathlib import Path

APP_DIR = Path(__file__).resolve().parent
PAGES_DIR = APP_DIR / "pages"
PAGES = ("train.py", "generate.py", "inside.py")
"""The pages whose imports are warmed up, the likeliest next page first; torch comes before all."""

_lock = threading.Lock()
_started = False


def page_imports(path: Path) -> list[str]:
    """The modules a page script imports at its top level, in order, read from its source.

    ``from X import a`` gives ``X`` and ``X.a``: ``a`` may be a submodule (``from app import
    charts``); if it is not, importing ``X.a`` fails and is skipped.
    """
    names = []
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module != "__future__":
            names += [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
    return names


def app_module_file(name: str) -> Path | None:
    """The source of ``name`` when it is one of the app's own modules (``app.x.y``), else None."""
    if name != "app" and not name.startswith("app."):
        return None
    path = APP_DIR.parent.joinpath(*name.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def modules() -> list[str]:
    """What the entry script's later pages import (torch first), without repeats: each page's
    imports, each of the app's own modules among them followed by its imports in turn."""
    names = ["torch"]
    seen: set[str] = set()

    def add(path: Path) -> None:
        for name in page_imports(path):
            names.append(name)
            source = app_module_file(name)
            if source is not None and name not in seen:
                seen.add(name)
                add(source)

    for page in PAGES:
        add(PAGES_DIR / page)
    return list(dict.fromkeys(names))


def _run(chores: tuple[Callable[[], object], ...]) -> None:
    for name in modules():
        parent = sys.modules.get(name.rpartition(".")[0])
        if name in sys.modules or (parent is not None and not hasattr(parent, "__path__")):
            continue  # loaded already, or a name imported from a module, not a submodule
        try:
            importlib.import_module(name)
        except Exception:
            continue  # not a module (an imported name), or broken: the page shows its own error
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
