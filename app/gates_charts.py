"""Drawing for the Inside page's "Why gates" tab: the gradient through time and the memory test, one line per model.

Pure functions from the results of :mod:`lstm_core.explain.gradients` and
:mod:`lstm_core.explain.recall` to data frames and Altair charts; no Streamlit calls, so each is
tested on its own (tests/test_why_gates.py). Models are told apart by colour (the Tableau
palette Altair uses, whose first colours stay apart with red-green colour blindness) and an
LSTM's memory-cell path by a dashed line.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import altair as alt
import pandas as pd

from app.charts import Chart
from lstm_core.explain.gradients import GradientTrace
from lstm_core.explain.recall import RecallResult

HIDDEN_PATH = "h (output)"
CELL_PATH = "c (memory cell)"


def gradient_frame(traces: Mapping[str, GradientTrace]) -> pd.DataFrame:
    """Long-form rows ``model, path, words_back, share``: each model's gradient at each distance against
    its size at the last word (:meth:`GradientTrace.relative`), and an LSTM's along its memory cell.

    A value of 0 (the memory cell at the last word, which only later words read) has no place on a
    log scale and is left out.
    """
    rows = []
    for label, trace in traces.items():
        paths = [(HIDDEN_PATH, trace.relative())]
        if trace.cell is not None:
            paths.append((CELL_PATH, trace.relative("cell")))
        for path, values in paths:
            for distance, value in enumerate(values.tolist()):
                if value > 0 and math.isfinite(value):
                    rows.append({"model": label, "path": path, "words_back": distance, "share": value})
    return pd.DataFrame(rows, columns=["model", "path", "words_back", "share"])


def gradient_chart(frame: pd.DataFrame, height: int = 320) -> Chart:
    """The share of the gradient left against the words back, on a log scale: one colour per model,
    the output ``h`` solid and an LSTM's memory cell ``c`` dashed (said above the chart, not in a legend)."""
    low = float(frame["share"].min()) if len(frame) else 1e-3
    return (
        alt.Chart(frame)
        .mark_line(point=alt.OverlayMarkDef(size=18))
        .encode(
            x=alt.X("words_back:Q", title="words back from the last word"),
            y=alt.Y(
                "share:Q",
                title="gradient left (1 = its size at the last word)",
                scale=alt.Scale(type="log", domain=[min(low, 0.1), max(1.0, float(frame["share"].max()))]),
                axis=alt.Axis(format="~g"),
            ),
            color=alt.Color("model:N", title="model", legend=alt.Legend(labelLimit=300)),
            strokeDash=alt.StrokeDash(
                "path:N",
                title="through",
                scale=alt.Scale(domain=[HIDDEN_PATH, CELL_PATH], range=[[1, 0], [5, 3]]),
                legend=None,  # a dash legend beside points draws no line: the page says it in words
            ),
            tooltip=[
                alt.Tooltip("model:N"),
                alt.Tooltip("path:N", title="through"),
                alt.Tooltip("words_back:Q", title="words back"),
                alt.Tooltip("share:Q", title="gradient left", format=".2e"),
            ],
        )
        .properties(height=height)
    )


def recall_frame(results: Mapping[str, RecallResult]) -> pd.DataFrame:
    """Rows ``model, distance, times, accuracy``: how many times more likely each model finds the name it
    read that many words back, and its share of names recalled."""
    rows = [
        {"model": label, "distance": distance, "times": times, "accuracy": accuracy}
        for label, result in results.items()
        for distance, times, accuracy in zip(result.distances, result.times_more_likely, result.accuracy, strict=True)
    ]
    return pd.DataFrame(rows, columns=["model", "distance", "times", "accuracy"])


def recall_chart(frame: pd.DataFrame, height: int = 280) -> Chart:
    """How many times more likely the name read is, against how far back it was read (both on log
    scales), one colour per model, with a rule at 1: a model that has forgotten the name."""
    top = max(2.0, float(frame["times"].max()) if len(frame) else 2.0)
    low = min(0.9, float(frame["times"].min()) if len(frame) else 0.9)
    lines = (
        alt.Chart(frame)
        .mark_line(point=alt.OverlayMarkDef(size=30))
        .encode(
            x=alt.X("distance:Q", title="words between the name and the question", scale=alt.Scale(type="log")),
            y=alt.Y(
                "times:Q",
                title="times more likely (1 = forgotten)",
                scale=alt.Scale(type="log", domain=[low, top]),
                axis=alt.Axis(format="~g"),
            ),
            color=alt.Color("model:N", title="model", legend=alt.Legend(labelLimit=300)),
            tooltip=[
                alt.Tooltip("model:N"),
                alt.Tooltip("distance:Q", title="words back"),
                alt.Tooltip("times:Q", title="times more likely", format=".2f"),
                alt.Tooltip("accuracy:Q", title="names recalled", format=".0%"),
            ],
        )
    )
    forgotten = alt.Chart(pd.DataFrame({"times": [1.0]})).mark_rule(strokeDash=[4, 3], color="#777").encode(y="times:Q")
    return (lines + forgotten).properties(height=height)
