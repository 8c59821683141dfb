"""Which LSTM units respond to something: features of a raw text, and the units that follow one or a span.

A trace (:func:`lstm_core.explain.inspection.trace`) gives every unit's activation for every word.
:func:`word_features` reads simple facts about each word from the raw text (its place in the line,
whether its sentence asks a question, the word before it); :func:`units_for_feature` finds the units
whose activation correlates with one of them, and :func:`units_for_span` the units that are on
across a span a visitor selects (LSTMVis's selection rule).

Shapes: ``T`` words of one text, ``H`` units of one layer.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch
from torch import Tensor

from lstm_core.errors import InputError
from lstm_core.explain.inspection import check_activations, check_count
from lstm_core.text.cleaning import tokenize

# ---- features of a raw text ------------------------------------------------------------------------

FEATURES: dict[str, str] = {
    "line_position": "position in the line",
    "in_question": "inside a question",
    "after_word": "right after a given word",
}
"""The features :meth:`WordFeatures.vector` computes, with their names for a page."""

# A run of sentence-ending marks ends one sentence; it asks a question when it holds a "?".
_SENTENCE_END = re.compile(r"([.!?]+)")


@dataclass(frozen=True)
class WordFeatures:
    """The words of a raw text (as :func:`~lstm_core.text.cleaning.tokenize` cleans them) and simple facts about each.

    Each tensor is ``(T,)``, aligned with ``words``:

    * ``line``: which line of the raw text the word is on (0-based, blank lines counted);
    * ``line_position``: the word's position in its line (0 for the first word of a line);
    * ``in_question``: the word belongs to a sentence that ends in "?": it lies between the
      previous sentence end (".", "!" or "?", or the start of the text) and a "?".
    """

    words: tuple[str, ...]
    line: Tensor
    line_position: Tensor
    in_question: Tensor

    def after(self, word: str) -> Tensor:
        """``(T,)`` bool: the word just before is ``word`` (cleaned like the text; the first word is never after)."""
        cleaned = tokenize(word)
        if len(cleaned) != 1:
            raise InputError(f"give one word to follow, got {word!r}")
        follows = [False] + [previous == cleaned[0] for previous in self.words[:-1]]
        return torch.tensor(follows[: len(self.words)], dtype=torch.bool)

    def vector(self, name: str, word: str | None = None) -> Tensor:
        """The feature ``name`` (one of :data:`FEATURES`) as a float32 ``(T,)``; ``after_word`` needs ``word``."""
        if name == "line_position":
            return self.line_position.float()
        if name == "in_question":
            return self.in_question.float()
        if name == "after_word":
            if word is None:
                raise InputError("the feature 'after_word' needs the word to follow")
            return self.after(word).float()
        raise InputError(f"unknown feature {name!r}; choose one of {', '.join(FEATURES)}")


def word_features(text: str) -> WordFeatures:
    """Tokenise a raw text line by line and say, for each word, where it stands in its line and sentence.

    Cleaning turns line breaks and punctuation into spaces, so these facts are read from the raw
    text before that, one line and one sentence piece at a time. Line breaks and the marks
    ``. ! ?`` are word boundaries for :func:`~lstm_core.text.cleaning.tokenize` too, so ``words`` is exactly
    ``tokenize(text)`` and lines up with the ids :func:`trace` reads.
    """
    words: list[str] = []
    lines: list[int] = []
    positions: list[int] = []
    sentence_of_word: list[int] = []
    is_question: list[bool] = []  # one entry per finished sentence
    for line_number, line in enumerate(text.splitlines()):
        position = 0
        for k, piece in enumerate(_SENTENCE_END.split(line)):
            if k % 2:  # the split's odd pieces are the sentence-ending runs
                is_question.append("?" in piece)
                continue
            for word in tokenize(piece):
                words.append(word)
                lines.append(line_number)
                positions.append(position)
                sentence_of_word.append(len(is_question))
                position += 1
    question = [s < len(is_question) and is_question[s] for s in sentence_of_word]
    return WordFeatures(
        words=tuple(words),
        line=torch.tensor(lines, dtype=torch.long),
        line_position=torch.tensor(positions, dtype=torch.long),
        in_question=torch.tensor(question, dtype=torch.bool),
    )


# ---- units that respond to something --------------------------------------------------------------


@dataclass(frozen=True)
class FeatureUnit:
    """A unit and the Pearson correlation of its activation with a feature over a text, in [-1, 1]."""

    unit: int
    correlation: float


@dataclass(frozen=True)
class SpanUnit:
    """A unit on across a span: its lowest activation inside, its mean outside, and their difference."""

    unit: int
    inside_min: float
    outside_mean: float

    @property
    def contrast(self) -> float:
        return self.inside_min - self.outside_mean


def _flat(centred: Tensor, raw: Tensor) -> Tensor:
    """Which columns do not vary: their spread is below a millionth of their magnitude (float32 rounding)."""
    return centred.abs().amax(0) <= 1e-6 * raw.abs().amax(0)


def feature_correlations(values: Tensor, feature: Tensor) -> Tensor:
    """Each unit's Pearson correlation with ``feature`` over the words: ``values (T, H)``, ``feature (T,)`` -> ``(H,)``.

    Computed in float64. A unit or a feature that does not vary over the text has no correlation
    to speak of and gets 0, never NaN; "does not vary" allows for float32 rounding (a spread
    below a millionth of the values' magnitude).
    """
    values = check_activations(values)
    feature = torch.as_tensor(feature)
    if feature.dim() != 1 or feature.size(0) != values.size(0):
        raise InputError(f"the feature needs one value per word ({values.size(0)}), got shape {tuple(feature.shape)}")
    raw_x = values.detach().double().cpu()
    raw_y = feature.detach().double().cpu()[:, None]  # (T, 1)
    x = raw_x - raw_x.mean(0)
    y = raw_y - raw_y.mean(0)
    flat = _flat(x, raw_x) | _flat(y, raw_y)  # (H,), the feature's flatness broadcast
    scale = (x.norm(dim=0) * y.norm(dim=0)).clamp_min(torch.finfo(torch.float64).tiny)
    correlation = (x * y).sum(0) / scale
    return correlation.masked_fill(flat, 0.0).clamp(-1.0, 1.0).float()


def units_for_feature(values: Tensor, feature: Tensor, k: int = 10) -> list[FeatureUnit]:
    """The ``k`` units whose activation correlates most (by absolute Pearson r) with ``feature``, strongest first.

    ``values (T, H)`` is one quantity of a :class:`LayerTrace` (e.g. ``hidden`` or ``cell``),
    ``feature (T,)`` one of :meth:`WordFeatures.vector`. A negative correlation is as telling as a
    positive one (a unit that switches off inside questions), so the sign is kept in the result.
    Empty when the feature is the same for every word of the text: nothing can correlate with it.
    """
    check_count(k)
    correlation = feature_correlations(values, feature)
    column = torch.as_tensor(feature).detach().double().cpu()[:, None]
    if _flat(column - column.mean(0), column).item():
        return []
    order = torch.argsort(correlation.abs(), descending=True, stable=True)[:k]
    return [FeatureUnit(unit=int(u), correlation=float(correlation[u])) for u in order]


def units_for_span(values: Tensor, start: int, end: int, threshold: float = 0.3, k: int = 10) -> list[SpanUnit]:
    """The units that are on across words ``start .. end - 1``, the most specific to the span first.

    A unit is *on across the span* when its activation is at least ``threshold`` at every word of
    it (LSTMVis's selection rule; its default threshold for ``h`` is 0.3, and gates, which lie in
    (0, 1), usually want a higher one). The units found are ranked by their *contrast*: the lowest
    activation inside the span minus the mean activation over the words outside it, so a unit that
    is on only there comes before one that is on everywhere. To find units that are strongly
    negative across a span, pass ``-values``.

    ``values (T, H)``; returns at most ``k`` units, possibly none. The span must leave at least one
    word outside it, or there is nothing to contrast with.
    """
    values = check_activations(values)
    check_count(k)
    steps = values.size(0)
    if isinstance(start, bool) or isinstance(end, bool) or not isinstance(start, int) or not isinstance(end, int):
        raise InputError(f"a span is two whole word positions, got {start!r} and {end!r}")
    if not 0 <= start < end <= steps:
        raise InputError(f"a span must satisfy 0 <= start < end <= {steps} (the number of words); got {start}, {end}")
    if end - start == steps:
        raise InputError("the span covers the whole text; leave some words outside it to compare against")
    if not math.isfinite(threshold):
        raise InputError(f"the threshold must be a finite number, got {threshold!r}")
    x = values.detach().double().cpu()
    inside_min = x[start:end].amin(0)  # (H,)
    outside = torch.cat([x[:start], x[end:]])
    outside_mean = outside.mean(0)  # (H,)
    on = torch.nonzero(inside_min >= threshold).squeeze(1)
    contrast = (inside_min - outside_mean)[on]
    order = on[torch.argsort(contrast, descending=True, stable=True)][:k]
    return [SpanUnit(unit=int(u), inside_min=float(inside_min[u]), outside_mean=float(outside_mean[u])) for u in order]
