"""Share links for the Generate page: the address holds the result, and a link can leave the workspace.

The Generate page's settings (model, prime, method, length, seed, temperature and every other
sampling option, and the open tab) are widgets bound to the page address (Streamlit's
``bind="query-params"``): moving one rewrites the address in place, without a browser-history
entry per move, and opening the address shows the same settings, so the same continuation,
word for word (the seed is in it).

The address also holds the visitor's private workspace key (``k``). A share link is the same
address without it. The demo model is the same for everyone; a visitor's own model is in no
one else's workspace, so it is shared only when the visitor asks: a copy of its weights goes to
``<data>/shared/<id>/`` under a new unguessable id, read-only, and the link names ``shared:<id>``,
which exposes nothing else of the visitor's.

A link that names a model this visitor cannot open, or a value out of range, opens the page with
a clear message and the nearest valid settings (:func:`validate`): never an exception.

Nothing here draws widgets; the page does.
"""

from __future__ import annotations

import json
import math
import re
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from app import state, widgets
from lstm_core.fields import describe_field
from lstm_core.files import atomic_write_text
from lstm_core.model.checkpoint import load_checkpoint, save_checkpoint
from lstm_core.sampling.options import SamplingOptions

SHARED_DIR = "shared"
SHARE_PREFIX = "shared:"
_SHARE_ID = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
MODEL_FILE = "model.pt"
META_FILE = "meta.json"

# The Generate page's settings, in the order a link lists them: widget key -> SamplingOptions field.
OPTION_KEYS = {
    state.METHOD: "method",
    state.SEED: "seed",
    state.TEMPERATURE: "temperature",
    state.TOP_K: "top_k",
    state.TOP_P: "top_p",
    state.MIN_P: "min_p",
    state.REPETITION: "repetition_penalty",
    state.NO_REPEAT: "no_repeat_ngram",
    state.BEAM_WIDTH: "beam_width",
    state.LENGTH_PENALTY: "length_penalty",
    state.UNKNOWN: "unknown",
}
LENGTH_RANGE = (5, 100)
MODES = ("Continue", "Step by step", "Score a text")
MAX_PRIME_CHARS = 500
MODEL_PARAM = "model"
PARAMS = (state.PRIME_TEXT, state.LENGTH, *OPTION_KEYS, state.GENERATE_MODE)
"""The bound widgets' keys (each its own query parameter), in the order a link lists them."""


# ---- validating an address -------------------------------------------------------------------
#
# A bound widget that shows a list of options (a radio, a segmented control, a select slider)
# writes the option as the page shows it (its format_func's text) into the address, a slider its
# number, a text box its text. The model is not a bound widget: its choice keys are stable while
# its labels are not (a run's label changes as it trains), so the page keeps ``model=<choice>``
# in the address itself.


@dataclass(frozen=True)
class Checked:
    """An address's settings made valid (as the address writes them), and what had to change (in
    words, for the page)."""

    values: dict[str, str]
    problems: list[str]


def _format(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _shown_options(key: str) -> tuple[str, dict[str, Any]] | None:
    """(the label, {text in the address: value}) for a widget of ``key`` that shows options."""
    if key == state.GENERATE_MODE:
        return "the tab", {mode: mode for mode in MODES}
    if key == state.METHOD:
        info = describe_field(SamplingOptions, "method")
        return info.label, {info.choice_labels.get(choice, choice): choice for choice in info.choices}
    if key in OPTION_KEYS:
        spec = widgets.widget_spec(SamplingOptions, OPTION_KEYS[key])
        if "options" in spec.kwargs:
            shown = spec.kwargs.get("format_func", str)
            return spec.label, {shown(option): option for option in spec.kwargs["options"]}
    return None


def address_text(key: str, value: Any) -> str:
    """How the address writes ``value`` of the setting ``key`` (what its bound widget writes)."""
    options = _shown_options(key)
    if options is not None:
        for text, option in options[1].items():
            if option == value:
                return text
    return _format(value)


def _check_options(key: str, raw: str) -> tuple[str | None, str | None]:
    label, options = _shown_options(key)  # type: ignore[misc]
    if raw in options:
        return raw, None
    values = list(options.values())
    if all(isinstance(v, (int, float)) for v in values):  # a select slider of numbers: the nearest one
        wanted = _finite(raw)
        if wanted is None:
            return None, f"{label} {raw!r} is not a number"
        nearest = min(values, key=lambda v: (abs(float(v) - wanted), float(v)))
        text = address_text(key, nearest)
        return text, f"{label} {raw} is not one of its values, so {text} is used"
    choices = ", ".join(options)
    return None, f"{label} {raw!r} is not one of: {choices}"


def _finite(raw: str) -> float | None:
    """The number an address's text says, or None if it says none (or an infinite or NaN one)."""
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _check_number(raw: str, low: float, high: float, step: float, label: str) -> tuple[str | None, str | None]:
    wanted = _finite(raw)
    if wanted is None:
        return None, f"{label} {raw!r} is not a number"
    value: float = min(high, max(low, round((wanted - low) / step) * step + low))
    value = round(value) if isinstance(low, int) and isinstance(step, int) else round(value, 10)
    if float(value) == wanted:
        return raw, None
    return _format(value), f"{label} {raw} is out of range, so {_format(value)} is used"


def validate(params: Mapping[str, str], models: Iterable[str]) -> Checked:
    """The Generate page's settings from an address, each made valid; unknown keys are left out.

    ``models`` are the model choices this visitor has. A value that cannot be read falls back to
    the page's own default (it is left out); a number out of range goes to the nearest valid one.
    """
    values: dict[str, str] = {}
    problems: list[str] = []
    for key in (MODEL_PARAM, *PARAMS):
        raw = params.get(key)
        if raw is None:
            continue
        value: str | None
        problem: str | None = None
        if key == MODEL_PARAM:
            value = raw if raw in models else None
            if value is None:
                problem = (
                    "the link's model is not one you can open here (it may have been deleted, or it is in "
                    "someone else's workspace), so the first model on offer is shown"
                )
        elif key == state.PRIME_TEXT:
            value = raw[:MAX_PRIME_CHARS]
            if len(raw) > MAX_PRIME_CHARS:
                problem = f"the link's prime text was cut to {MAX_PRIME_CHARS} characters"
        elif key == state.LENGTH:
            value, problem = _check_number(raw, *LENGTH_RANGE, 1, "Words to write")
        elif _shown_options(key) is not None:
            value, problem = _check_options(key, raw)
        else:
            spec = widgets.widget_spec(SamplingOptions, OPTION_KEYS[key])
            low, high, step = spec.kwargs["min_value"], spec.kwargs["max_value"], spec.kwargs["step"]
            value, problem = _check_number(raw, low, high, step, spec.label)
        if value is not None:
            values[key] = value
        if problem:
            problems.append(problem)
    return Checked(values, problems)


# ---- links ---------------------------------------------------------------------------------------

GENERATE_PATH = "/generate"


def share_link(page_url: str | None, address: Mapping[str, str], model: str) -> str:
    """The page's address with its settings (``address``: the page's query parameters) and the
    model, without the private key (the page's path alone where the browser's address is not known)."""
    base = (page_url or GENERATE_PATH).split("?", 1)[0]
    query = {MODEL_PARAM: model, **{key: address[key] for key in PARAMS if address.get(key) is not None}}
    return f"{base}?{urlencode(query)}"


# ---- shared models -----------------------------------------------------------------------------


def shared_root(data_root: Path) -> Path:
    return data_root / SHARED_DIR


def is_share_id(value: str) -> bool:
    return bool(_SHARE_ID.match(value))


def shared_folder(data_root: Path, share_id: str) -> Path | None:
    """The folder of a shared model, or None if the id is malformed or unknown."""
    if not is_share_id(share_id):
        return None
    folder = shared_root(data_root) / share_id
    return folder if (folder / MODEL_FILE).is_file() and (folder / META_FILE).is_file() else None


def shared_label(folder: Path) -> str:
    try:
        meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
        return str(meta.get("label", "a shared model"))
    except (OSError, ValueError, AttributeError):
        return "a shared model"


def _shares(workspace_folder: Path) -> dict[str, str]:
    try:
        shares = json.loads((workspace_folder / "shares.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return shares if isinstance(shares, dict) else {}


def existing_share(workspace_folder: Path, model_key: str) -> str | None:
    """The id under which this visitor already shared this model (this version of its weights)."""
    share_id = _shares(workspace_folder).get(model_key)
    return share_id if isinstance(share_id, str) and is_share_id(share_id) else None


def share_model(data_root: Path, workspace_folder: Path, model_key: str, checkpoint: Path, label: str) -> str:
    """Share a copy of the model in ``checkpoint`` (weights, config, vocabulary only) and return its id.

    Sharing the same model (the same ``model_key``, which changes with its weights) again gives
    the same id. The copy is model-only in float16: no optimizer, no history of the visitor's.
    """
    shares = _shares(workspace_folder)
    known = existing_share(workspace_folder, model_key)
    if known is not None and shared_folder(data_root, known) is not None:
        return known
    share_id = secrets.token_urlsafe(16)
    folder = shared_root(data_root) / share_id
    model = load_checkpoint(checkpoint).without_training_state(half=True)
    model.history = {}
    model.dataset = {}
    save_checkpoint(model, folder / MODEL_FILE)
    atomic_write_text(folder / META_FILE, json.dumps({"label": label, "shared": time.time()}))
    shares[model_key] = share_id
    atomic_write_text(workspace_folder / "shares.json", json.dumps(shares))
    return share_id
