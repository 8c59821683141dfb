"""Inside the LSTM: every gate and memory for every word, the units that respond to something, word vectors.

The recipe's equations, with PyTorch's gate order (``i, f, g, o``: the four row blocks of
``weight_ih_l{k}`` and ``weight_hh_l{k}``, each ``H`` rows)::

    i_t = sigmoid(W_ii x_t + b_ii + W_hi h_{t-1} + b_hi)    input gate: how much new memory to write
    f_t = sigmoid(W_if x_t + b_if + W_hf h_{t-1} + b_hf)    forget gate: how much old memory to keep
    g_t = tanh(W_ig x_t + b_ig + W_hg h_{t-1} + b_hg)       candidate memory
    o_t = sigmoid(W_io x_t + b_io + W_ho h_{t-1} + b_ho)    output gate: how much memory to show
    c_t = f_t * c_{t-1} + i_t * g_t                         the new memory (cell state)
    h_t = o_t * tanh(c_t)                                   the new output (hidden state)

:func:`trace` runs exactly these, word by word and layer by layer, on the model's own weights,
and keeps every quantity; a test checks that its ``h`` and ``c`` equal the model's ``nn.LSTM``,
so what the page draws is what the model computes. The rest of the module reads a trace: which
units follow a feature of the text (:func:`word_features`, :func:`units_for_feature`), which are
on across a selected span (:func:`units_for_span`, LSTMVis's selection), which words have nearby
vectors (:func:`nearest_words`, :func:`pca_2d`), and how to cut a trace down to what a page can
draw (:func:`pick_units`, :func:`word_window`, :func:`bin_means`).

Shapes: ``T`` words of one text, ``H`` units per layer (rnn_size), ``L`` layers, ``E`` embedding
size, ``V`` vocabulary size, ``N`` chosen words.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from lstm_core.errors import InputError
from lstm_core.model.network import LSTMLanguageModel, State
from lstm_core.text.cleaning import tokenize
from lstm_core.text.vocab import UNK_INDEX, Vocab

QUANTITIES: dict[str, str] = {
    "input_gate": "input gate i",
    "forget_gate": "forget gate f",
    "candidate": "candidate memory g",
    "output_gate": "output gate o",
    "cell": "memory c",
    "hidden": "output h",
}
"""The quantities a :class:`LayerTrace` holds for every word and unit, with their names for a page."""

MAX_HEATMAP_WORDS = 400
"""At most this many words (columns) on one heatmap: more and a browser takes seconds to draw it."""

MAX_HEATMAP_UNITS = 128
"""At most this many units (rows) on one heatmap, for the same reason."""


# ---- the traced forward pass ---------------------------------------------------------------------


@dataclass(frozen=True)
class LayerTrace:
    """Everything one LSTM layer computed for each word of a text.

    ``preactivations`` and ``gates`` are ``(T, 4H)`` in PyTorch's order ``i, f, g, o``; the
    properties below are ``(T, H)`` views into ``gates``. ``cell`` and ``hidden`` are ``(T, H)``:
    row ``t`` is the state after reading word ``t``.
    """

    preactivations: Tensor
    gates: Tensor
    cell: Tensor
    hidden: Tensor

    @property
    def size(self) -> int:
        return self.cell.size(1)

    @property
    def input_gate(self) -> Tensor:
        return self.gates[:, : self.size]

    @property
    def forget_gate(self) -> Tensor:
        return self.gates[:, self.size : 2 * self.size]

    @property
    def candidate(self) -> Tensor:
        return self.gates[:, 2 * self.size : 3 * self.size]

    @property
    def output_gate(self) -> Tensor:
        return self.gates[:, 3 * self.size :]

    def values(self, quantity: str) -> Tensor:
        """One of :data:`QUANTITIES` by name, ``(T, H)``."""
        if quantity not in QUANTITIES:
            raise InputError(f"unknown quantity {quantity!r}; choose one of {', '.join(QUANTITIES)}")
        return getattr(self, quantity)


@dataclass(frozen=True)
class Trace:
    """A traced forward pass over one text: ``ids (T,)`` and one :class:`LayerTrace` per layer.

    ``log_probs (T, V)`` is the model's next-word distribution after each word (float32), present
    when :func:`trace` was asked for it; row ``t`` predicts word ``t + 1``.
    """

    ids: Tensor
    layers: tuple[LayerTrace, ...]
    log_probs: Tensor | None = None

    @property
    def output(self) -> Tensor:
        """The last layer's ``h`` for every word, ``(T, H)``: what the output layer reads."""
        return self.layers[-1].hidden

    @property
    def final_state(self) -> State:
        """``(h, c)`` after the last word, each ``(L, 1, H)``, as the model's forward returns it."""
        h = torch.stack([layer.hidden[-1] for layer in self.layers]).unsqueeze(1)
        c = torch.stack([layer.cell[-1] for layer in self.layers]).unsqueeze(1)
        return h, c

    def next_word_log_probs(self) -> Tensor:
        """``log p(word t+1 | words 0..t)`` for each word that has a predecessor, ``(T - 1,)``."""
        if self.log_probs is None:
            raise InputError("this trace was made without log-probabilities; call trace(..., log_probs=True)")
        return self.log_probs[:-1].gather(1, self.ids[1:, None]).squeeze(1)


def _as_ids(ids: Tensor | Sequence[int], vocab_size: int) -> Tensor:
    ids = torch.as_tensor(ids)
    if ids.dim() != 1:
        raise InputError(f"trace one text at a time: ids must be 1-D (T,), got shape {tuple(ids.shape)}")
    if ids.numel() == 0:
        raise InputError("there are no words to trace")
    if ids.dtype.is_floating_point or ids.dtype == torch.bool:
        raise InputError(f"word ids must be integers, got {ids.dtype}")
    low, high = int(ids.min()), int(ids.max())
    if low < 0 or high >= vocab_size:
        raise InputError(f"word ids must lie in [0, {vocab_size}); got values from {low} to {high}")
    return ids.long()


def _trace_layer(x: Tensor, weights: Sequence[Tensor], h: Tensor, c: Tensor) -> LayerTrace:
    """One layer over ``x (T, E_in)`` from the state ``h, c (H,)``, keeping every quantity.

    The input half of every pre-activation, ``W_ih x_t + b_ih + b_hh`` for all ``T`` words, is
    one matrix product; only the recurrent half ``W_hh h_{t-1}`` needs the loop, and each step
    writes straight into the output rows (``out=``), so a step is seven small kernel calls: about
    0.09 ms for ``H = 512`` on one CPU thread (``bench/bench_inspection.py``).
    """
    weight_ih, weight_hh, bias_ih, bias_hh = (w.float() for w in weights)
    size = weight_hh.size(1)
    steps = x.size(0)
    preactivations = torch.addmm(bias_ih + bias_hh, x, weight_ih.t())  # (T, 4H), input half
    gates = torch.empty_like(preactivations)  # (T, 4H)
    cell = x.new_empty(steps, size)  # (T, H)
    hidden = x.new_empty(steps, size)  # (T, H)
    i, f, g, o = (slice(k * size, (k + 1) * size) for k in range(4))
    for t in range(steps):
        pre = preactivations[t].addmv_(weight_hh, h)  # (4H,): the recurrent half added in place
        gate = gates[t]
        torch.sigmoid(pre, out=gate)  # i, f and o; g's block is overwritten next
        torch.tanh(pre[g], out=gate[g])
        c = torch.addcmul(gate[f] * c, gate[i], gate[g], out=cell[t])  # c_t = f c_{t-1} + i g
        h = torch.mul(gate[o], torch.tanh(c), out=hidden[t])  # h_t = o tanh(c_t)
    return LayerTrace(preactivations=preactivations, gates=gates, cell=cell, hidden=hidden)


def trace(
    model: LSTMLanguageModel,
    ids: Tensor | Sequence[int],
    state: State | None = None,
    log_probs: bool = False,
) -> Trace:
    """Run ``model`` over one text and keep every gate, memory and output of every layer.

    ``ids (T,)`` are the text's word ids (one text, batch 1); ``state`` is an optional ``(h, c)``,
    each ``(L, 1, H)``, to start from (zeros otherwise). The pass runs in eval mode (no dropout:
    what a visitor sees is what generation uses) without autograd, in float32 whatever the
    parameters' dtype, on the model's device, and leaves the model in the mode it found it in.
    Its ``h`` and ``c`` equal ``model(ids[None])`` to float tolerance.

    ``log_probs=True`` also keeps the next-word distribution after every word, ``(T, V)``: about
    ``4 T V`` bytes (15 MB for 500 words of a 7,500-word vocabulary), and for a 1 x 512 model it
    about doubles the time (the full distribution is a ``(T, H) x (H, V)`` product with either
    output layer).
    """
    ids = _as_ids(ids, model.vocab_size).to(model.device)
    layers, size = model.num_layers, model.rnn_size
    if state is not None:
        expected = (layers, 1, size)
        if tuple(state[0].shape) != expected or tuple(state[1].shape) != expected:
            raise InputError(
                f"the starting state must be (h, c), each of shape {expected}; "
                f"got {tuple(state[0].shape)} and {tuple(state[1].shape)}"
            )
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            h0, c0 = model.init_state(1) if state is None else (state[0].to(model.device), state[1].to(model.device))
            x = model.embedding(ids).float()  # (T, E)
            traced = []
            for layer in range(layers):
                weights = [
                    getattr(model.lstm, f"{name}_l{layer}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
                ]
                layer_trace = _trace_layer(x, weights, h0[layer, 0].float(), c0[layer, 0].float())
                traced.append(layer_trace)
                x = layer_trace.hidden  # the next layer reads this one's h (no dropout in eval)
            distribution = model.log_probs(x) if log_probs else None
    finally:
        model.train(was_training)
    return Trace(ids=ids, layers=tuple(traced), log_probs=distribution)


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


def _check_values(values: Tensor) -> Tensor:
    if values.dim() != 2:
        raise InputError(f"activations must be (words, units), got shape {tuple(values.shape)}")
    if values.size(0) == 0 or values.size(1) == 0:
        raise InputError("there are no activations to search (no words or no units)")
    return values


def _check_count(k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise InputError(f"the number of units to return must be a whole number of at least 1, got {k!r}")


def _flat(centred: Tensor, raw: Tensor) -> Tensor:
    """Which columns do not vary: their spread is below a millionth of their magnitude (float32 rounding)."""
    return centred.abs().amax(0) <= 1e-6 * raw.abs().amax(0)


def feature_correlations(values: Tensor, feature: Tensor) -> Tensor:
    """Each unit's Pearson correlation with ``feature`` over the words: ``values (T, H)``, ``feature (T,)`` -> ``(H,)``.

    Computed in float64. A unit or a feature that does not vary over the text has no correlation
    to speak of and gets 0, never NaN; "does not vary" allows for float32 rounding (a spread
    below a millionth of the values' magnitude).
    """
    values = _check_values(values)
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
    _check_count(k)
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
    values = _check_values(values)
    _check_count(k)
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


# ---- embeddings ----------------------------------------------------------------------------------


def _check_embedding(embedding: Tensor) -> Tensor:
    if embedding.dim() != 2 or embedding.size(0) < 2:
        raise InputError(f"an embedding must be (words, size) with at least 2 words, got {tuple(embedding.shape)}")
    return embedding.detach().double().cpu()


def nearest_words(embedding: Tensor, vocab: Vocab, word: str, k: int = 10) -> list[tuple[str, float]]:
    """The ``k`` words whose vectors point most nearly the same way as ``word``'s, with their cosine similarity.

    ``embedding (V, E)`` is e.g. ``model.embedding.weight`` (which is also the output layer when
    the weights are tied). ``word`` is cleaned like a text; the word itself and ``<unk>`` (a
    stand-in for many rare words, not a word) are left out. Most similar first.
    """
    _check_count(k)
    vectors = _check_embedding(embedding)
    if vectors.size(0) != len(vocab):
        raise InputError(f"the embedding has {vectors.size(0)} rows but the vocabulary {len(vocab)} words")
    cleaned = tokenize(word)
    if len(cleaned) != 1:
        raise InputError(f"give one word to find neighbours of, got {word!r}")
    if cleaned[0] not in vocab:
        raise InputError(f"{cleaned[0]!r} is not in the vocabulary, so it has no vector of its own")
    index = vocab.index(cleaned[0])
    norms = vectors.norm(dim=1).clamp_min(torch.finfo(torch.float64).tiny)
    cosine = (vectors @ vectors[index]) / (norms * norms[index])  # (V,)
    cosine[index] = -math.inf
    cosine[UNK_INDEX] = -math.inf
    best = torch.topk(cosine, min(k, vectors.size(0) - 2)).indices  # the word and <unk> are out
    return [(vocab.itos[i], float(cosine[i])) for i in best.tolist()]


def most_frequent_ids(vocab: Vocab, count: int = 300) -> Tensor:
    """The ids of the ``count`` most frequent words, ``<unk>`` left out, ``(N,)``.

    The vocabulary keeps words in frequency order, so these are ids ``1 .. count``.
    """
    _check_count(count)
    return torch.arange(1, min(count + 1, len(vocab)), dtype=torch.long)


def pca_2d(embedding: Tensor, ids: Tensor | Sequence[int]) -> Tensor:
    """The chosen words' vectors on their two principal axes: ``embedding (V, E)``, ``ids (N,)`` -> ``(N, 2)``.

    The vectors are centred on their mean and projected on the two directions of greatest
    variance among them (float32 result; axis 0 has the most variance). An axis's sign is
    arbitrary to the maths, so each is turned to make the word farthest from the centre along it
    positive: the same vectors always give the same map. When the words span fewer than two
    directions, the missing axis is all zeros.
    """
    vectors = _check_embedding(embedding)
    ids = torch.as_tensor(ids)
    if ids.dim() != 1 or ids.numel() < 2:
        raise InputError(f"choose at least 2 words to project (ids of shape (N,)), got shape {tuple(ids.shape)}")
    if ids.dtype.is_floating_point or ids.dtype == torch.bool:
        raise InputError(f"word ids must be integers, got {ids.dtype}")
    if int(ids.min()) < 0 or int(ids.max()) >= vectors.size(0):
        raise InputError(f"word ids must lie in [0, {vectors.size(0)})")
    chosen = vectors[ids.long().cpu()]
    centred = chosen - chosen.mean(0)
    # Rows of vh are the principal directions, by decreasing singular value.
    _, singular, vh = torch.linalg.svd(centred, full_matrices=False)
    projected = torch.zeros(chosen.size(0), 2, dtype=torch.float64)
    scale = singular[0] if singular.numel() else 0.0
    for axis in range(min(2, singular.numel())):
        if singular[axis] <= 1e-9 * scale:  # no spread left along this axis: leave it at 0
            continue
        coordinate = centred @ vh[axis]
        if coordinate[coordinate.abs().argmax()] < 0:
            coordinate = -coordinate
        projected[:, axis] = coordinate
    return projected.float()


# ---- cutting a trace down to what a page can draw -----------------------------------------------


def pick_units(values: Tensor, max_units: int = MAX_HEATMAP_UNITS, keep: Sequence[int] = ()) -> list[int]:
    """Which units (rows) to draw for ``values (T, H)``: the ones in ``keep`` first, then the most variable.

    A 512-unit layer does not fit a readable heatmap, and most units of a layer barely move over
    one text; those that vary most (largest standard deviation over the words) show the most.
    Returns at most ``max_units`` distinct unit indices (default :data:`MAX_HEATMAP_UNITS`):
    ``keep`` in its order, duplicates dropped, then the rest by decreasing variability.
    """
    values = _check_values(values)
    _check_count(max_units)
    units = values.size(1)
    chosen: list[int] = []
    for unit in keep:
        if isinstance(unit, bool) or not isinstance(unit, int) or not 0 <= unit < units:
            raise InputError(f"units are numbered 0 to {units - 1}, got {unit!r}")
        if unit not in chosen:
            chosen.append(unit)
    if len(chosen) >= max_units:
        return chosen[:max_units]
    spread = values.detach().double().cpu().std(0, correction=0)  # (H,)
    taken = set(chosen)
    for unit in torch.argsort(spread, descending=True, stable=True).tolist():
        if len(chosen) == max_units:
            break
        if unit not in taken:
            chosen.append(unit)
    return chosen


def word_window(num_words: int, max_words: int = MAX_HEATMAP_WORDS, focus: int | None = None) -> range:
    """The words (columns) to draw of a text of ``num_words``: at most ``max_words`` in a row.

    A heatmap's columns are labelled with the words, and skipping words would make a sentence
    unreadable, so a long text is shown through a contiguous window (default at most
    :data:`MAX_HEATMAP_WORDS`) centred on ``focus`` where possible, else from the start. Use
    :func:`bin_means` for an overview of the whole text.
    """
    _check_count(max_words)
    if isinstance(num_words, bool) or not isinstance(num_words, int) or num_words < 0:
        raise InputError(f"the number of words must be a whole number of 0 or more, got {num_words!r}")
    if num_words <= max_words:
        return range(num_words)
    if focus is None:
        return range(max_words)
    if not 0 <= focus < num_words:
        raise InputError(f"the word to centre on must lie in [0, {num_words}), got {focus}")
    start = min(max(0, focus - max_words // 2), num_words - max_words)
    return range(start, start + max_words)


def bin_means(values: Tensor, max_rows: int = MAX_HEATMAP_WORDS) -> Tensor:
    """An overview of a long text: ``values (T, ...)`` averaged over runs of consecutive words -> ``(R, ...)``.

    With ``T <= max_rows`` the values come back as they are; otherwise words are grouped into
    ``R = ceil(T / ceil(T / max_rows)) <= max_rows`` runs of equal length (the last may be
    shorter) and each run is replaced by its mean. Row ``r`` covers words
    ``r * b .. (r + 1) * b - 1`` with ``b = ceil(T / max_rows)``.
    """
    _check_count(max_rows)
    if values.dim() == 0 or values.size(0) == 0:
        raise InputError("there are no values to summarise")
    steps = values.size(0)
    if steps <= max_rows:
        return values
    width = -(-steps // max_rows)  # words per run, rounded up
    rows = -(-steps // width)
    padded = values.new_zeros(rows * width, *values.shape[1:], dtype=torch.float32)
    padded[:steps] = values
    sums = padded.view(rows, width, *values.shape[1:]).sum(1)
    counts = torch.full((rows,), float(width))
    counts[-1] = steps - (rows - 1) * width
    return sums / counts.view(rows, *([1] * (values.dim() - 1))).to(sums.device)
