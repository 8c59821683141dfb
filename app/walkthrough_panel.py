"""Inside this step: the softmax walk-through of the next word, and what reading the last word did.

Drawn beside the step-by-step candidates chart. The numbers come from :mod:`lstm_core.explain.walkthrough`
(the sampler's own stages, and the traced LSTM); this module turns them into a table and a chart
(pure functions, tested on their own) and lays them out (:func:`walkthrough_panel`). A slider
move redraws both without a model call: the step generator keeps the log-probs, and the word
just read is one word through the traced cell.

Colour scales are the Inside page's (:mod:`app.inside_charts`), readable with red-green colour
blindness: viridis for the gates (an LSTM's ``i, f, o``, a GRU's ``r, z``: 0 closed to 1 open),
blue-orange diverging for the candidate (``g`` or ``n``) and the change in memory (``Δc``; ``Δh``
for the cells whose output is their memory): blue below 0, near white at 0, orange above.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import altair as alt
import pandas as pd
import streamlit as st
from pandas.io.formats.style import Styler

from app.charts import Chart
from app.inside_charts import colour_scale
from lstm_core.explain.walkthrough import (
    LayerRead,
    Walkthrough,
    WalkthroughRow,
    softmax_walkthrough,
    units_by_change,
    word_just_read,
)
from lstm_core.sampling.options import SamplingOptions
from lstm_core.sampling.step import StepGenerator

WALKTHROUGH_WORDS = 10
"""Rows of the walk-through table: the most likely words, enough to see the cuts at work."""

CHANGED_UNITS = 32
"""Units drawn per layer for the word just read: those whose memory changed most."""

KEPT, CUT = "✓", "✗"

# Column names of the walk-through table (the page's words for each number).
WORD, MODEL, LOGIT, SCALED, TEMPERED = "word", "log p (model)", "logit z", "z / T", "p after T"
RUNNING, MIN_P_RATIO, KEPT_COLUMN, FINAL = "running sum", "p / p top", "kept?", "p (drawn)"

STRIP_STEP = 12
"""Pixels per unit (column) of the gate strips."""

STRIP_ROW = 18
"""Pixels per row (quantity) of the gate strips."""


def kept_label(row: WalkthroughRow) -> str:
    """``✓`` for a word every filter kept, else ``✗`` and the filter that cut it (the first, in the sampler's order)."""
    for name, kept in (("top-k", row.top_k_kept), ("top-p", row.top_p_kept), ("min-p", row.min_p_kept)):
        if kept is False:
            return f"{CUT} {name}"
    return KEPT


def walkthrough_frame(walk: Walkthrough) -> pd.DataFrame:
    """One row per candidate (most likely first), one column per number the sampler computes.

    A filter that is off adds nothing; with any cut on, ``kept?`` names the filter that cut each
    word. The model's own log-probability gets a column only where the word rules changed more
    than a constant (a repetition penalty or a banned n-gram): otherwise the logit is the
    model's log-probability shifted by one constant, which no softmax can see.
    """
    rows = walk.rows
    data: dict[str, list] = {WORD: [r.word for r in rows]}
    shifts = [r.logit - r.model_log_prob for r in rows]
    if shifts and max(shifts) - min(shifts) > 1e-5:
        data[MODEL] = [r.model_log_prob for r in rows]
    data[LOGIT] = [r.logit for r in rows]
    if walk.temperature is not None:
        data[SCALED] = [r.scaled for r in rows]
        data[TEMPERED] = [r.tempered for r in rows]
    if walk.top_p is not None:
        data[RUNNING] = [r.running_sum for r in rows]
    if walk.min_p is not None:
        data[MIN_P_RATIO] = [r.min_p_ratio for r in rows]
    if (walk.top_k, walk.top_p, walk.min_p) != (None, None, None):
        data[KEPT_COLUMN] = [kept_label(r) for r in rows]
    data[FINAL] = [r.probability for r in rows]
    return pd.DataFrame(data)


HELP = {
    MODEL: "the model's log-probability, before the word rules",
    LOGIT: "the log-probability after the word rules: what the temperature divides",
    SCALED: "the logit divided by the temperature T",
    TEMPERED: "softmax(z / T): the probability after the temperature, before the cuts",
    RUNNING: "this word's probability plus those above it, after temperature and top-k (renormalised over "
    "the k words kept); the nucleus ends at the first word where it reaches p",
    MIN_P_RATIO: "the word's probability over the top word's, after the cuts before min-p",
    KEPT_COLUMN: "✓ kept by every cut, or ✗ and the cut that removed the word",
    FINAL: "the probability “Sample one” draws this word with",
}


PERCENT, DECIMALS = "{:.2%}", "{:.2f}"
FORMATS = {MODEL: DECIMALS, LOGIT: DECIMALS, SCALED: DECIMALS, MIN_P_RATIO: DECIMALS}
FORMATS |= {TEMPERED: PERCENT, RUNNING: PERCENT, FINAL: PERCENT}
SOMETIMES_BLANK = (RUNNING, MIN_P_RATIO)
"""Columns with no number for some words (the running sum of a word top-k cut): shown as text, blank there."""


def styled(frame: pd.DataFrame) -> Styler:
    """:func:`walkthrough_frame` for display: logits and ratios to 2 decimals, probabilities in percent to 2.

    A missing number is a blank cell; a table shows a missing number as "None", so the columns
    that can miss one are turned into formatted text first.
    """
    shown = frame.copy()
    for name in SOMETIMES_BLANK:
        if name in shown:
            shown[name] = ["" if pd.isna(value) else FORMATS[name].format(value) for value in shown[name]]
    return shown.style.format(
        {name: FORMATS[name] for name in shown.columns if name in FORMATS and name not in SOMETIMES_BLANK}
    )


def column_config(frame: pd.DataFrame) -> dict[str, Any]:
    """Each column's explanation, shown when the header is hovered; numbers right-aligned."""
    return {
        name: st.column_config.Column(name, help=HELP[name], alignment="right" if name in FORMATS else None)
        for name in frame.columns
        if name in HELP
    }


def walkthrough_caption(walk: Walkthrough) -> str:
    """What the columns on show mean, in the order the sampler goes; the cuts that are off, named."""
    rules = f" after the word rules ({', '.join(walk.rules)})" if walk.rules else ""
    parts = [
        f"The {len(walk.rows)} most likely words. **logit z** is the model's log-probability{rules}. The model "
        "outputs log-softmax, its raw logits minus one constant per step; a softmax ignores a constant, so "
        "these give the same probabilities as raw logits would."
    ]
    if walk.temperature is not None:
        parts.append(f"**p after T** = softmax(z / T) with T = {walk.temperature:g}.")
    if walk.top_k is not None:
        parts.append(f"**top-k** keeps the {walk.top_k} most likely and renormalises them.")
    if walk.top_p is not None:
        parts.append(
            f"**top-p** adds them up from the top (**running sum**) and ends the nucleus at the first word "
            f"where the sum reaches {walk.top_p:g}."
        )
    if walk.min_p is not None:
        parts.append(f"**min-p** keeps the words with **p / p top** of at least {walk.min_p:g}.")
    parts.append("**p (drawn)** is what “Sample one” draws with.")
    off = [
        name for name, value in (("top-k", walk.top_k), ("top-p", walk.top_p), ("min-p", walk.min_p)) if value is None
    ]
    if off and walk.temperature is not None:
        parts.append(f"Off now: {', '.join(off)} (in More sampling options).")
    return " ".join(parts)


def change_name(layer: LayerRead) -> str:
    """``Δc`` for an LSTM, ``Δh`` for the cells whose output is their memory."""
    return "Δ" + layer.memory_symbol


def gates_frame(layer: LayerRead, units: Sequence[int]) -> pd.DataFrame:
    """Long-form ``unit, quantity, value, before, after`` rows: each gate, the candidate and the change in
    memory (an LSTM's i, f, g, o and Δc; a GRU's r, z, n and Δh; a plain RNN's Δh) of each unit in ``units``;
    ``before`` and ``after`` are the memory's values."""
    picked = list(units)
    columns = dict(layer.gates)
    if layer.candidate is not None:
        columns[layer.candidate_symbol] = layer.candidate
    if layer.kind == "lstm":  # PyTorch's order, i f g o
        columns = {name: columns[name] for name in ("i", "f", "g", "o")}
    columns[change_name(layer)] = layer.change
    before = layer.memory_before.detach().float().cpu()[picked].tolist()
    after = layer.memory.detach().float().cpu()[picked].tolist()
    frames = [
        pd.DataFrame(
            {
                "unit": picked,
                "quantity": name,
                "value": values.detach().float().cpu()[picked].tolist(),
                "before": before,
                "after": after,
            }
        )
        for name, values in columns.items()
    ]
    return pd.concat(frames, ignore_index=True)


def gates_chart(layer: LayerRead, units: Sequence[int], title: str = "") -> alt.VConcatChart:
    """Strips over ``units`` (largest change in memory first): the gates on viridis, the candidate and
    the change in memory on blue-orange.

    One strip per kind, each with its own colour scale and legend, over one shared row of units (a
    plain RNN has only the change); the change's scale reaches the largest change drawn, so the
    strongest write or erase is full orange or blue.
    """
    data = gates_frame(layer, units)
    order = [str(unit) for unit in units]
    data["unit"] = data["unit"].astype(str)
    change = change_name(layer)
    reach = max(float(data.loc[data["quantity"] == change, "value"].abs().max()), 1e-6)
    width = STRIP_STEP * len(order)
    memory = layer.memory_symbol
    tooltip = [
        alt.Tooltip("unit:N"),
        alt.Tooltip("quantity:N", title="quantity"),
        alt.Tooltip("value:Q", format="+.3f"),
        alt.Tooltip("before:Q", title=f"{memory} before", format="+.3f"),
        alt.Tooltip("after:Q", title=f"{memory} after", format="+.3f"),
    ]

    def strip(names: list[str], quantity: str, limit: float, legend: str, last: bool) -> Chart:
        axis = alt.Axis(labelAngle=-90, labelFontSize=9, labelOverlap=False, ticks=False) if last else None
        return (
            alt.Chart(data)
            .transform_filter(alt.FieldOneOfPredicate(field="quantity", oneOf=names))
            .mark_rect(stroke="#fbf8f1", strokeWidth=0.5)
            .encode(
                x=alt.X("unit:N", sort=order, axis=axis, title="unit" if last else None),
                y=alt.Y(
                    "quantity:N",
                    sort=names,
                    title=None,
                    axis=alt.Axis(minExtent=28, labelFontSize=12, labelOverlap=False, ticks=False),
                ),
                color=alt.Color(
                    "value:Q",
                    scale=colour_scale(quantity, limit),
                    # Horizontal, title to the left: about as tall as one strip, so the strips stay close.
                    legend=alt.Legend(
                        title=legend,
                        orient="right",
                        direction="horizontal",
                        titleOrient="left",
                        gradientLength=64,
                        gradientThickness=9,
                        labelFontSize=10,
                        titleFontSize=11,
                        tickCount=3,
                    ),
                ),
                tooltip=tooltip,
            )
            .properties(width=width, height=STRIP_ROW * len(names))
        )

    strips = []
    if layer.gates:
        strips.append(strip(list(layer.gates), "input_gate", 1.0, ", ".join(layer.gates), last=False))
    if layer.candidate is not None:
        strips.append(strip([layer.candidate_symbol], "candidate", 1.0, layer.candidate_symbol, last=False))
    strips.append(strip([change], "cell", reach, change, last=True))
    chart = alt.vconcat(*strips, spacing=4).resolve_scale(color="independent")
    return chart.properties(title=title) if title else chart


def walkthrough_section(generator: StepGenerator, options: SamplingOptions) -> None:
    walk = softmax_walkthrough(generator, options, n=WALKTHROUGH_WORDS)
    st.markdown("**The softmax, step by step**")
    frame = walkthrough_frame(walk)
    st.dataframe(styled(frame), hide_index=True, column_config=column_config(frame))
    st.caption(walkthrough_caption(walk))


def gates_section(generator: StepGenerator) -> None:
    read = word_just_read(generator)
    where = "the word just added"
    shown = read.word
    if not generator.words:
        where = "the last word of the prime"
        typed = generator.prime_words[-1]
        if typed != read.word:  # a word outside the vocabulary: the model read <unk>
            shown, where = typed, f"the last word of the prime, read as {read.word}"
    st.markdown(f"**What reading “{shown}” did to the memory**")
    for number, layer in enumerate(read.layers, start=1):
        units = units_by_change(layer, CHANGED_UNITS)
        title = f"layer {number}" if len(read.layers) > 1 else ""
        st.altair_chart(gates_chart(layer, units, title), width="content")
    st.caption(f"“{shown}” is {where}. " + gates_caption(read.layers[0]))


def gates_caption(layer: LayerRead) -> str:
    """What the strips show for this cell: its change in memory as an equation, and the colours."""
    change = change_name(layer)
    equation = {
        "lstm": "Δc = c_t − c_t−1 = i·g − (1 − f)·c_t−1, what was written minus what was forgotten",
        "gru": "Δh = h_t − h_t−1 = (1 − z)·(n − h_t−1): the update gate z keeps the old h, 1 − z lets n in",
        "rnn": "Δh = h_t − h_t−1, with h_t = tanh(W x_t + U h_t−1 + b): no gate decides what to keep",
    }[layer.kind]
    gates = (
        f"{', '.join(layer.gates)} on **viridis** (dark purple 0 = closed, yellow 1 = open); " if layer.gates else ""
    )
    candidate = f"{layer.candidate_symbol} and " if layer.candidate is not None else ""
    return (
        f"Per layer, the {CHANGED_UNITS} units whose memory changed most (largest |{change}| first; hover a cell "
        f"for its numbers): {equation}. Colours: {gates}{candidate}{change} on **blue-orange** (blue below 0, near "
        f"white at 0, orange above; {change}'s scale reaches the largest change shown). Both stay readable with "
        "red-green colour blindness. The Inside the LSTM page shows every word of a text."
    )


def walkthrough_panel(generator: StepGenerator, options: SamplingOptions) -> None:
    """The walk-through of the next word under ``options`` (sampling), and the gates of the word just read."""
    with st.container(border=True):
        walkthrough_section(generator, options)
        gates_section(generator)
