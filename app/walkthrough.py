"""Inside this step: the softmax walk-through of the next word, and what reading the last word did.

Drawn beside the step-by-step candidates chart. The numbers come from :mod:`lstm_core.walkthrough`
(the sampler's own stages, and the traced LSTM); this module turns them into a table and a chart
(pure functions, tested on their own) and lays them out (:func:`walkthrough_panel`). A slider
move redraws both without a model call: the step generator keeps the log-probs, and the word
just read is one word through the traced cell.

Colour scales are the Inside page's (:mod:`app.inside_charts`), readable with red-green colour
blindness: viridis for the gates ``i, f, o`` (0 closed to 1 open), blue-orange diverging for ``g``
and the change in memory ``Δc`` (blue below 0, near white at 0, orange above).
"""

from __future__ import annotations

from collections.abc import Sequence

import altair as alt
import pandas as pd
import streamlit as st

from app.inside_charts import colour_scale
from lstm_core.sampling import SamplingOptions, StepGenerator
from lstm_core.walkthrough import LayerRead, Walkthrough, softmax_walkthrough, units_by_change, word_just_read

WALKTHROUGH_WORDS = 10
"""Rows of the walk-through table: the most likely words, enough to see the cuts at work."""

CHANGED_UNITS = 32
"""Units drawn per layer for the word just read: those whose memory changed most."""

KEPT, CUT = "✓", "cut"

# Column names of the walk-through table (the page's words for each number).
RANK, WORD, MODEL, LOGIT, SCALED, TEMPERED = "#", "word", "log p (model)", "logit z", "z / T", "p after T"
RUNNING, MIN_P_RATIO, FINAL = "running sum", "p / p top", "p (drawn)"

STRIP_STEP = 14
"""Pixels per unit (column) and per row of the gate strips."""


def walkthrough_frame(walk: Walkthrough) -> pd.DataFrame:
    """One row per candidate, one column per number the sampler computes; a filter that is off has no column.

    A filter's column says kept or cut; a word an earlier filter cut is blank in the later ones,
    so each word's row shows where it left.

    The model's own log-probability gets a column only where the word rules changed more than a
    constant (a repetition penalty or a banned n-gram): otherwise the logit is the model's
    log-probability shifted by one constant, which no softmax can see.
    """
    rows = walk.rows
    out = [False] * len(rows)  # cut by an earlier filter: later filters' columns stay blank for it

    def flags(kept: list[bool | None]) -> list[str]:
        shown = ["" if gone or k is None else (KEPT if k else CUT) for gone, k in zip(out, kept, strict=True)]
        out[:] = [gone or k is False for gone, k in zip(out, kept, strict=True)]
        return shown

    data: dict[str, list] = {RANK: [r.rank for r in rows], WORD: [r.word for r in rows]}
    shifts = [r.logit - r.model_log_prob for r in rows]
    if shifts and max(shifts) - min(shifts) > 1e-5:
        data[MODEL] = [r.model_log_prob for r in rows]
    data[LOGIT] = [r.logit for r in rows]
    if walk.temperature is not None:
        data[SCALED] = [r.scaled for r in rows]
        data[TEMPERED] = [r.tempered for r in rows]
    if walk.top_k is not None:
        data[f"top-k {walk.top_k}"] = flags([r.top_k_kept for r in rows])
    if walk.top_p is not None:
        data[RUNNING] = [r.running_sum for r in rows]
        data[f"top-p {walk.top_p:g}"] = flags([r.top_p_kept for r in rows])
    if walk.min_p is not None:
        data[MIN_P_RATIO] = [r.min_p_ratio for r in rows]
        data[f"min-p {walk.min_p:g}"] = flags([r.min_p_kept for r in rows])
    data[FINAL] = [r.probability for r in rows]
    return pd.DataFrame(data)


def column_config(frame: pd.DataFrame) -> dict[str, object]:
    """Formats for :func:`walkthrough_frame`'s columns: logits to 2 decimals, probabilities in percent."""
    help_texts = {
        MODEL: "the model's log-probability, before the word rules",
        LOGIT: "the log-probability after the word rules: what the temperature divides",
        SCALED: "the logit divided by the temperature T",
        TEMPERED: "softmax(z / T): the probability after the temperature, before the cuts",
        RUNNING: "this word's probability plus those above it, after temperature and top-k; "
        "the nucleus ends at the first word where it reaches p",
        MIN_P_RATIO: "the word's probability over the top word's, after the cuts before min-p",
        FINAL: "the probability “Sample one” draws this word with",
    }
    config: dict[str, object] = {
        RANK: st.column_config.NumberColumn(RANK, width="small"),
        WORD: st.column_config.TextColumn(WORD),
    }
    for name in frame.columns:
        if name in (MODEL, LOGIT, SCALED):
            config[name] = st.column_config.NumberColumn(name, format="%.2f", help=help_texts[name])
        elif name in (TEMPERED, RUNNING, FINAL):
            config[name] = st.column_config.NumberColumn(name, format="percent", help=help_texts[name])
        elif name == MIN_P_RATIO:
            config[name] = st.column_config.NumberColumn(name, format="%.2f", help=help_texts[name])
    return config


def gates_frame(layer: LayerRead, units: Sequence[int]) -> pd.DataFrame:
    """Long-form ``unit, quantity, value, c_before, c_after`` rows: i, f, g, o and Δc of each unit in ``units``."""
    picked = list(units)
    columns = {
        "i": layer.input_gate,
        "f": layer.forget_gate,
        "g": layer.candidate,
        "o": layer.output_gate,
        "Δc": layer.change,
    }
    before = layer.cell_before.detach().float().cpu()[picked].tolist()
    after = layer.cell.detach().float().cpu()[picked].tolist()
    frames = [
        pd.DataFrame(
            {
                "unit": picked,
                "quantity": name,
                "value": values.detach().float().cpu()[picked].tolist(),
                "c_before": before,
                "c_after": after,
            }
        )
        for name, values in columns.items()
    ]
    return pd.concat(frames, ignore_index=True)


def gates_chart(layer: LayerRead, units: Sequence[int], title: str = "") -> alt.VConcatChart:
    """Strips over ``units`` (largest change in memory first): i, f, o on viridis, g and Δc on blue-orange.

    Three strips, each with its own colour scale and legend, over one shared row of units; Δc's
    scale reaches the largest change drawn, so the strongest write or erase is full orange or blue.
    """
    data = gates_frame(layer, units)
    order = [str(unit) for unit in units]
    data["unit"] = data["unit"].astype(str)
    reach = max(float(data.loc[data["quantity"] == "Δc", "value"].abs().max()), 1e-6)
    width = STRIP_STEP * len(order)
    tooltip = [
        alt.Tooltip("unit:N"),
        alt.Tooltip("quantity:N", title="quantity"),
        alt.Tooltip("value:Q", format="+.3f"),
        alt.Tooltip("c_before:Q", title="c before", format="+.3f"),
        alt.Tooltip("c_after:Q", title="c after", format="+.3f"),
    ]

    def strip(names: list[str], quantity: str, limit: float, legend: str, last: bool) -> alt.Chart:
        axis = alt.Axis(labelAngle=-90, labelFontSize=10, ticks=False) if last else None
        return (
            alt.Chart(data)
            .transform_filter(alt.FieldOneOfPredicate(field="quantity", oneOf=names))
            .mark_rect(stroke="#fbf8f1", strokeWidth=0.5)
            .encode(
                x=alt.X("unit:N", sort=order, axis=axis, title="unit" if last else None),
                y=alt.Y("quantity:N", sort=names, title=None, axis=alt.Axis(minExtent=28, labelFontSize=12)),
                color=alt.Color(
                    "value:Q",
                    scale=colour_scale(quantity, limit),
                    legend=alt.Legend(
                        title=legend, orient="right", gradientLength=max(36, STRIP_STEP * len(names)), titleFontSize=11
                    ),
                ),
                tooltip=tooltip,
            )
            .properties(width=width, height=STRIP_STEP * len(names))
        )

    chart = alt.vconcat(
        strip(["i", "f", "o"], "input_gate", 1.0, "i, f, o", last=False),
        strip(["g"], "candidate", 1.0, "g", last=False),
        strip(["Δc"], "cell", reach, "Δc", last=True),
        spacing=4,
    ).resolve_scale(color="independent")
    return chart.properties(title=title) if title else chart


def walkthrough_section(generator: StepGenerator, options: SamplingOptions) -> None:
    walk = softmax_walkthrough(generator, options, n=WALKTHROUGH_WORDS)
    st.markdown("**The softmax, step by step**")
    frame = walkthrough_frame(walk)
    st.dataframe(frame, hide_index=True, column_config=column_config(frame))
    off = [
        name for name, value in (("top-k", walk.top_k), ("top-p", walk.top_p), ("min-p", walk.min_p)) if value is None
    ]
    rules = f" after the word rules ({', '.join(walk.rules)})" if walk.rules else ""
    st.caption(
        f"The {len(walk.rows)} most likely words. **logit z** is the model's log-probability{rules}: the model "
        "outputs log-softmax, which differs from its raw logits by one constant per step, and a softmax ignores a "
        "constant, so z / T gives the same probabilities as raw logits would. **p after T** = softmax(z / T)"
        + (f", T = {walk.temperature:g}" if walk.temperature is not None else "")
        + "; then the cuts, in the order the sampler makes them; **p (drawn)** is what “Sample one” draws with. "
        + (f"Off now: {', '.join(off)} (see More sampling options)." if off else "")
    )


def gates_section(generator: StepGenerator) -> None:
    read = word_just_read(generator)
    where = "the last word of the prime" if not generator.words else "the word just added"
    st.markdown(f"**What reading “{read.word}” did to the memory**")
    for number, layer in enumerate(read.layers, start=1):
        units = units_by_change(layer, CHANGED_UNITS)
        title = f"layer {number}" if len(read.layers) > 1 else ""
        st.altair_chart(gates_chart(layer, units, title), width="content")
    st.caption(
        f"“{read.word}” is {where}. Per layer, the {CHANGED_UNITS} units whose memory changed most "
        "(largest |Δc| first; hover a cell for its numbers): Δc = c_t − c_t−1 = i·g − (1 − f)·c_t−1, what was "
        "written minus what was forgotten. Colours: i, f, o on **viridis** (dark purple 0 = closed, yellow 1 = "
        "open); g and Δc on **blue-orange** (blue below 0, near white at 0, orange above; Δc's scale reaches the "
        "largest change shown). Both stay readable with red-green colour blindness. The Inside the LSTM page "
        "shows every word of a text."
    )


def walkthrough_panel(generator: StepGenerator, options: SamplingOptions) -> None:
    """The walk-through of the next word under ``options`` (sampling), and the gates of the word just read."""
    with st.container(border=True):
        walkthrough_section(generator, options)
        gates_section(generator)
