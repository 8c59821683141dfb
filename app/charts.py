"""Altair charts for the pages: pure functions from plain data to a chart, no Streamlit calls."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import altair as alt
import numpy as np
import pandas as pd

from lstm_core.evaluation.standing import format_duration, format_perplexity
from lstm_core.training.events import EvalEvent, Event, StepEvent

if TYPE_CHECKING:  # the baselines import torch, which the Data page's charts never need
    from lstm_core.evaluation.baselines import Baseline

Chart = alt.Chart | alt.LayerChart | alt.FacetChart
"""What the chart functions return: a chart, or charts drawn over one another."""
MAX_POINTS = 500
"""The most points a chart draws of one line: longer histories are thinned evenly."""
ACCENT = "#8b1e3f"
BASELINE_COLOR = "#6b6259"
BACKGROUND = "#fbf8f1"
"""The app's page colour (``.streamlit/config.toml``), for the halo under chart labels."""
RUN_COLORS = ["#1f5f8b", ACCENT, "#3c8d2f", "#c77c02", "#6a3d9a", "#b15928", "#1b9e77", "#e7298a"]
PERPLEXITY_TITLE = "perplexity (log scale)"
LABEL_HEIGHT = 13
"""Pixels a baseline's label takes, an 11-pixel font with its leading."""
LABEL_GAP = 3
"""Pixels between a baseline's rule and its label."""
X_AXIS_HEIGHT = 64
"""Pixels an x axis with its title takes below the plot (measured in Chromium)."""
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


def thinned(count: int, limit: int = MAX_POINTS) -> list[int]:
    """Indices of at most ``limit`` of ``count`` points, evenly spread, always the first and the newest."""
    if count <= limit:
        return list(range(count))
    return np.unique(np.linspace(0, count - 1, limit).astype(int)).tolist()


def loss_frame(events: Sequence[Event]) -> pd.DataFrame:
    """Long-form ``step, loss, series`` rows: raw and smoothed training loss, validation loss."""
    steps = [e for e in events if isinstance(e, StepEvent)]
    evals = [e for e in events if isinstance(e, EvalEvent)]
    x = [e.step for e in steps]
    raw = [e.loss for e in steps]
    smoothed = smooth(raw)
    if len(x) > MAX_POINTS:  # thin evenly, always keeping the newest point
        keep = thinned(len(x))
        x, raw, smoothed = [x[i] for i in keep], [raw[i] for i in keep], [smoothed[i] for i in keep]
    frames = [
        pd.DataFrame({"step": x, "loss": raw, "series": "training (raw)"}),
        pd.DataFrame({"step": x, "loss": smoothed, "series": "training (smoothed)"}),
        pd.DataFrame({"step": [e.step for e in evals], "loss": [e.val_loss for e in evals], "series": "validation"}),
    ]
    return pd.concat([f for f in frames if len(f)] or frames[:1], ignore_index=True)


def loss_chart(events: Sequence[Event], height: int = 280) -> Chart:
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


def _perplexity_axis(domain: Sequence[float], field: str = "perplexity") -> alt.Y:
    return alt.Y(f"{field}:Q", title=PERPLEXITY_TITLE, scale=alt.Scale(type="log", domain=list(domain)))


def log_domain(values: Sequence[float]) -> list[float]:
    """The powers of ten around ``values``, as Vega rounds a log axis ("nice"); made explicit so
    that :func:`baseline_labels` knows how many pixels a decade takes."""
    positive = [value for value in values if value > 0 and math.isfinite(value)] or [1.0]
    low, high = math.floor(math.log10(min(positive))), math.ceil(math.log10(max(positive)))
    return [10.0**low, 10.0 ** max(high, low + 1)]


def baseline_labels(
    baselines: Sequence[Baseline], latest: float | None, domain: Sequence[float], height: float
) -> pd.DataFrame:
    """Where each baseline's label goes: on the side of its rule away from the newest evaluation
    (above a baseline the run is below, below one it is not yet below), stacked when two rules
    lie closer than a label's height (on the plays the bigram and the 5-gram are a few pixels
    apart). ``label_y`` is the label's edge nearest its rule, in perplexity, on a log axis of
    ``domain`` and ``height`` pixels. The labels sit at the right edge, where the newest point is.
    """
    per_decade = height / math.log10(domain[1] / domain[0])
    rows: list[dict[str, Any]] = []
    for baseline in baselines:
        above = latest is None or latest < baseline.perplexity
        text = f"{baseline.label}: {format_perplexity(baseline.perplexity)}"
        rows.append({"baseline": baseline.label, "perplexity": baseline.perplexity, "text": text, "above": above})
    for above in (True, False):
        side = sorted((row for row in rows if row["above"] == above), key=lambda row: row["perplexity"])
        edge: float | None = None  # the far edge of the last label placed, in pixels up from the bottom
        for row in side if above else side[::-1]:
            y = math.log10(row["perplexity"] / domain[0]) * per_decade
            start = y + LABEL_GAP if above else y - LABEL_GAP
            if edge is not None:
                start = max(start, edge + 1) if above else min(start, edge - 1)
            edge = start + LABEL_HEIGHT if above else start - LABEL_HEIGHT
            row["label_y"] = domain[0] * 10 ** (start / per_decade)
    columns = ["baseline", "perplexity", "text", "above", "label_y"]
    return pd.DataFrame(rows, columns=columns)


def baseline_layers(
    baselines: Sequence[Baseline], latest: float | None, domain: Sequence[float], height: float
) -> list[alt.Chart]:
    """Each baseline as a dashed horizontal rule across the chart, labelled with its name and
    perplexity at the right edge (:func:`baseline_labels`), for a chart whose y is ``perplexity``
    on a log axis of ``domain``."""
    if not baselines:
        return []
    data = baseline_labels(baselines, latest, domain, height)
    rules = (
        alt.Chart(data)
        .mark_rule(color=BASELINE_COLOR, strokeDash=[5, 4], strokeWidth=1)
        .encode(
            y=_perplexity_axis(domain), tooltip=[alt.Tooltip("baseline:N"), alt.Tooltip("perplexity:Q", format=",.1f")]
        )
    )

    def labels(above: bool, halo: bool) -> Chart:
        # A halo of the page's colour under each label keeps it legible where a curve runs through it.
        outline: dict[str, Any] = {"stroke": BACKGROUND, "strokeWidth": 4, "strokeJoin": "round"} if halo else {}
        return (
            alt.Chart(data)
            .transform_filter("datum.above" if above else "!datum.above")
            .mark_text(align="right", baseline="bottom" if above else "top", dx=-4, fontSize=11, **outline)
            .encode(
                x=alt.value("width"),
                y=_perplexity_axis(domain, "label_y"),
                text="text:N",
                color=alt.value(BACKGROUND if halo else BASELINE_COLOR),
            )
        )

    return [rules, *(labels(above, halo) for halo in (True, False) for above in (True, False))]


def perplexity_chart(events: Sequence[Event], baselines: Sequence[Baseline] = (), height: int = 280) -> Chart:
    """Validation perplexity by step, on a log axis, with the baselines as labelled rules."""
    evals = [e for e in events if isinstance(e, EvalEvent)]
    keep = thinned(len(evals))
    data = pd.DataFrame({"step": [evals[i].step for i in keep], "perplexity": [evals[i].perplexity for i in keep]})
    domain = log_domain([*data["perplexity"], *(b.perplexity for b in baselines)])
    line = (
        alt.Chart(data)
        .mark_line(point=True, color="#1f5f8b")
        .encode(
            x=STEP_AXIS,
            y=_perplexity_axis(domain),
            tooltip=["step:Q", alt.Tooltip("perplexity:Q", format=",.1f")],
        )
    )
    latest = evals[-1].perplexity if evals else None
    # Streamlit fits the whole chart, x axis included, into ``height`` (so that it lines up with the
    # loss chart beside it); the plot itself is what the axis leaves.
    layers = baseline_layers(baselines, latest, domain, height - X_AXIS_HEIGHT)
    return alt.layer(line, *layers).properties(height=height)


def runs_frame(curves: Sequence[tuple[str, Sequence[EvalEvent]]], minutes: bool = True) -> pd.DataFrame:
    """Long-form ``run, step, time, training time, perplexity`` rows of each run's evaluations.

    ``curves`` holds ``(run label, its evaluations)``; ``time`` is the training time in minutes
    (or seconds) for the axis, ``training time`` the same in words for the hover read-out. A
    run's evaluations are thinned to :data:`MAX_POINTS`.
    """
    frames = []
    for label, evals in curves:
        keep = thinned(len(evals))
        chosen = [evals[i] for i in keep]
        frames.append(
            pd.DataFrame(
                {
                    "run": label,
                    "step": [e.step for e in chosen],
                    "time": [e.elapsed_s / (60 if minutes else 1) for e in chosen],
                    "training time": [format_duration(max(0.0, e.elapsed_s)) for e in chosen],
                    "perplexity": [e.perplexity for e in chosen],
                }
            )
        )
    columns = ["run", "step", "time", "training time", "perplexity"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


def runs_chart(
    curves: Sequence[tuple[str, Sequence[EvalEvent]]], baselines: Sequence[Baseline] = (), height: int = 260
) -> Chart:
    """Several runs' validation perplexity against training time on one chart, one colour a run.

    Training time, not steps: a step's size (batch x sequence length) and cost differ between
    settings, and time is what a run costs its visitor. Hovering a point reads out its run,
    step, training time and perplexity.
    """
    ends = [evals[-1] for _, evals in curves if evals]
    newest = max(ends, key=lambda e: e.elapsed_s, default=None)  # the point nearest the labels
    minutes = newest is not None and newest.elapsed_s >= 120
    data = runs_frame(curves, minutes)
    labels = [label for label, _ in curves]
    domain = log_domain([*data["perplexity"], *(b.perplexity for b in baselines)])
    lines = (
        alt.Chart(data)
        .mark_line(point=alt.OverlayMarkDef(filled=True, size=40), strokeWidth=2)
        .encode(
            x=alt.X(
                "time:Q",
                title=f"training time ({'minutes' if minutes else 'seconds'})",
                scale=alt.Scale(domainMin=0),
            ),
            y=_perplexity_axis(domain),
            color=alt.Color(
                "run:N",
                scale=alt.Scale(domain=labels, range=RUN_COLORS),
                legend=alt.Legend(orient="bottom", title=None, columns=1, labelLimit=600),
            ),
            tooltip=[
                alt.Tooltip("run:N"),
                alt.Tooltip("step:Q", format=",d"),
                alt.Tooltip("training time:N"),
                alt.Tooltip("perplexity:Q", format=",.1f"),
            ],
        )
    )
    latest = newest.perplexity if newest is not None else None
    # "fit-x": the plot is ``height`` pixels high and the legend comes below it, one run a line.
    return alt.layer(lines, *baseline_layers(baselines, latest, domain, height)).properties(
        height=height, autosize=alt.AutoSizeParams(type="fit-x", contains="padding")
    )


def top_words_chart(words: Sequence[str], counts: Sequence[int], height: int = 420) -> Chart:
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


def zipf_chart(counts: np.ndarray, min_word_freq: int, height: int = 420) -> Chart:
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
) -> Chart:
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
