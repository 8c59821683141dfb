"""Inside the LSTM page: the equations, every gate and memory for a text, one unit, word vectors.

The page only draws: the traced forward pass and the unit searches are lstm_core.explain.inspection,
the charts and coloured words are app/inside_charts.py. Tracing a text costs tens of
milliseconds, so the trace of the current (model, text) is kept in the session and a slider or
a unit choice redraws without tracing again.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st
from torch import Tensor

from app import inside_charts as charts
from app import state
from app.models import ModelEntry, available_models, model_choice
from lstm_core.config import RECIPE_PRIME_TEXTS
from lstm_core.explain.inspection import (
    FEATURES,
    MAX_HEATMAP_UNITS,
    MAX_HEATMAP_WORDS,
    QUANTITIES,
    Trace,
    WordFeatures,
    nearest_words,
    pick_units,
    trace,
    units_for_feature,
    units_for_span,
    word_features,
)
from lstm_core.sampling.decoding import generate
from lstm_core.sampling.options import SamplingOptions
from lstm_core.text.cleaning import tokenize
from lstm_core.text.vocab import Vocab

# A typed text is refused beyond these, so tracing and drawing stay well under a second. (Bare
# strings would be drawn on the page by Streamlit's magic: these notes are comments.)
MAX_TEXT_CHARS = 3_000
MAX_TEXT_WORDS = 500
# Words the model may add to a prime text (prime + continuation stays under the text limit).
MAX_CONTINUATION = 200

SOURCES = {"generated": "A prime text, continued by the model", "typed": "Your own text"}

DEFAULT_TEXT = """Shall I compare thee to a summer's day?
Thou art more lovely and more temperate:
Rough winds do shake the darling buds of May,
And summer's lease hath all too short a date."""


# The equations as PyTorch computes them (gate order i, f, g, o), each row named like the
# quantity choice below, so the line for the quantity on show can be highlighted.
EQUATIONS = {
    "input_gate": (r"i_t", r"\sigma(W_{ii}\,x_t + b_{ii} + W_{hi}\,h_{t-1} + b_{hi})"),
    "forget_gate": (r"f_t", r"\sigma(W_{if}\,x_t + b_{if} + W_{hf}\,h_{t-1} + b_{hf})"),
    "candidate": (r"g_t", r"\tanh(W_{ig}\,x_t + b_{ig} + W_{hg}\,h_{t-1} + b_{hg})"),
    "output_gate": (r"o_t", r"\sigma(W_{io}\,x_t + b_{io} + W_{ho}\,h_{t-1} + b_{ho})"),
    "cell": (r"c_t", r"f_t \odot c_{t-1} + i_t \odot g_t"),
    "hidden": (r"h_t", r"o_t \odot \tanh(c_t)"),
}
HIGHLIGHT = "#8b1e3f"  # the theme's accent


def equations_latex(chosen: str) -> str:
    """The six equations, each labelled with its name on this page; the chosen quantity's row in the accent colour."""
    rows = []
    for name, (left, right) in EQUATIONS.items():
        label = QUANTITIES[name].rsplit(" ", 1)[0]
        cells = [left, "= " + right, rf"\text{{{label}}}"]
        if name == chosen:
            cells = [rf"\textcolor{{{HIGHLIGHT}}}{{{cell}}}" for cell in cells]
        rows.append(f"{cells[0]} &{cells[1]} && {cells[2]}")
    return r"\begin{aligned}" + r" \\ ".join(rows) + r"\end{aligned}"


def equations_section(chosen: str) -> None:
    with st.container(border=True):
        left, right = st.columns([3, 2])
        left.latex(equations_latex(chosen))
        right.markdown(
            f"""
**What each term is on this page.** Every letter is a vector with one number per **unit**
(a row of the heatmap below); the index *t* is the word (a column).

* $x_t$: the vector of word *t* (see *Word vectors*); a second layer reads the first layer's $h_t$.
* $i, f, g, o, c, h$: the six choices of **Quantity**; the one on show is in
  <span style="color:{HIGHLIGHT}">colour</span>.
* $h_{{t-1}}, c_{{t-1}}$: the column to the left in the $h$ and $c$ heatmaps (zeros before the first word).
* $W, b$: the trained weights; $\\sigma$ squashes into (0, 1), $\\tanh$ into (-1, 1);
  $\\odot$ multiplies unit by unit.
""",
            unsafe_allow_html=True,
        )


def set_prime_from_pill() -> None:
    chosen = st.session_state.get(state.INSIDE_PRIME_PILL)
    if chosen:
        st.session_state[state.INSIDE_PRIME] = chosen


def continuation(entry: ModelEntry, prime: str, length: int) -> str | None:
    """The prime and the model's greedy continuation, as one text; kept for the session."""
    key = (entry.key, prime, length)
    cached = st.session_state.get(state.INSIDE_CONTINUATION)
    if cached is None or cached["key"] != key:
        try:
            generation = generate(entry.model, entry.vocab, prime, length, SamplingOptions(method="greedy"))
        except ValueError as error:
            st.error(f"{error}. Type a prime text with at least one word.")
            return None
        st.session_state[state.INSIDE_CONTINUATION] = cached = {"key": key, "value": generation}
    generation = cached["value"]
    st.caption(
        f"The first {len(generation.prime_words)} word(s) are the prime; the model wrote the other "
        f"{len(generation.words)}, always taking its most likely word (greedy)."
    )
    return generation.text


def text_problem(text: str) -> str | None:
    """Why a typed text cannot be traced (too long, or no words), or None."""
    limit = f"the page reads at most {MAX_TEXT_CHARS:,} characters and {MAX_TEXT_WORDS:,} words"
    if len(text) > MAX_TEXT_CHARS:
        return f"This text is too long: {len(text):,} characters, and {limit}, so that it stays quick. Shorten it."
    words = len(tokenize(text))
    if words > MAX_TEXT_WORDS:
        return f"This text is too long: {words:,} words, and {limit}, so that it stays quick. Shorten it."
    if words == 0:
        return "This text has no words to read. Type some."
    return None


def text_section(entry: ModelEntry) -> str | None:
    st.session_state.setdefault(state.INSIDE_SOURCE, "generated")
    source = st.segmented_control(
        "Text",
        list(SOURCES),
        format_func=lambda key: SOURCES[key],
        required=True,
        key=state.INSIDE_SOURCE,
        persist_state="session",
    )
    if source == "generated":
        st.session_state.setdefault(state.INSIDE_PRIME, RECIPE_PRIME_TEXTS[0])
        left, right = st.columns([3, 2])
        with left:
            st.pills(
                "The recipe's prime texts",
                RECIPE_PRIME_TEXTS,
                key=state.INSIDE_PRIME_PILL,
                on_change=set_prime_from_pill,
            )
            prime = st.text_input("Prime text", key=state.INSIDE_PRIME, persist_state="session", max_chars=200)
        length = right.slider(
            "Words the model adds", 0, MAX_CONTINUATION, 40, key=state.INSIDE_LENGTH, persist_state="session"
        )
        return continuation(entry, prime, length)
    text = st.text_area(
        f"Your text (at most {MAX_TEXT_CHARS:,} characters and {MAX_TEXT_WORDS:,} words)",
        DEFAULT_TEXT,
        key=state.INSIDE_TEXT,
        height=130,
        persist_state="session",
        help=f"At most {MAX_TEXT_CHARS:,} characters and {MAX_TEXT_WORDS:,} words. Line breaks and question "
        "marks count for the features below.",
    )
    problem = text_problem(text)
    if problem:
        st.error(problem)
        return None
    return text


def traced(entry: ModelEntry, text: str) -> tuple[WordFeatures, Trace]:
    """The words of ``text`` and the model's trace over them, computed once per (model, text) in a session."""
    key = (entry.key, text)
    cached = st.session_state.get(state.INSIDE_TRACE)
    if cached is None or cached["key"] != key:
        features = word_features(text)
        value = (features, trace(entry.model, entry.vocab.encode(features.words)))
        st.session_state[state.INSIDE_TRACE] = cached = {"key": key, "value": value}
    return cached["value"]


def quantity_section(layers: int) -> tuple[int, str]:
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
            list(QUANTITIES),
            format_func=lambda key: QUANTITIES[key],
            required=True,
            key=state.INSIDE_QUANTITY,
            persist_state="session",
        )
    return layer, quantity or "hidden"


def current_unit(values: Tensor) -> int:
    """The chosen unit, reset to the most variable one when none is chosen or the layer has fewer units."""
    unit = st.session_state.get(state.INSIDE_UNIT)
    if not isinstance(unit, int) or not 0 <= unit < values.size(1):
        st.session_state[state.INSIDE_UNIT] = unit = pick_units(values, 1)[0]
    return unit


def choose_unit(pill_key: str) -> None:
    chosen = st.session_state.get(pill_key)
    if chosen is not None:
        st.session_state[state.INSIDE_UNIT] = int(chosen)
        st.session_state[pill_key] = None


def scale_caption(quantity: str) -> str:
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


def heatmap_tab(values: Tensor, words: tuple[str, ...], quantity: str, unit: int) -> None:
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
        f"{QUANTITIES[quantity].capitalize()} for every word (columns, in reading order) and unit (rows: the "
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
        f"Unit {unit}'s {QUANTITIES[quantity]} at each word, as a line and as colour over the words "
        f"(hover a word for its value; the span chosen below is shaded on the line and underlined in the text). "
        + scale_caption(quantity).replace("over what is drawn", "of this unit")
    )
    feature_column, span_column = st.columns(2)
    with feature_column, st.container(border=True):
        feature_finder(values, features, quantity)
    with span_column, st.container(border=True):
        span_finder(values, words, quantity, span)


def feature_finder(values: Tensor, features: WordFeatures, quantity: str) -> None:
    st.markdown(f"**Units that follow a feature** (by the correlation of {QUANTITIES[quantity]} with it)")
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
    st.markdown(f"**Units on across a span** ({QUANTITIES[quantity]} at least the threshold at every word of it)")
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


@st.cache_data(max_entries=8, show_spinner=False)
def word_map(model_key: str, _embedding: Tensor, _vocab: Vocab) -> pd.DataFrame:
    """The word-vector map of a model (``model_key`` names it; the weights are not hashed)."""
    return charts.pca_frame(_embedding, _vocab, charts.MAX_MAP_WORDS)


def vectors_tab(entry: ModelEntry) -> None:
    embedding = entry.model.embedding.weight
    left, right = st.columns([1, 2])
    with left:
        word = st.text_input("A word", "king", key=state.INSIDE_WORD)
        neighbours: list[tuple[str, float]] = []
        try:
            neighbours = nearest_words(embedding, entry.vocab, word, k=10)
        except ValueError as error:
            st.warning(f"{error}. Try another word.")
        if neighbours:
            st.dataframe(
                pd.DataFrame(neighbours, columns=["neighbour", "cosine similarity"]),
                hide_index=True,
                column_config={"cosine similarity": st.column_config.NumberColumn(format="%.3f")},
            )
            st.caption("The words whose vectors point most nearly the same way (cosine similarity, 1 = same way).")
    with right:
        cleaned = tokenize(word)
        frame = word_map(entry.key, embedding, entry.vocab)
        chart = charts.pca_chart(frame, cleaned[0] if len(cleaned) == 1 else None, [w for w, _ in neighbours])
        st.altair_chart(chart, width="stretch")
        st.caption(
            f"The {len(frame)} most frequent words, their vectors flattened onto the two directions in which "
            "they differ most (PCA). Hover a point for its word; the word and its neighbours are named when "
            "they are among these."
        )


st.title("🔬 Inside the LSTM")
st.markdown(
    "For every word it reads, each unit of the LSTM computes three gates, a candidate memory, a new memory and "
    "an output. This page shows them all for a text, follows one unit, finds units that respond to something, "
    "and explores the word vectors."
)
st.session_state.setdefault(state.INSIDE_QUANTITY, "hidden")
equations_section(st.session_state[state.INSIDE_QUANTITY])
st.session_state.setdefault(state.INSIDE_MODEL, st.session_state.get(state.MODEL_CHOICE))  # start from Generate's
entry = model_choice(available_models(), key=state.INSIDE_MODEL, persist_state="session")
if entry is None:
    st.stop()
text = text_section(entry)
if text is None:
    st.stop()
features, traced_text = traced(entry, text)
layer, quantity = quantity_section(len(traced_text.layers))
values = traced_text.layers[layer].values(quantity)  # (T, H)
unknown = sorted({w for w in features.words if w not in entry.vocab})
if unknown:
    st.caption(f"Not in this model's vocabulary, so read as <unk>: {', '.join(unknown)}.")
unit = current_unit(values)
heatmap, one_unit, vectors = st.tabs(["Heatmap", "One unit", "Word vectors"])
with heatmap:
    heatmap_tab(values, features.words, quantity, unit)
with one_unit:
    unit_tab(values, features, quantity, unit)
with vectors:
    vectors_tab(entry)
