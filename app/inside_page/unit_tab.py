"""The Inside page's "One unit" tab: one unit's quantity over the text, as a line and as colour
over the words, and two ways to find units worth looking at: by a feature of the text they
follow, or by a span of words they stay on across."""

from __future__ import annotations

from typing import Any

import streamlit as st
from torch import Tensor

from app import inside_charts as charts
from app import state
from app.inside_page.quantity_choice import choose_unit, scale_caption
from lstm_core.explain.inspection import QUANTITY_NAMES
from lstm_core.explain.units import FEATURES, WordFeatures, units_for_feature, units_for_span


def stored_span(steps: int) -> tuple[int, int] | None:
    """The selected span as (start, end exclusive), or None for a text too short to have one.

    Read before the span slider is drawn (the line chart above it shades the span), and reset
    when the text changed so that the old span no longer fits or covers every word.
    """
    if steps < 2:
        return None
    stored: Any = st.session_state.get(state.INSIDE_SPAN)
    fits = isinstance(stored, tuple | list) and len(stored) == 2 and 0 <= stored[0] <= stored[1] < steps
    if not fits or stored[1] - stored[0] >= steps - 1:
        st.session_state[state.INSIDE_SPAN] = stored = (0, min(2, steps - 2))
    return int(stored[0]), int(stored[1]) + 1


def unit_tab(values: Tensor, features: WordFeatures, quantity: str, unit: int) -> None:
    """Unit ``unit`` of ``values`` (T, H) over the words, then the two finders side by side."""
    words = features.words
    span = stored_span(len(words))
    left, right = st.columns([1, 3], vertical_alignment="bottom")
    left.number_input(f"Unit (0 to {values.size(1) - 1})", 0, values.size(1) - 1, step=1, key=state.INSIDE_UNIT)
    right.caption("Type a unit's number, or choose one of the units found below.")
    st.altair_chart(charts.unit_line_chart(values, words, quantity, unit, span), width="stretch")
    column = values[:, unit]
    limit = charts.colour_limit(quantity, column)
    st.markdown(charts.coloured_words_html(words, column.tolist(), quantity, limit, span), unsafe_allow_html=True)
    st.caption(
        f"Unit {unit}'s {QUANTITY_NAMES[quantity]} at each word, as a line and as colour over the words "
        f"(hover a word for its value; the span chosen below is shaded on the line and underlined in the text). "
        + scale_caption(quantity).replace("over what is drawn", "of this unit")
    )
    feature_column, span_column = st.columns(2)
    with feature_column, st.container(border=True):
        feature_finder(values, features, quantity)
    with span_column, st.container(border=True):
        span_finder(values, words, quantity, span)


def feature_finder(values: Tensor, features: WordFeatures, quantity: str) -> None:
    """The units whose ``quantity`` correlates most with a feature of the words, to pick from."""
    st.markdown(f"**Units that follow a feature** (by the correlation of {QUANTITY_NAMES[quantity]} with it)")
    st.session_state.setdefault(state.INSIDE_FEATURE, "line_position")
    name = st.segmented_control(
        "Feature", list(FEATURES), format_func=lambda key: FEATURES[key], required=True, key=state.INSIDE_FEATURE
    )
    word = None
    if name == "after_word":
        word = st.text_input("The word before", "thou", key=state.INSIDE_AFTER_WORD)
    try:
        found = units_for_feature(values, features.vector(name or "line_position", word), k=10)
    except ValueError as error:
        st.info(str(error))
        return
    if not found:
        st.info(
            "This feature is the same for every word of this text, so no unit can follow it. A generated text "
            "is one line without punctuation: try your own text with line breaks and question marks."
        )
        return
    if name == "line_position" and int(features.line.max()) == 0:
        st.caption("This text is one line, so the position in the line is simply the word number.")
    correlations = {f.unit: f.correlation for f in found}
    st.pills(
        "Choose one to see it above (Pearson r over the words; the strongest first)",
        list(correlations),
        format_func=lambda u: f"unit {u}: r = {correlations[u]:+.2f}",
        key=state.INSIDE_FEATURE_PICK,
        on_change=choose_unit,
        args=(state.INSIDE_FEATURE_PICK,),
    )


def span_finder(values: Tensor, words: tuple[str, ...], quantity: str, span: tuple[int, int] | None) -> None:
    """The units on at or above a threshold across the chosen span (and less so outside it), to pick from."""
    st.markdown(f"**Units on across a span** ({QUANTITY_NAMES[quantity]} at least the threshold at every word of it)")
    if span is None:
        st.info("A span needs a text of at least two words.")
        return
    st.select_slider(
        "The span: its first and last word",
        options=list(range(len(words))),
        format_func=lambda p: f"{p}: {words[p]}",
        key=state.INSIDE_SPAN,
    )
    threshold = st.slider("Threshold", -1.0, 1.0, 0.3, step=0.05, key=state.INSIDE_THRESHOLD)
    try:
        found = units_for_span(values, span[0], span[1], threshold=threshold, k=10)
    except ValueError as error:
        st.info(str(error))
        return
    if not found:
        st.info("No unit stays at or above the threshold across the whole span: lower it or shorten the span.")
        return
    described = {s.unit: s for s in found}
    st.pills(
        "Choose one to see it above (lowest value inside the span, mean outside; the most specific first)",
        list(described),
        format_func=lambda u: f"unit {u}: {described[u].inside_min:+.2f} / {described[u].outside_mean:+.2f}",
        key=state.INSIDE_SPAN_PICK,
        on_change=choose_unit,
        args=(state.INSIDE_SPAN_PICK,),
    )
