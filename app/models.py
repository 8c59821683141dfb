"""The models a visitor can write with: the demo, a model shared by a link, their runs' (finished
or in progress) and their uploads.

Everything is listed from disk (the visitor's workspace, the server's shared models), so a
reload or a server restart offers the same models. Listing reads no weights: a model is loaded
(once per file version, shared by every visitor, see :func:`app.services.load_model`) only when
a page asks for it. The demo comes first: it is the Generate page's default, the same for every
visitor, so a link that leaves the model out means the demo for whoever opens it.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import streamlit as st

from app import services, share, state
from app.visitor import data_root
from lstm_core.config import Config
from lstm_core.model.network import LSTMLanguageModel
from lstm_core.runs import folder as run_files
from lstm_core.text.vocab import Vocab


@dataclass(frozen=True)
class ModelEntry:
    """One model on offer. ``key`` changes whenever its weights do (a run saving a better
    checkpoint), so caches keyed by it never serve an older model's results."""

    key: str
    label: str
    loader: Callable[[], services.LoadedModel]
    source: Literal["demo", "shared", "run", "upload"] = "demo"
    checkpoint: Path | None = None
    """The file the weights come from (None for the demo, which the server holds)."""
    run: run_files.RunSummary | None = None

    @property
    def loaded(self) -> services.LoadedModel:
        return self.loader()

    @property
    def model(self) -> LSTMLanguageModel:
        return self.loaded.model

    @property
    def vocab(self) -> Vocab:
        return self.loaded.vocab


def _file_key(prefix: str, path: Path) -> str:
    stat = path.stat()
    return f"{prefix}:{stat.st_mtime_ns}:{stat.st_size}"


def _run_entry(run: run_files.RunSummary) -> ModelEntry | None:
    path = run.checkpoint
    if path is None:
        return None
    try:
        key = _file_key(f"run:{run.id}", path)
    except OSError:  # the run is writing or was just deleted
        return None
    started = time.strftime("%d %b %H:%M", time.localtime(run.created))
    model = services.config_summary(Config.from_dict(run.config)) if run.config else "model"
    perplexity = f", validation perplexity {run.best_perplexity:,.1f}" if run.best_perplexity else ""
    when = "training now; as of its best evaluation so far" if run.active else f"{run.step:,} steps"
    label = f"Your run of {started} ({model}; {when}{perplexity})"
    return ModelEntry(key, label, lambda: services.load_model(path), "run", path, run)


def _upload_entry(path: Path) -> ModelEntry | None:
    try:
        meta = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
        name = str(meta.get("name", path.name))
        key = _file_key(f"upload:{path.stem}", path)
    except (OSError, ValueError, AttributeError):
        return None
    return ModelEntry(key, f"Uploaded: {name}", lambda: services.load_model(path), "upload", path)


def _shared_entry(share_id: str) -> ModelEntry | None:
    folder = share.shared_folder(data_root(), share_id)
    if folder is None:
        return None
    path = folder / share.MODEL_FILE
    try:
        key = _file_key(f"shared:{share_id}", path)
    except OSError:
        return None
    meta = folder / share.META_FILE
    with contextlib.suppress(OSError):
        if time.time() - meta.stat().st_mtime > 3600:
            meta.touch()  # in use: the server's clean-up keeps what was opened recently
    label = f"Shared with you: {share.shared_label(folder)}"
    return ModelEntry(key, label, lambda: services.load_model(path), "shared", path)


def available_models(shared: Iterable[str] = ()) -> dict[str, ModelEntry]:
    """The models this visitor can use: the demo, the ``shared`` ids that exist, their own runs
    (newest first) and uploads.

    Keys are stable choices (``demo``, ``shared:<id>``, ``run:<id>``, ``upload:<digest>``) for a widget.
    """
    models: dict[str, ModelEntry] = {}
    demo, problem = services.demo_model()
    if problem:
        st.warning(problem)
    if demo is not None:
        label = f"Demo model (shipped; {services.config_summary(demo.config)})"
        models["demo"] = ModelEntry("demo", label, lambda: demo)
    for share_id in dict.fromkeys(shared):
        entry = _shared_entry(share_id)
        if entry is not None:
            models[share.SHARE_PREFIX + share_id] = entry
    workspace = state.workspace()
    for run in run_files.list_runs(workspace.runs):
        entry = _run_entry(run)
        if entry is not None:
            models[f"run:{run.id}"] = entry
    if workspace.models.is_dir():
        for path in sorted(workspace.models.glob("*.pt"), key=lambda p: p.stat().st_mtime, reverse=True):
            entry = _upload_entry(path)
            if entry is not None:
                models[f"upload:{path.stem}"] = entry
    return models


def model_choice(
    models: dict[str, ModelEntry], key: str = state.MODEL_CHOICE, label: str = "Model", **widget: Any
) -> ModelEntry | None:
    """The model the visitor picks among ``models`` (a radio under ``key``), or None with a note if none exists."""
    if not models:
        st.info("There is no model yet: train one on the Train page (the Quick preset takes about a minute).")
        return None
    if st.session_state.get(key) not in models:
        st.session_state[key] = next(iter(models))
    choice = st.radio(label, list(models), format_func=lambda k: models[k].label, key=key, **widget)
    return models[choice]
