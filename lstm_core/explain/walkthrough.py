"""One step of step-by-step generation, explained: how the next word's probabilities are made, and
what reading the last word did inside the recurrent layers.

The softmax walk-through (:func:`softmax_walkthrough`) follows the top candidates through the
stages :meth:`~lstm_core.sampling.step.StepGenerator.stages` returns -- the same
:class:`~lstm_core.sampling.processors.ProcessorList` the sampler applies -- so each number is
read from what is sampled, not recomputed beside it::

    model log-probs --word rules--> logit z --/T--> z / T --softmax--> p_T --top-k--> --top-p--> --min-p--> p

The model's output is already a log-softmax: ``log p = z_raw - logsumexp(z_raw)``, the raw logits
shifted by one constant per step. A softmax ignores a constant (and ``c / T`` is one too), so
dividing the log-probs by ``T`` gives exactly the probabilities that dividing the raw logits would;
here they are called the logits.

The word just read (:func:`word_just_read`) is fed again through :func:`~lstm_core.explain.inspection.trace`
from the state before it (kept on the generator's undo stack), so its gates and the change it made
to the memory (an LSTM's ``c``; a GRU's or plain RNN's ``h``, their only state) are the numbers the
Inside page draws for that word. Nothing here calls the
model's output layer, so a slider move costs a few operations on ``(V,)`` vectors.

Shapes: ``V`` vocabulary size, ``H`` units per layer, ``L`` layers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from lstm_core.config import Cell
from lstm_core.errors import InputError
from lstm_core.explain.inspection import LayerTrace, trace
from lstm_core.model.network import LSTMLanguageModel, State
from lstm_core.sampling.options import SamplingOptions
from lstm_core.sampling.processors import MinP, ProcessorList, Temperature, TopK, TopP
from lstm_core.sampling.rules import descending_order, is_whole_number
from lstm_core.sampling.step import StepGenerator
from lstm_core.text.vocab import Vocab

FILTERS = (Temperature, TopK, TopP, MinP)
"""The stages after the word rules: they reshape the distribution the rules left."""

MAX_WALKTHROUGH_WORDS = 50
"""At most this many rows in a walk-through: it is read row by row."""


# ---- the softmax walk-through ---------------------------------------------------------------------


@dataclass(frozen=True)
class WalkthroughRow:
    """One candidate word through every stage of one choice.

    A filter that is off leaves its fields None. ``running_sum`` is None for a word top-k has
    already cut (it adds nothing to the nucleus), ``min_p_ratio`` for a word already cut before
    min-p.
    """

    rank: int
    """1 for the most likely word after the word rules (ties: the lower vocabulary id first)."""
    word: str
    index: int
    model_log_prob: float
    """``log p`` as the model gave it, before any stage."""
    logit: float
    """``z``: the log-probability after the word rules, which the temperature divides."""
    scaled: float
    """``z / T`` (``z`` itself when there is no temperature: greedy and beam search have none)."""
    tempered: float
    """``softmax(z / T)`` for this word: its probability after the temperature, before the cuts."""
    top_k_kept: bool | None
    running_sum: float | None
    """The probability of this word and every word ranked above it, after temperature and top-k:
    what top-p compares with ``p``. The nucleus ends at the first word where it reaches ``p``."""
    top_p_kept: bool | None
    min_p_ratio: float | None
    """``p / p_top`` after top-p: min-p keeps the word when this is at least ``min_p``."""
    min_p_kept: bool | None
    probability: float
    """The probability the word is drawn with: the last stage's, renormalised over the words kept."""


@dataclass(frozen=True)
class Walkthrough:
    """The rows of :func:`walkthrough_rows` and the settings they were made with (None: off)."""

    rows: list[WalkthroughRow]
    rules: list[str]
    """The names of the word-rule stages (``<unk>`` rule, repetition penalty, no-repeat n-grams) in use."""
    temperature: float | None
    top_k: int | None
    top_p: float | None
    min_p: float | None


def walkthrough_rows(
    stages: Sequence[tuple[str, Tensor]], processors: ProcessorList, vocab: Vocab, n: int = 10
) -> Walkthrough:
    """The top ``n`` words through ``stages``, the output of ``processors.stages`` on one ``(V,)`` row.

    ``stages`` is ``[("model", log-probs), (processor name, log-probs after it), ...]``; each
    ``(V,)`` (or ``(1, V)``). Words are ranked by the logits (the log-probs after the word rules);
    a word the rules removed is not listed, so there may be fewer than ``n`` rows. Whether a
    filter keeps a word is read from that filter's output, never recomputed; the running sum is
    summed in float64 as :func:`~lstm_core.sampling.processors.filter_top_p` sums it.
    """
    if not is_whole_number(n) or not 1 <= n <= MAX_WALKTHROUGH_WORDS:
        raise InputError(f"n must be a whole number from 1 to {MAX_WALKTHROUGH_WORDS}, got {n!r}")
    names = [name for name, _ in stages]
    if names != ["model", *(processor.name for processor in processors)]:
        raise InputError(f"the stages {names} are not the output of the processors {list(processors)}")
    rows = [values.reshape(-1).double() for _, values in stages]  # (V,) each; rows[k + 1] is after processor k
    kinds = [type(processor) for processor in processors]

    def position(kind: type) -> int | None:
        """The index in ``rows`` of the output of the stage of this kind, or None when it is off."""
        return kinds.index(kind) + 1 if kind in kinds else None

    first_filter = min((k for k, kind in enumerate(kinds) if kind in FILTERS), default=len(kinds))
    logits = rows[first_filter]  # the input of the first filter: the word rules' output
    order = descending_order(logits, min(n, int(torch.isfinite(logits).sum())))  # ties: lower id first
    picked = order.tolist()

    temperature_at = position(Temperature)
    temperature = None
    if temperature_at:
        stage = processors[temperature_at - 1]
        assert isinstance(stage, Temperature), "internal error: the stage found is a temperature"
        temperature = stage.temperature
    scaled = logits[order] / temperature if temperature else logits[order]
    tempered = (rows[temperature_at] if temperature_at else logits)[order].exp()

    def kept(kind: type) -> list[bool | None]:
        at = position(kind)
        return [None] * len(picked) if at is None else torch.isfinite(rows[at][order]).tolist()

    top_p_at = position(TopP)
    running: list[float | None] = [None] * len(picked)
    if top_p_at is not None:
        mass = rows[top_p_at - 1][order].exp()  # top-p's input: after temperature and top-k
        sums = mass.cumsum(dim=0).tolist()
        running = [total if share > 0 else None for total, share in zip(sums, mass.tolist(), strict=True)]
    min_p_at = position(MinP)
    ratios: list[float | None] = [None] * len(picked)
    if min_p_at is not None:
        before = rows[min_p_at - 1]
        relative = (before[order] - before.max()).exp().tolist()
        ratios = [
            ratio if math.isfinite(value) else None
            for ratio, value in zip(relative, before[order].tolist(), strict=True)
        ]
    final = rows[-1][order].exp().tolist()
    top_k_kept, top_p_kept, min_p_kept = kept(TopK), kept(TopP), kept(MinP)
    table = [
        WalkthroughRow(
            rank=rank,
            word=vocab.itos[index],
            index=index,
            model_log_prob=float(rows[0][index]),
            logit=float(logits[index]),
            scaled=float(scaled[rank - 1]),
            tempered=float(tempered[rank - 1]),
            top_k_kept=top_k_kept[rank - 1],
            running_sum=running[rank - 1],
            top_p_kept=top_p_kept[rank - 1],
            min_p_ratio=ratios[rank - 1],
            min_p_kept=min_p_kept[rank - 1],
            probability=final[rank - 1],
        )
        for rank, index in enumerate(picked, start=1)
    ]

    def setting(kind: type, attribute: str) -> Any:
        at = position(kind)
        return None if at is None else getattr(processors[at - 1], attribute)

    return Walkthrough(
        rows=table,
        rules=[processor.name for processor, kind in zip(processors, kinds, strict=True) if kind not in FILTERS],
        temperature=temperature,
        top_k=setting(TopK, "k"),
        top_p=setting(TopP, "p"),
        min_p=setting(MinP, "min_p"),
    )


def softmax_walkthrough(generator: StepGenerator, options: SamplingOptions, n: int = 10) -> Walkthrough:
    """The walk-through of the generator's next word under ``options``: no model call.

    Reads :meth:`StepGenerator.stages`, the stages its ``step`` samples through, so the final
    probabilities are :meth:`StepGenerator.distribution`'s.
    """
    return walkthrough_rows(generator.stages(options), ProcessorList.from_options(options), generator.vocab, n)


# ---- the word just read ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LayerRead:
    """What reading one word did in one layer: its gates, its candidate and its memory before and after, each ``(H,)``.

    ``gates`` maps each gate's symbol to its values: ``i, f, o`` for an LSTM, ``r, z`` for a GRU,
    none for a plain RNN. ``candidate`` is the LSTM's ``g`` or the GRU's ``n`` (None for the RNN).
    The memory is what the cell carries to the next word: the LSTM's ``c``, the others' ``h``.
    """

    gates: dict[str, Tensor]
    candidate: Tensor | None
    memory_before: Tensor
    memory: Tensor
    kind: Cell = "lstm"

    @property
    def memory_symbol(self) -> str:
        return "c" if self.kind == "lstm" else "h"

    @property
    def candidate_symbol(self) -> str:
        return "g" if self.kind == "lstm" else "n"

    @property
    def change(self) -> Tensor:
        """What was written minus what was forgotten: ``c_t - c_{t-1} = i g - (1 - f) c_{t-1}`` for the
        LSTM, ``h_t - h_{t-1} = (1 - z)(n - h_{t-1})`` for the GRU, the whole step for the plain RNN."""
        return self.memory - self.memory_before


@dataclass(frozen=True)
class WordRead:
    """The word read last (at the prime's end, the prime's last word) and one :class:`LayerRead` per layer."""

    word: str
    index: int
    layers: tuple[LayerRead, ...]


def read_last_word(model: LSTMLanguageModel, ids: Sequence[int], state: State | None = None) -> tuple[LayerRead, ...]:
    """Feed ``ids`` from ``state`` (None: zeros) through :func:`~lstm_core.explain.inspection.trace`; what the
    last one did.

    The memory before the last word is the trace's previous row, or ``state``'s (its ``c`` for an
    LSTM, its ``h`` otherwise; zeros without one) when ``ids`` is a single word.
    """
    traced = trace(model, ids, state)
    carried = None if state is None else state[1 if model.cell == "lstm" else 0]  # (L, 1, H)
    return tuple(
        _layer_read(layer, None if carried is None else carried[number, 0])
        for number, layer in enumerate(traced.layers)
    )


def _layer_read(layer: LayerTrace, state_before: Tensor | None) -> LayerRead:
    """The last row of one layer's trace; ``state_before`` is the layer's memory ``(H,)`` before ``ids``."""
    memory = layer.cell if layer.cell is not None else layer.hidden  # (T, H)
    if memory.size(0) > 1:
        before = memory[-2]
    elif state_before is not None:
        before = state_before.to(memory)
    else:
        before = torch.zeros_like(memory[-1])
    if layer.kind == "lstm":
        gates = {"i": layer.input_gate[-1], "f": layer.forget_gate[-1], "o": layer.output_gate[-1]}
    elif layer.kind == "gru":
        gates = {"r": layer.reset_gate[-1], "z": layer.update_gate[-1]}
    else:
        gates = {}
    candidate = None if layer.kind == "rnn" else layer.candidate[-1]
    return LayerRead(gates, candidate, before, memory[-1], layer.kind)


def word_just_read(generator: StepGenerator) -> WordRead:
    """What reading the generator's last word did to each layer (the prime's last word before any step).

    One word through :func:`~lstm_core.explain.inspection.trace` from the state before it, or the whole
    text from the start when that state is no longer kept (:meth:`StepGenerator.last_word`).
    """
    model = generator.model
    if not isinstance(model, LSTMLanguageModel):
        raise InputError(
            f"only a recurrent model of this project has gates to show; this one is a {type(model).__name__}"
        )
    last = generator.last_word()
    layers = read_last_word(model, last.ids, last.state)
    return WordRead(word=generator.vocab.itos[last.index], index=last.index, layers=layers)


def units_by_change(layer: LayerRead, count: int = 32) -> list[int]:
    """The ``count`` units whose memory changed most (largest ``|Δc|``, or ``|Δh|`` without c), largest first."""
    if not is_whole_number(count) or count < 1:
        raise InputError(f"count must be a whole number of at least 1, got {count!r}")
    change = layer.change.detach().abs().float().cpu()
    return descending_order(change, min(count, change.numel())).tolist()
