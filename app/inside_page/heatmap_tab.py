"""The Inside page's "Heatmap" tab: the quantity on show for every word (columns) and unit (rows),
the chosen unit first, then the units that vary most over the text."""

from __future__ import annotations

import streamlit as st
from torch import Tensor

from app import inside_charts as charts
from app import state
from app.inside_page.quantity_choice import scale_caption
from lstm_core.explain.inspection import MAX_HEATMAP_UNITS, MAX_HEATMAP_WORDS, QUANTITY_NAMES


def heatmap_tab(values: Tensor, words: tuple[str, ...], quantity: str, unit: int) -> None:
    """The heatmap of ``values`` (T, H), a window of words when there are too many, and the units kept on it."""
    steps, units = values.shape
    first = 0
    if steps > MAX_HEATMAP_WORDS:
        first = st.slider(
            f"Window: first word shown (at most {MAX_HEATMAP_WORDS} words at once)",
            0,
            steps - MAX_HEATMAP_WORDS,
            0,
            key=state.INSIDE_FIRST_WORD,
        )
    keep = [u for u in st.session_state.get(state.INSIDE_KEEP, []) if u < units]
    st.session_state[state.INSIDE_KEEP] = keep  # a smaller layer than before drops the units it lacks
    view = charts.heatmap_view(values, first, keep=[unit, *keep])
    st.altair_chart(charts.heatmap_chart(values, words, quantity, view), width="stretch")
    st.caption(
        f"{QUANTITY_NAMES[quantity].capitalize()} for every word (columns, in reading order) and unit (rows: the "
        f"chosen unit {unit} first, then the units that vary most over this text; at most {MAX_HEATMAP_WORDS} "
        f"words and {MAX_HEATMAP_UNITS} units are drawn at once). Hover a cell for its value. "
        + scale_caption(quantity)
    )
    if view.note():
        st.info(view.note())
    if units > 1:
        st.multiselect(
            f"Also keep these units on the heatmap (the layer has {units:,}; at most {MAX_HEATMAP_UNITS} are drawn)",
            list(range(units)),
            key=state.INSIDE_KEEP,
        )
