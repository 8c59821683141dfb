"""The Generate page's settings in its address: the address reproduces what is on screen, and a
link without the private key shares it (the rules for a link's values are ``app/share.py``)."""

from __future__ import annotations

from typing import Literal

import streamlit as st

from app import share, state
from app.models import ModelEntry
from app.visitor import KEY_PARAM

BIND: Literal["query-params"] = "query-params"
"""What the page's widgets are bound to: each writes its value into the address."""


def requested_shares() -> list[str]:
    """The shared models this visitor opened by a link (kept while the session lasts)."""
    opened: list[str] = st.session_state.setdefault(state.OPENED_SHARES, [])
    wanted = st.query_params.get(share.MODEL_PARAM, "")
    if wanted.startswith(share.SHARE_PREFIX) and wanted not in opened:
        opened.append(wanted)
    return [choice.removeprefix(share.SHARE_PREFIX) for choice in opened]


def settle_address(models: dict[str, ModelEntry]) -> None:
    """Make the address hold valid settings before any widget reads it.

    A link's values are checked (``app/share.py``); a value out of range or a model this visitor
    cannot open goes to the nearest valid setting, with a message. A visitor coming back with a
    bare address gets their saved settings. Either way the page reopens at the corrected address
    (the widgets read it), so the address always says what is on screen. The model's choice is
    then taken from the address when a link (not this page) put it there.
    """
    present = {key: st.query_params[key] for key in (share.MODEL_PARAM, *share.PARAMS) if key in st.query_params}
    saved = st.session_state.pop(state.SAVED_GENERATE, None)
    restoring = not present and bool(saved)
    if restoring:
        assert saved is not None
        model = saved.pop(state.MODEL_CHOICE, None)
        source = {key: share.address_text(key, value) for key, value in saved.items()}
        if model is not None:
            source[share.MODEL_PARAM] = str(model)
    else:
        source = present
    checked = share.validate(source, models)
    if (restoring and checked.values) or checked.problems:
        st.session_state[state.ADDRESS_NOTES] = [] if restoring else checked.problems
        st.switch_page("app/pages/generate.py", query_params={**checked.values, KEY_PARAM: state.workspace().key})
    wanted = st.query_params.get(share.MODEL_PARAM)
    if wanted is not None and wanted != st.session_state.get(state.MODEL_IN_ADDRESS):
        st.session_state[state.MODEL_CHOICE] = wanted  # a link's model (the page never wrote it)
    notes = st.session_state.pop(state.ADDRESS_NOTES, None)
    if notes:
        st.warning("This link's settings did not all fit, so the nearest ones are used: " + "; ".join(notes) + ".")


def keep_model_in_address(choice: str) -> None:
    """Write the model's choice into the address (the other settings' widgets write their own)."""
    if st.query_params.get(share.MODEL_PARAM) != choice:
        st.query_params[share.MODEL_PARAM] = choice
    st.session_state[state.MODEL_IN_ADDRESS] = choice
