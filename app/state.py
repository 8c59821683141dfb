"""Every session-state key the pages share, its default, and the config <-> widgets bridge.

Widgets that must keep their value across pages use ``persist_state="session"`` with a key
from here; the model settings live in one plain dict (see :func:`config_widget`). A visitor's
state (corpus choice, config, run, models) lives only in their session.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import streamlit as st

from lstm_core.checkpoint import Checkpoint
from lstm_core.config import PRESETS, Config, ConfigError

# Keys ---------------------------------------------------------------------------------------
CORPUS_SOURCE = "corpus_source"  # "plays" | "gutenberg" | "upload"
CORPUS_PLAYS = "corpus_plays"  # list of play names ([] = all)
UPLOAD = "upload"  # {"corpus", "digest"} of the last good upload
GUTENBERG = "gutenberg"  # the downloaded Corpus
RUN = "run"  # the visitor's TrainingRun
MY_MODEL = "my_model"  # {"checkpoint": Checkpoint, "label": str, "key": str}
SNAPSHOT = "snapshot"  # {"checkpoint": Checkpoint, "label": str, "key": str} of the run in progress
MODEL_CHOICE = "model_choice"
PRESET = "preset"

CONFIG = "config_values"  # {field: value}: the settings the widgets show and edit
# The config fields the Train page shows; the rest keep the preset's value.
UI_FIELDS = (
    "rnn_size",
    "embedding_size",
    "num_layers",
    "dropout",
    "tie_weights",
    "output_layer",
    "epochs",
    "batch_size",
    "training_seq_len",
    "learning_rate",
    "lr_schedule",
    "min_word_freq",
    "grad_clip",
    "eval_every",
    "precision",
    "seed",
)
# A visitor of a hosted demo should see a model learn within a minute.
DEFAULT_PRESET = "quick"


def init() -> None:
    """Defaults for a new session (existing values are left alone)."""
    state = st.session_state
    state.setdefault(CORPUS_SOURCE, "plays")
    state.setdefault(CORPUS_PLAYS, [])
    state.setdefault(PRESET, DEFAULT_PRESET)
    state.setdefault(CONFIG, {name: getattr(PRESETS[state[PRESET]], name) for name in UI_FIELDS})


def apply_preset(name: str) -> None:
    """Set every setting to the preset's value (an on_click callback: runs before the widgets)."""
    st.session_state[PRESET] = name
    st.session_state[CONFIG] = {field: getattr(PRESETS[name], field) for field in UI_FIELDS}


def _store(widget_key: str, name: str) -> None:
    st.session_state[CONFIG][name] = st.session_state[widget_key]


def config_widget(widget: Callable[..., Any], label: str, name: str, *args: Any, scope: str = "", **kwargs: Any) -> Any:
    """A widget that shows and edits one setting of :data:`CONFIG`.

    The settings live in one plain dict, not in widget keys: a widget's own state is dropped
    when its page is left, and the same setting has widgets on two pages (min_word_freq). Each
    widget is set from the dict before it is drawn and writes back to it when changed.
    """
    key = f"{scope}:{name}"
    value = st.session_state[CONFIG][name]
    if st.session_state.get(key) != value:
        st.session_state[key] = value
    return widget(label, *args, key=key, on_change=_store, args=(key, name), **kwargs)


def current_config() -> tuple[Config | None, list[str]]:
    """The config the widgets describe, or None and the reasons it cannot work."""
    base = PRESETS[st.session_state.get(PRESET, DEFAULT_PRESET)]
    values: dict[str, Any] = {name: st.session_state[CONFIG].get(name, getattr(base, name)) for name in UI_FIELDS}
    try:
        return dataclasses.replace(base, **values), []
    except ConfigError as error:
        return None, error.problems


def my_model() -> tuple[Checkpoint, str, str] | None:
    entry = st.session_state.get(MY_MODEL)
    return (entry["checkpoint"], entry["label"], entry["key"]) if entry else None


def set_my_model(checkpoint: Checkpoint, label: str, key: str) -> None:
    st.session_state[MY_MODEL] = {"checkpoint": checkpoint, "label": label, "key": key}
