"""The models a visitor can write with: their runs' (finished or in progress), their uploads, the demo.

Everything is listed from the visitor's workspace on disk, so a reload or a server restart offers
the same models. Listing reads no weights: a model is loaded (once per file version, shared by
every visitor, see :func:`app.services.load_model`) only when a page asks for it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from app import services, state
from lstm_core import runs as run_files
from lstm_core.config import Config
from lstm_core.model import LSTMLanguageModel
from lstm_core.vocab import Vocab


@dataclass(frozen=True)
class ModelEntry:
    """One model on offer. ``key`` changes whenever its weights do (a run saving a better
    checkpoint), so caches keyed by it never serve an older model's results."""

    key: str
    label: str
    loader: Callable[[], services.LoadedModel]

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
    return ModelEntry(key, f"Your run of {started} ({model}; {when}{perplexity})", lambda: services.load_model(path))


def _upload_entry(path: Path) -> ModelEntry | None:
    try:
        meta = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
        name = str(meta.get("name", path.name))
        key = _file_key(f"upload:{path.stem}", path)
    except (OSError, ValueError, AttributeError):
        return None
    return ModelEntry(key, f"Uploaded: {name}", lambda: services.load_model(path))


def available_models() -> dict[str, ModelEntry]:
    """The models this visitor can use, newest own first, then uploads, then the demo.

    Keys are stable choices (``run:<id>``, ``upload:<digest>``, ``demo``) for a widget.
    """
    models: dict[str, ModelEntry] = {}
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
    demo, problem = services.demo_model()
    if problem:
        st.warning(problem)
    if demo is not None:
        label = f"Demo model (shipped; {services.config_summary(demo.config)})"
        models["demo"] = ModelEntry("demo", label, lambda: demo)
    return models


def model_choice(label: str = "Model") -> ModelEntry | None:
    """The model the visitor picks (one choice shared by the pages), or None with a note if none exists."""
    models = available_models()
    if not models:
        st.info("There is no model yet: train one on the Train page (the Quick preset takes about a minute).")
        return None
    if st.session_state.get(state.MODEL_CHOICE) not in models:
        st.session_state[state.MODEL_CHOICE] = next(iter(models))
    choice = st.radio(
        label, list(models), format_func=lambda k: models[k].label, key=state.MODEL_CHOICE, persist_state="session"
    )
    return models[choice]
