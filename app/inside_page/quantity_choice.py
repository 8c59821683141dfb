"""What the Inside page's tabs draw: the layer and quantity on show, the unit chosen, and the
colour scale of a quantity in words."""

from __future__ import annotations

import streamlit as st
from torch import Tensor

from app import inside_charts as charts
from app import state
from lstm_core.explain.inspection import CELL_QUANTITIES, pick_units


def keep_quantity_of(cell: str) -> str:
    """The quantity on show, set back to ``hidden`` (every cell has it) when the chosen model's cell lacks it."""
    if st.session_state.get(state.INSIDE_QUANTITY) not in CELL_QUANTITIES[cell]:
        st.session_state[state.INSIDE_QUANTITY] = "hidden"
    return st.session_state[state.INSIDE_QUANTITY]


def quantity_section(layers: int, cell: str = "lstm") -> tuple[int, str]:
    """The layer (when the model has more than one) and the quantity of the model's cell; returns both."""
    quantities = CELL_QUANTITIES[cell]
    left, right = st.columns([1, 4]) if layers > 1 else (None, st.container())
    layer = 0
    if left is not None:
        if st.session_state.get(state.INSIDE_LAYER, 0) >= layers:
            st.session_state[state.INSIDE_LAYER] = 0
        st.session_state.setdefault(state.INSIDE_LAYER, 0)
        layer = (
            left.segmented_control(
                "Layer",
                list(range(layers)),
                format_func=lambda k: f"layer {k + 1}",
                required=True,
                key=state.INSIDE_LAYER,
            )
            or 0
        )
    with right:
        quantity = st.segmented_control(
            "Quantity",
            list(quantities),
            format_func=lambda key: quantities[key],
            required=True,
            key=state.INSIDE_QUANTITY,
            persist_state="session",
        )
    return layer, quantity or "hidden"


def current_unit(values: Tensor) -> int:
    """The chosen unit, reset to the most variable one when none is chosen or the layer has fewer units.

    ``values`` is the quantity on show, (T, H): a row per word, a column per unit.
    """
    unit = st.session_state.get(state.INSIDE_UNIT)
    if not isinstance(unit, int) or not 0 <= unit < values.size(1):
        st.session_state[state.INSIDE_UNIT] = unit = pick_units(values, 1)[0]
    return unit


def choose_unit(pill_key: str) -> None:
    """A unit picked from a finder's pills becomes the chosen unit (a callback); the pill is cleared."""
    chosen = st.session_state.get(pill_key)
    if chosen is not None:
        st.session_state[state.INSIDE_UNIT] = int(chosen)
        st.session_state[pill_key] = None


def scale_caption(quantity: str) -> str:
    """The colour scale of ``quantity`` in words: its colours, its range, and who can read it."""
    if charts.scale_kind(quantity) == "sequential":
        return (
            f"Colour: {charts.SCALE_NAMES['sequential']}, dark purple at 0 (closed) to yellow at 1 (open). "
            "Readable with colour blindness and in grey."
        )
    reach = "±max |c| over what is drawn (c has no bound)" if quantity == "cell" else "-1 to 1"
    return (
        f"Colour: {charts.SCALE_NAMES['diverging']}, {reach}; blue below zero, orange above. "
        "Blue and orange stay apart for red-green colour blindness."
    )
