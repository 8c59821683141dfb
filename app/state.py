"""Every session-state key the pages use, its type and default, and the visitor's saved settings.

A page never invents a key: it uses a constant from here, and the accessors below for values that
are more than a widget's. Widgets that must keep their value across pages use
``persist_state="session"`` with a key from here; the model settings live in one plain dict
(see :func:`config_widget`).

What a visitor would miss after a reload (the corpus choice, the model settings, the generation
settings, the run on show) is saved to their workspace folder at the end of every script run in
which it changed (:func:`save_settings`) and restored when a new session opens the same address
(:func:`init`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import streamlit as st

from app.visitor import KEY_PARAM, Workspace, new_key, valid_key
from lstm_core.config import PRESETS, Config, ConfigError

# ---- keys ----------------------------------------------------------------------------------
WORKSPACE = "workspace"  # Workspace: the visitor's key and folder
CORPUS_SOURCE = "corpus_source"  # "plays" | "gutenberg" | "upload" (a widget)
CORPUS_PLAYS = "corpus_plays"  # list of play names, [] = all (a widget)
UPLOAD = "upload"  # Upload | None: the visitor's uploaded text
PRESET = "preset"  # name of the preset the settings started from
CONFIG = "config_values"  # {field: value}: the settings the Train page's widgets show and edit
CURRENT_RUN = "current_run"  # id of the run the Train page shows, or None
TRAIN_ERROR = "train_error"  # str | None: why the last Start or Resume was refused
START_ASKED = "start_asked"  # True from a press of Start until the page starts the run (or says why not)
REFUSED_UPLOADS = "refused_uploads"  # {digest: message}: model files already refused, not loaded again
MODEL_CHOICE = "model_choice"  # the Generate page's model (a widget)
GENERATOR = "generator"  # GeneratorEntry | None: the step-by-step generator of the current model and prime
SCORE = "score"  # list[ScoreEntry]: the last two scored texts and their results
SETTINGS_SAVED = "settings_saved"  # the settings as last written to disk
WAS_RUNNING = "was_running"  # whether the current run was training at the last refresh
INSIDE_MODEL = "inside_model"  # the Inside page's model (a widget)
COMPARE_RUNS = "compare_runs"  # list of run ids the Train page draws on one chart (a widget)
# Inside page and other widgets
INSIDE_SOURCE = "inside_source"  # the Inside page's text: a generated continuation or the visitor's own
INSIDE_PRIME_PILL = "inside_prime_pill"  # the Inside page's prime-text pills
INSIDE_PRIME = "inside_prime"  # the Inside page's prime text
INSIDE_LENGTH = "inside_length"  # how many words the model adds to the Inside page's prime
INSIDE_TEXT = "inside_text"  # the visitor's own text on the Inside page
INSIDE_LAYER = "inside_layer"  # the layer the Inside page draws
INSIDE_QUANTITY = "inside_quantity"  # the quantity the Inside page draws (i f g o c h; a GRU's r z n h)
INSIDE_FIRST_WORD = "inside_first_word"  # the first word of the heatmap's window
INSIDE_KEEP = "inside_keep"  # units the visitor keeps on the heatmap
INSIDE_FEATURE = "inside_feature"  # the feature whose units the Inside page finds
INSIDE_AFTER_WORD = "inside_after_word"  # the word for the 'after a word' feature
INSIDE_FEATURE_PICK = "inside_feature_pick"  # a unit picked from the feature's units
INSIDE_SPAN = "inside_span"  # the span of words whose units are found
INSIDE_THRESHOLD = "inside_threshold"  # how high a unit must stay across the span
INSIDE_SPAN_PICK = "inside_span_pick"  # a unit picked from the span's units
INSIDE_WORD = "inside_word"  # the word whose neighbours the word-vector map shows
INSIDE_UNIT = "inside_unit"  # the chosen unit: the number box and the pills of found units set it
INSIDE_TRACE = "inside_trace"  # the last trace: {key: (model key, text), value: (WordFeatures, Trace)}
INSIDE_CONTINUATION = "inside_continuation"  # the last continuation: {key: (model key, prime, length), value}
GATES_MODELS = "gates_models"  # the models the "Why gates" tab compares (a widget)
GATES_RESULT = "gates_result"  # its last comparison: {key: (model keys, text), value: GatesComparison}
WRITE_WITH_RUN = "write_with_run"  # the Train page's button that opens Generate with the run's model
DOWNLOAD_MODEL = "download_model"  # the Train page's download button
RUN_CHOICE = "run_choice"  # the Train page's choice of the run shown
MODEL_UPLOAD = "model_upload"  # the Train page's model-file uploader
# Widgets the Data page owns
UPLOAD_WIDGET = "upload_widget"  # the Data page's text uploader
# Generate page widgets; the ones in GENERATE_PARAMS are bound to the page address (a share link)
PRIME_TEXT, PRIME_PILL = "prime_text", "prime_pill"
METHOD, LENGTH, SEED = "method", "length", "seed"
TEMPERATURE, TOP_K, TOP_P, MIN_P = "temperature", "top_k", "top_p", "min_p"
REPETITION, NO_REPEAT, UNKNOWN = "repetition", "no_repeat", "unknown"
BEAM_WIDTH, LENGTH_PENALTY = "beam_width", "length_penalty"
CANDIDATE_PICK, SCORE_TEXT = "candidate_pick", "score_text"
GENERATE_MODE = "generate_mode"
BESIDE = "beside"  # what the Continue tab sets beside the text: nothing, an n-gram's, a snapshot's
SCORE_THEN = "score_then"  # whether the Score tab also scores with a snapshot
SNAPSHOT_STEP = "snapshot_step"  # the step of the run's snapshot set beside its latest model
MODEL_IN_ADDRESS = "model_in_address"  # the model choice this page last wrote to the address
GENERATE_PARAMS = (
    PRIME_TEXT,
    LENGTH,
    METHOD,
    SEED,
    TEMPERATURE,
    TOP_K,
    TOP_P,
    MIN_P,
    REPETITION,
    NO_REPEAT,
    BEAM_WIDTH,
    LENGTH_PENALTY,
    UNKNOWN,
    GENERATE_MODE,
)
SAVED_GENERATE = "saved_generate"  # the Generate settings saved for this visitor, until the page applies them
OPENED_SHARES = "opened_shares"  # the shared models this visitor opened by a link, while the session lasts
ADDRESS_NOTES = "address_notes"  # what a link's settings needed changed, shown once the page has them

# The config fields the Train page shows, in its groups and order; the rest keep the preset's value.
UI_GROUPS: dict[str, tuple[str, ...]] = {
    "Model": ("cell", "rnn_size", "embedding_size", "num_layers", "tie_weights", "output_layer", "precision"),
    "Regularisation": (
        "input_dropout",
        "dropout",
        "locked_dropout",
        "embedding_dropout",
        "weight_drop",
        "weight_decay",
        "activation_reg",
        "temporal_reg",
    ),
    "Training": (
        "epochs",
        "batch_size",
        "training_seq_len",
        "learning_rate",
        "optimizer",
        "lr_schedule",
        "min_word_freq",
        "grad_clip",
        "weight_average",
        "average_start",
        "eval_every",
        "seed",
    ),
}
UI_FIELDS = tuple(name for group in UI_GROUPS.values() for name in group)
# A visitor of a hosted demo should see a model learn within a minute.
DEFAULT_PRESET = "quick"
MAX_REFUSED = 32


@dataclass(frozen=True)
class Upload:
    """A text the visitor uploaded, kept in their workspace."""

    name: str
    digest: str
    path: Path


@dataclass(frozen=True)
class GeneratorEntry:
    """The step-by-step generator for one model and prime (the prime is fed once, then kept)."""

    model_key: str
    prime: str
    generator: Any


@dataclass(frozen=True)
class ScoreEntry:
    """A scored text, so a rerun that changes nothing else does not score it again."""

    model_key: str
    text: str
    result: Any


def _is_str(value: Any) -> bool:
    return isinstance(value, str)


# What is saved for a visitor, and what a saved value must look like to be restored.
PERSISTED: dict[str, Callable[[Any], bool]] = {
    CORPUS_SOURCE: lambda v: v in ("plays", "gutenberg", "upload"),
    CORPUS_PLAYS: lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
    PRESET: lambda v: v in PRESETS,
    CONFIG: lambda v: isinstance(v, dict),
    CURRENT_RUN: lambda v: v is None or isinstance(v, str),
    INSIDE_MODEL: _is_str,
    SCORE_TEXT: lambda v: isinstance(v, str) and len(v) <= 8000,
}
"""The Generate page's settings are saved too, under ``"generate"``, and checked like a link's
(``app/share.py``) when the page applies them."""


# ---- the session -------------------------------------------------------------------------------


def init() -> Workspace:
    """The visitor's workspace (from the address, or a new one), and defaults for a new session.

    The key is written back to the address whenever a page switch dropped it, so the address
    bar always shows the workspace's address.
    """
    state = st.session_state
    workspace: Workspace | None = state.get(WORKSPACE)
    if workspace is None:
        key = st.query_params.get(KEY_PARAM)
        workspace = Workspace.for_key(key if key is not None and valid_key(key) else new_key())
        state[WORKSPACE] = workspace
        saved = workspace.load_settings()
        for name, check in PERSISTED.items():
            if name in saved and check(saved[name]):
                state[name] = saved[name]
        generate = saved.get("generate")
        state[SAVED_GENERATE] = {k: str(v) for k, v in generate.items()} if isinstance(generate, dict) else {}
        upload = saved.get(UPLOAD)
        if isinstance(upload, dict) and _is_str(upload.get("name")) and _is_str(upload.get("digest")):
            path = workspace.uploads / f"{upload['digest']}.txt"
            if path.is_file():
                state[UPLOAD] = Upload(upload["name"], upload["digest"], path)
        state[SETTINGS_SAVED] = saved
    if st.query_params.get(KEY_PARAM) != workspace.key:
        st.query_params[KEY_PARAM] = workspace.key
    state.setdefault(CORPUS_SOURCE, "plays")
    state.setdefault(CORPUS_PLAYS, [])
    state.setdefault(PRESET, DEFAULT_PRESET)
    defaults = {name: getattr(PRESETS[state[PRESET]], name) for name in UI_FIELDS}
    state[CONFIG] = {**defaults, **{k: v for k, v in state.get(CONFIG, {}).items() if k in UI_FIELDS}}
    state.setdefault(REFUSED_UPLOADS, {})
    return workspace


def workspace() -> Workspace:
    return st.session_state[WORKSPACE]


def settings() -> dict[str, Any]:
    """What would be saved for this visitor now."""
    state = st.session_state
    values: dict[str, Any] = {name: state[name] for name in PERSISTED if name in state}
    generate = {name: state[name] for name in (MODEL_CHOICE, *GENERATE_PARAMS) if state.get(name) is not None}
    values["generate"] = generate or state.get(SAVED_GENERATE, {})
    upload = upload_choice()
    if upload is not None:
        values[UPLOAD] = {"name": upload.name, "digest": upload.digest}
    return values


def save_settings() -> None:
    """Write the visitor's settings to their workspace if they changed since the last write."""
    if WORKSPACE not in st.session_state:
        return
    current = settings()
    if current != st.session_state.get(SETTINGS_SAVED):
        workspace().save_settings(current)
        st.session_state[SETTINGS_SAVED] = current


# ---- typed values ------------------------------------------------------------------------------


def upload_choice() -> Upload | None:
    return st.session_state.get(UPLOAD)


def set_upload(upload: Upload) -> None:
    st.session_state[UPLOAD] = upload


def current_run_id() -> str | None:
    return st.session_state.get(CURRENT_RUN)


def set_current_run(run_id: str | None) -> None:
    st.session_state[CURRENT_RUN] = run_id


def refused_upload(digest: str) -> str | None:
    return st.session_state.get(REFUSED_UPLOADS, {}).get(digest)


def remember_refused_upload(digest: str, message: str) -> None:
    refused = st.session_state.setdefault(REFUSED_UPLOADS, {})
    refused[digest] = message
    while len(refused) > MAX_REFUSED:
        refused.pop(next(iter(refused)))


# ---- the config and its widgets ----------------------------------------------------------------


GPU_PRESETS = frozenset({"gpu"})
"""Presets sized for a CUDA GPU: a CPU would take hours over what they plan for minutes."""


def offered_presets() -> list[str]:
    """The presets the Train page offers: the GPU ones only where CUDA is available."""
    import torch

    return [name for name in PRESETS if name not in GPU_PRESETS or torch.cuda.is_available()]


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
    except TypeError as error:  # a saved setting of the wrong kind
        return None, [str(error)]
