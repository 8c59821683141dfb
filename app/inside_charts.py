"""Drawing for the Inside page: heatmap, one unit's line, coloured words, the word-vector map.

Pure functions from plain data (tensors, words, a vocabulary) to an Altair chart, a data frame or
an HTML string; no Streamlit calls, so each is tested on its own (tests/test_inside_charts.py).

Colour scales, chosen to stay readable with the common forms of colour blindness (red-green
deficiencies and most blue-yellow ones):

* the gates (an LSTM's ``i, f, o``, a GRU's ``r, z``) lie in ``(0, 1)`` (a sigmoid): the sequential
  **viridis** scale, dark purple at 0 (closed) to yellow at 1 (open), perceptually uniform and
  readable in grey;
* ``g``, ``n`` and ``h`` lie in ``(-1, 1)`` (a tanh) and ``c`` is unbounded: a **blue-orange
  diverging** scale, blue below zero, near white at zero, orange above; blue and orange stay
  distinct for red-green colour blindness, which a red-green scale would not.

The same stops are used by the charts (Vega-Lite interpolates between them) and by
:func:`colour_of` for the coloured words, so a value has one colour everywhere on the page.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass

import altair as alt
import pandas as pd
import torch
from torch import Tensor

from app.charts import Chart
from lstm_core.explain.embeddings import most_frequent_ids, pca_2d
from lstm_core.explain.inspection import MAX_HEATMAP_UNITS, MAX_HEATMAP_WORDS, QUANTITY_NAMES, pick_units
from lstm_core.text.vocab import Vocab

GATES = ("input_gate", "forget_gate", "output_gate", "reset_gate", "update_gate")
"""Quantities squashed by a sigmoid into (0, 1): drawn on the sequential scale."""

SYMBOLS = {
    "input_gate": "i",
    "forget_gate": "f",
    "candidate": "g",
    "output_gate": "o",
    "cell": "c",
    "hidden": "h",
    "reset_gate": "r",
    "update_gate": "z",
    "new_gate": "n",
}
"""Each quantity's letter in the equations, so the legend and the equations agree."""

VIRIDIS = ("#440154", "#3b528b", "#21918c", "#5ec962", "#fde725")
"""Five stops of the viridis scale, for 0, 0.25, 0.5, 0.75 and 1."""

BLUE_ORANGE = ("#1f5f8b", "#86b3d6", "#f2efea", "#f2a65a", "#b35806")
"""Five stops of the blue-orange diverging scale, for -limit, -limit/2, 0, limit/2 and limit."""

SCALE_NAMES = {"sequential": "viridis (sequential)", "diverging": "blue-orange (diverging, near white at 0)"}

ZERO_WIDTH_SPACE = "\u200b"

ALL_LABELS_UP_TO = 80
"""Up to this many words in a heatmap window, every column is labelled with its word."""

MAX_MAP_WORDS = 300
"""Words on the word-vector map: enough to see groups, few enough to hover one by one."""


def scale_kind(quantity: str) -> str:
    """``sequential`` for the gates (0 to 1), ``diverging`` for the signed quantities g, n, h and c."""
    if quantity not in QUANTITY_NAMES:
        raise ValueError(f"unknown quantity {quantity!r}; choose one of {', '.join(QUANTITY_NAMES)}")
    return "sequential" if quantity in GATES else "diverging"


def colour_limit(quantity: str, values: Tensor) -> float:
    """How far from zero the diverging scale reaches: 1 for ``g`` and ``h`` (a tanh), ``max |c|`` for ``c``.

    ``c`` has no bound (it adds up over the words), so its scale reaches the largest magnitude in
    ``values``; a gate's scale is always 0 to 1 and this returns 1.
    """
    if quantity != "cell":
        return 1.0
    largest = float(values.detach().abs().max()) if values.numel() else 0.0
    return max(largest, 1e-6)


def _stops(quantity: str, limit: float) -> tuple[list[float], tuple[str, ...]]:
    if scale_kind(quantity) == "sequential":
        return [0.0, 0.25, 0.5, 0.75, 1.0], VIRIDIS
    return [-limit, -limit / 2, 0.0, limit / 2, limit], BLUE_ORANGE


def colour_scale(quantity: str, limit: float = 1.0) -> alt.Scale:
    """The Altair scale for ``quantity``: viridis on [0, 1] for a gate, blue-orange on [-limit, limit] otherwise."""
    domain, colours = _stops(quantity, limit)
    return alt.Scale(domain=domain, range=list(colours), interpolate="rgb", clamp=True)


def _rgb(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def colour_of(value: float, quantity: str, limit: float = 1.0) -> str:
    """The ``#rrggbb`` colour :func:`colour_scale` gives ``value`` (linear between stops, clamped at the ends)."""
    domain, colours = _stops(quantity, limit)
    value = min(max(value, domain[0]), domain[-1])
    for k in range(len(domain) - 1):
        low, high = domain[k], domain[k + 1]
        if value <= high or k == len(domain) - 2:
            share = 0.0 if high == low else (value - low) / (high - low)
            a, b = _rgb(colours[k]), _rgb(colours[k + 1])
            return "#" + "".join(f"{round(x + share * (y - x)):02x}" for x, y in zip(a, b, strict=True))
    raise AssertionError("unreachable: the last interval takes every value left")


def text_colour_on(background: str) -> str:
    """Dark or white text, whichever reads better on ``background`` (by its WCAG relative luminance)."""

    def linear(channel: int) -> float:
        c = channel / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (linear(c) for c in _rgb(background))
    luminance = 0.2126 * r + 0.7152 * g + 0.0722 * b
    # Contrast with black text (#2b2118 is close enough) beats contrast with white above ~0.18.
    return "#2b2118" if luminance > 0.18 else "#ffffff"


# ---- the heatmap ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class HeatmapView:
    """Which words (a contiguous window) and which units (picked) one heatmap draws, out of how many."""

    window: range
    units: tuple[int, ...]
    total_words: int
    total_units: int

    @property
    def fewer_words(self) -> bool:
        return len(self.window) < self.total_words

    @property
    def fewer_units(self) -> bool:
        return len(self.units) < self.total_units

    def note(self) -> str:
        """One sentence for the page on what is left out, or an empty string when nothing is."""
        parts = []
        if self.fewer_words:
            first, last = self.window.start + 1, self.window.stop
            parts.append(
                f"words {first:,} to {last:,} of {self.total_words:,} "
                f"(at most {MAX_HEATMAP_WORDS:,} words at once; move the window to see the rest)"
            )
        if self.fewer_units:
            parts.append(
                f"{len(self.units):,} of {self.total_units:,} units: the chosen ones, then those that vary most "
                f"over this text (at most {MAX_HEATMAP_UNITS:,} units at once)"
            )
        return "Drawn: " + "; ".join(parts) + "." if parts else ""


def heatmap_view(
    values: Tensor,
    first_word: int = 0,
    keep: Sequence[int] = (),
    max_words: int = MAX_HEATMAP_WORDS,
    max_units: int = MAX_HEATMAP_UNITS,
) -> HeatmapView:
    """The part of ``values (T, H)`` a heatmap can draw: a window from ``first_word``, the units worth seeing.

    Words keep their order (a sentence with gaps is unreadable), so a long text is shown through a
    window of at most ``max_words``, moved back when it would run past the end. Units are
    :func:`~lstm_core.explain.inspection.pick_units`: ``keep`` first, then the most variable.
    """
    steps, units = values.shape
    count = min(steps, max_words)
    start = min(max(0, first_word), steps - count)
    picked = pick_units(values, max_units, keep=list(keep))
    return HeatmapView(window=range(start, start + count), units=tuple(picked), total_words=steps, total_units=units)


def column_labels(words: Sequence[str]) -> list[str]:
    """One distinct label per word, that reads as the word: a repeat gets invisible zero-width spaces.

    A heatmap column is a word *position* (``thou`` twice is two columns), and the axis should
    show the word itself. Labels that differ only by zero-width spaces do both with no Vega label
    expression: in Streamlit's charts an expression holding the string "if" (a word of many
    texts) stops the chart rendering, so the words must stay in the data.
    """
    seen: dict[str, int] = {}
    labels = []
    for word in words:
        repeat = seen.get(word, 0)
        seen[word] = repeat + 1
        labels.append(word + ZERO_WIDTH_SPACE * repeat)
    return labels


def heatmap_frame(values: Tensor, words: Sequence[str], view: HeatmapView) -> pd.DataFrame:
    """Long-form rows ``position, word, column, unit, value``: one per drawn cell, words in order, units as picked.

    ``column`` is the word's axis label (:func:`column_labels`), distinct for every position.
    """
    if len(words) != values.size(0):
        raise ValueError(f"{len(words)} words for {values.size(0)} rows of values")
    window = list(view.window)
    labels = column_labels([words[p] for p in window])
    cut = values.detach().float().cpu()[window][:, list(view.units)]  # (W, U)
    return pd.DataFrame(
        {
            "position": [p for p in window for _ in view.units],
            "word": [words[p] for p in window for _ in view.units],
            "column": [label for label in labels for _ in view.units],
            "unit": list(view.units) * len(window),
            "value": cut.reshape(-1).tolist(),
        }
    )


def heatmap_chart(values: Tensor, words: Sequence[str], quantity: str, view: HeatmapView) -> Chart:
    """Words along x (in reading order), units along y (chosen first, then most variable), colour = ``quantity``.

    The chart takes the width it is given (draw it with ``width="stretch"``): a window of 400
    words is then a thin-columned overview in which hovering still names each word, rather than
    a chart wider than the page that the page would cut off.
    """
    data = heatmap_frame(values, words, view)
    limit = colour_limit(quantity, torch.tensor(data["value"].to_numpy()))
    symbol = SYMBOLS[quantity]
    return (
        alt.Chart(data)
        .mark_rect()
        .encode(
            x=alt.X(
                "column:N",
                # Sorted by a field, not by a list of the labels: a list becomes a Vega expression, and
                # an expression holding the string "if" (a word of many texts) stops the chart rendering.
                sort=alt.EncodingSortField(field="position", op="min", order="ascending"),
                title=None,
                axis=alt.Axis(
                    labelAngle=-60,
                    # Tilted labels take less room than their bounding boxes: all of them fit in
                    # about 1,000 px up to this many words; beyond it some are left out (hover shows all).
                    labelOverlap=False if len(view.window) <= ALL_LABELS_UP_TO else "greedy",
                    ticks=False,
                    orient="top",
                ),
            ),
            y=alt.Y("unit:O", sort=list(view.units), title="unit", axis=alt.Axis(labelOverlap="greedy")),
            color=alt.Color(
                "value:Q",
                scale=colour_scale(quantity, limit),
                legend=alt.Legend(title=symbol, orient="right", gradientLength=180),
            ),
            tooltip=[
                "word:N",
                alt.Tooltip("position:Q", title="word number (from 0)"),
                "unit:Q",
                alt.Tooltip("value:Q", title=f"{QUANTITY_NAMES[quantity]}", format="+.3f"),
            ],
        )
        .properties(height=len(view.units) * _row_step(view))
    )


def _row_step(view: HeatmapView) -> int:
    """Rows tall enough to hover, short enough that 128 of them fit a screen (about 700 px)."""
    return max(5, min(16, 700 // len(view.units)))


# ---- one unit --------------------------------------------------------------------------------------


def unit_frame(values: Tensor, words: Sequence[str], unit: int) -> pd.DataFrame:
    """``position, word, value`` of one unit over the whole text (``values (T, H)``)."""
    if len(words) != values.size(0):
        raise ValueError(f"{len(words)} words for {values.size(0)} rows of values")
    if not 0 <= unit < values.size(1):
        raise ValueError(f"units are numbered 0 to {values.size(1) - 1}, got {unit}")
    column = values.detach().float().cpu()[:, unit]
    return pd.DataFrame({"position": range(len(words)), "word": list(words), "value": column.tolist()})


def unit_line_chart(
    values: Tensor,
    words: Sequence[str],
    quantity: str,
    unit: int,
    span: tuple[int, int] | None = None,
    height: int = 240,
) -> Chart:
    """One unit's activation as a line over the words; ``span`` (start, end exclusive) is shaded.

    The y axis covers the quantity's whole range (0 to 1 for a gate, -1 to 1 for g and h), so two
    units or two texts can be compared by eye; c, which has no bound, gets its own range.
    """
    data = unit_frame(values, words, unit)
    if scale_kind(quantity) == "sequential":
        domain = [0.0, 1.0]
    elif quantity == "cell":
        reach = colour_limit(quantity, torch.tensor(data["value"].to_numpy()))
        domain = [-reach, reach]
    else:
        domain = [-1.0, 1.0]
    x = alt.X(
        "position:Q",
        title="word number (from 0; hover a point for its word)",
        scale=alt.Scale(domain=[-0.5, len(words) - 0.5], nice=False),
        axis=alt.Axis(tickMinStep=1, format="d"),
    )
    base = alt.Chart(data).encode(
        x=x,
        y=alt.Y("value:Q", title=f"{SYMBOLS[quantity]} of unit {unit}", scale=alt.Scale(domain=domain)),
        tooltip=["word:N", "position:Q", alt.Tooltip("value:Q", format="+.3f")],
    )
    layers: list[alt.Chart] = []
    if span is not None:
        shade = pd.DataFrame({"start": [span[0] - 0.5], "end": [span[1] - 0.5]})
        layers.append(alt.Chart(shade).mark_rect(color="#d9c3b0", opacity=0.5).encode(x="start:Q", x2="end:Q"))
    if scale_kind(quantity) == "diverging":
        layers.append(alt.Chart(pd.DataFrame({"zero": [0.0]})).mark_rule(color="#8a817a").encode(y="zero:Q"))
    layers.append(base.mark_line(color=BLUE_ORANGE[0], strokeWidth=1.5))
    layers.append(
        base.mark_circle(size=28, opacity=1).encode(
            color=alt.Color("value:Q", scale=colour_scale(quantity, domain[1]), legend=None)
        )
    )
    return alt.layer(*layers).properties(height=height)


def coloured_words_html(
    words: Sequence[str],
    values: Sequence[float],
    quantity: str,
    limit: float = 1.0,
    span: tuple[int, int] | None = None,
) -> str:
    """The text as HTML spans, each word's background coloured by its value (same scale as the charts).

    Hovering a word shows its number and value; the words of ``span`` (start, end exclusive) are
    underlined, so a selected span can be found in the text.
    """
    if len(words) != len(values):
        raise ValueError(f"{len(words)} words for {len(values)} values")
    spans = []
    for position, (word, value) in enumerate(zip(words, values, strict=True)):
        background = colour_of(float(value), quantity, limit)
        style = f"background:{background}; color:{text_colour_on(background)}; padding:1px 4px; border-radius:3px"
        if span is not None and span[0] <= position < span[1]:
            style += "; text-decoration:underline; text-decoration-thickness:2px"
        tip = f"word {position}: {SYMBOLS[quantity]} = {float(value):+.3f}"
        spans.append(f'<span title="{tip}" style="{style}">{html.escape(word)}</span>')
    return '<div class="unit-words" style="line-height:2.0">' + " ".join(spans) + "</div>"


# ---- word vectors ----------------------------------------------------------------------------------


def pca_frame(embedding: Tensor, vocab: Vocab, count: int = MAX_MAP_WORDS) -> pd.DataFrame:
    """``word, rank, x, y``: the ``count`` most frequent words (``<unk>`` left out) on their two principal axes."""
    ids = most_frequent_ids(vocab, count)
    points = pca_2d(embedding, ids)
    return pd.DataFrame(
        {
            "word": [vocab.itos[i] for i in ids.tolist()],
            "rank": ids.tolist(),  # frequency order: id 1 is the most frequent word
            "x": points[:, 0].tolist(),
            "y": points[:, 1].tolist(),
        }
    )


def pca_chart(frame: pd.DataFrame, word: str | None = None, neighbours: Sequence[str] = (), height: int = 520) -> Chart:
    """The word-vector map: a point per word, hover for the word; ``word`` in blue, its ``neighbours`` in orange."""
    data = frame.copy()
    data["group"] = "other"
    data.loc[data["word"].isin(list(neighbours)), "group"] = "neighbour"
    if word is not None:
        data.loc[data["word"] == word, "group"] = "the word"
    data["layer"] = data["group"].map({"other": 0, "neighbour": 1, "the word": 2})
    groups = alt.Scale(domain=["the word", "neighbour", "other"], range=[BLUE_ORANGE[0], BLUE_ORANGE[4], "#b9b0a6"])
    base = alt.Chart(data).encode(
        x=alt.X("x:Q", title="first principal axis", axis=alt.Axis(labels=False, ticks=False)),
        y=alt.Y("y:Q", title="second principal axis", axis=alt.Axis(labels=False, ticks=False)),
    )
    points = base.mark_circle(size=45, opacity=0.85).encode(
        color=alt.Color("group:N", scale=groups, legend=alt.Legend(orient="top", title=None)),
        order=alt.Order("layer:Q"),  # grey points first, so the highlighted ones are drawn on top
        tooltip=["word:N", alt.Tooltip("rank:Q", title="frequency rank")],
    )
    labels = (
        base.transform_filter(alt.datum.group != "other")
        .mark_text(align="left", dx=6, dy=-4, fontSize=13)
        .encode(text="word:N", color=alt.Color("group:N", scale=groups, legend=None))
    )
    return alt.layer(points, labels).properties(height=height)
