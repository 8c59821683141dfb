"""Altair charts for the pages: pure functions from plain data to a chart, no Streamlit calls."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import altair as alt
import numpy as np
import pandas as pd

if TYPE_CHECKING:  # the trainer imports torch, which the Data page's charts never need
    from lstm_core.trainer import Event

MAX_POINTS = 500
ACCENT = "#8b1e3f"
# Steps are whole numbers: no "200.000000" ticks when a chart has a single point.
STEP_AXIS = alt.X(
    "step:Q", title="training step", axis=alt.Axis(format=",d", tickMinStep=1), scale=alt.Scale(domainMin=0)
)


def smooth(values: Sequence[float], weight: float = 0.9) -> list[float]:
    """Bias-corrected exponential moving average (as TensorBoard draws it)."""
    out, average = [], 0.0
    for i, value in enumerate(values, start=1):
        average = weight * average + (1 - weight) * value
        out.append(average / (1 - weight**i))
    return out


def loss_frame(events: Sequence[Event]) -> pd.DataFrame:
    """Long-form ``step, loss, series`` rows: raw and smoothed training loss, validation loss."""
    from lstm_core.trainer import EvalEvent, StepEvent

    steps = [e for e in events if isinstance(e, StepEvent)]
    evals = [e for e in events if isinstance(e, EvalEvent)]
    x = [e.step for e in steps]
    raw = [e.loss for e in steps]
    smoothed = smooth(raw)
    if len(x) > MAX_POINTS:  # thin evenly, always keeping the newest point
        keep = np.unique(np.linspace(0, len(x) - 1, MAX_POINTS).astype(int))
        x, raw, smoothed = ([seq[i] for i in keep] for seq in (x, raw, smoothed))
    frames = [
        pd.DataFrame({"step": x, "loss": raw, "series": "training (raw)"}),
        pd.DataFrame({"step": x, "loss": smoothed, "series": "training (smoothed)"}),
        pd.DataFrame({"step": [e.step for e in evals], "loss": [e.val_loss for e in evals], "series": "validation"}),
    ]
    return pd.concat([f for f in frames if len(f)] or frames[:1], ignore_index=True)


def loss_chart(events: Sequence[Event], height: int = 280) -> alt.Chart:
    data = loss_frame(events)
    colors = alt.Scale(
        domain=["training (raw)", "training (smoothed)", "validation"], range=["#d9c3b0", ACCENT, "#1f5f8b"]
    )
    base = alt.Chart(data).encode(
        x=STEP_AXIS,
        y=alt.Y("loss:Q", title="loss (nats per word)", scale=alt.Scale(zero=False)),
        color=alt.Color("series:N", scale=colors, legend=alt.Legend(orient="top", title=None)),
        tooltip=["series:N", "step:Q", alt.Tooltip("loss:Q", format=".3f")],
    )
    lines = base.transform_filter(alt.datum.series != "validation").mark_line(strokeWidth=1.5)
    validation = base.transform_filter(alt.datum.series == "validation").mark_line(point=True, strokeWidth=2)
    return (lines + validation).properties(height=height)


def perplexity_chart(events: Sequence[Event], height: int = 280) -> alt.Chart:
    from lstm_core.trainer import EvalEvent

    evals = [e for e in events if isinstance(e, EvalEvent)]
    data = pd.DataFrame({"step": [e.step for e in evals], "perplexity": [e.perplexity for e in evals]})
    return (
        alt.Chart(data)
        .mark_line(point=True, color="#1f5f8b")
        .encode(
            x=STEP_AXIS,
            y=alt.Y("perplexity:Q", title="perplexity (log scale)", scale=alt.Scale(type="log")),
            tooltip=["step:Q", alt.Tooltip("perplexity:Q", format=".1f")],
        )
        .properties(height=height)
    )


def top_words_chart(words: Sequence[str], counts: Sequence[int], height: int = 420) -> alt.Chart:
    data = pd.DataFrame({"word": list(words), "count": list(counts)})
    return (
        alt.Chart(data)
        .mark_bar(color=ACCENT)
        .encode(
            x=alt.X("count:Q", title="occurrences"),
            y=alt.Y("word:N", sort="-x", title=None),
            tooltip=["word:N", alt.Tooltip("count:Q", format=",")],
        )
        .properties(height=height, title="Most frequent words")
    )


def zipf_chart(counts: np.ndarray, min_word_freq: int, height: int = 420) -> alt.Chart:
    """Frequency against rank on log axes, with the vocabulary cut-off marked."""
    ranks = np.unique(np.geomspace(1, len(counts), num=min(len(counts), 400)).astype(int))
    data = pd.DataFrame({"rank": ranks, "count": counts[ranks - 1]})
    line = (
        alt.Chart(data)
        .mark_line(color=ACCENT)
        .encode(
            x=alt.X("rank:Q", scale=alt.Scale(type="log"), title="rank (log scale)"),
            y=alt.Y("count:Q", scale=alt.Scale(type="log"), title="occurrences (log scale)"),
            tooltip=["rank:Q", alt.Tooltip("count:Q", format=",")],
        )
    )
    rule = (
        alt.Chart(pd.DataFrame({"count": [min_word_freq + 0.5]}))
        .mark_rule(color="#1f5f8b", strokeDash=[4, 4])
        .encode(y="count:Q")
    )
    return (line + rule).properties(height=height, title=f"Zipf plot (dashed: kept if seen more than {min_word_freq}x)")


def candidates_chart(
    words: Sequence[str], probabilities: Sequence[float], rest_label: str | None = None, height: int = 320
) -> alt.Chart:
    """Bars in the order given (most likely first); ``rest_label`` names a bar drawn in grey, last."""
    data = pd.DataFrame({"word": list(words), "probability": list(probabilities)})
    data["kind"] = ["rest" if word == rest_label else "word" for word in data["word"]]
    colors = alt.Scale(domain=["word", "rest"], range=[ACCENT, "#b9b0a6"])
    return (
        alt.Chart(data)
        .mark_bar()
        .encode(
            x=alt.X("probability:Q", title="probability", axis=alt.Axis(format="%")),
            y=alt.Y("word:N", sort=list(words), title=None),
            color=alt.Color("kind:N", scale=colors, legend=None),
            tooltip=["word:N", alt.Tooltip("probability:Q", format=".2%")],
        )
        .properties(height=height, title="Next-word candidates")
    )
