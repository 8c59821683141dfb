"""Log-prob processors: the stages between the model's distribution and the word chosen.

Every stage is a processor with one small protocol, ``(log_probs (B, V), histories) ->
log_probs (B, V)`` (row ``b`` follows ``histories[b]``), in the pattern of Hugging Face's
``LogitsProcessor``. Each validates its own argument when it is built and says what to use
instead. :meth:`ProcessorList.from_options` builds the list a :class:`SamplingOptions` asks for,
in this order::

    model log-probs (B, V)
      -> UnknownWordRule      <unk>: skip (ban it) | stop (end the text there) | allow
      -> RepetitionPenalty    divide the probability of every word already in the text
      -> NoRepeatNgram        ban the words that would repeat an n-gram
      -> Temperature          p ** (1 / T), renormalised          } sampling only: greedy and beam
      -> TopK                 the k most likely words             } search rank the words after
      -> TopP                 the smallest set with mass >= p     } the rules, and these filters
      -> MinP                 the words at least min_p x the top  } never change the top word

The same list serves decoding, the step-by-step candidates and :meth:`ProcessorList.stages` (the
distribution after each stage), so what a UI shows is what is sampled. A new method is one class
here, one entry in :data:`PIPELINE` and one field of ``SamplingOptions``.

Every processor returns normalised log-probs (``-inf`` for words it removed), or its input itself
when it changes nothing, so greedy decoding with no rule is exactly the model's argmax. The
filters are also plain functions on ``(..., V)`` tensors (:func:`filter_top_k` and friends).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, overload

import torch
from torch import Tensor

from lstm_core.errors import InputError
from lstm_core.sampling.history import History
from lstm_core.text.vocab import UNK_INDEX

if TYPE_CHECKING:
    from lstm_core.sampling.options import SamplingOptions

GREEDY_TEMPERATURE = 1e-4
"""At or below this temperature sampling is greedy: ``p ** (1 / T)`` would overflow, and its limit
as ``T -> 0`` is all the mass on the most likely word anyway."""

TOP_P_TOLERANCE = 1e-6
"""Mass within this of ``top_p`` counts as reaching it, so float rounding of a cumulative sum
(0.5 + 0.25 computed as 0.7499999) cannot add a word to the nucleus."""

MIN_P_TOLERANCE = 1e-5
"""A word whose probability ratio to the top word is within this (relative) of ``min_p`` counts as
reaching it, so float32 rounding of two log-probs cannot drop a word that sits exactly on the
boundary (0.25 against 0.5 at ``min_p`` 0.5)."""

MAX_TOP_K = 1000
"""The most words top-k may keep: a cap for a shared server; top-p and min-p adapt instead."""

_NEG_INF = float("-inf")


def is_whole_number(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_finite_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# ---- pure filters on (..., V) log-probabilities ----------------------------------------------


def apply_temperature(log_probs: Tensor, temperature: float) -> Tensor:
    """``(..., V)`` -> normalised log-probs of ``p ** (1 / T)``.

    At ``T <= GREEDY_TEMPERATURE`` the result is one-hot on the argmax (the first one on ties):
    dividing by a tiny ``T`` would turn differences into infinities and NaNs.
    """
    if temperature <= GREEDY_TEMPERATURE:
        best = log_probs.argmax(dim=-1, keepdim=True)
        return torch.full_like(log_probs, _NEG_INF).scatter_(-1, best, 0.0)
    scores = log_probs if temperature == 1.0 else log_probs / temperature
    return scores.log_softmax(dim=-1)


def descending_order(scores: Tensor, count: int) -> Tensor:
    """Indices of the ``count`` highest entries of ``scores (V,)``, highest first, ties to the lower index.

    Exactly the first ``count`` of a stable descending sort, without sorting all ``V`` entries
    (a stable sort of 7,500 floats costs about 0.3 ms, a top-k a tenth of that): an unsorted
    top-k finds the ``count``-th value, and only the entries at or above it are sorted -- all of
    them, so a tie at the boundary cannot drop the lower index.
    """
    size = scores.numel()
    if count >= size:
        return torch.sort(scores, descending=True, stable=True).indices
    boundary = torch.topk(scores, count, sorted=False).values.min()
    candidates = torch.nonzero(scores >= boundary).view(-1)  # ascending index
    order = torch.sort(scores[candidates], descending=True, stable=True).indices[:count]
    return candidates[order]


def _keep_per_row(log_probs: Tensor, pick: Callable[[Tensor], Tensor]) -> Tensor:
    """``log_probs (..., V)`` with ``-inf`` outside ``pick(row)`` in each row, renormalised."""
    rows = log_probs.reshape(-1, log_probs.size(-1))
    keep = torch.zeros_like(rows, dtype=torch.bool)
    for row, mask in zip(rows, keep, strict=True):
        mask[pick(row)] = True
    return log_probs.masked_fill(~keep.view_as(log_probs), _NEG_INF).log_softmax(dim=-1)


def filter_top_k(log_probs: Tensor, top_k: int) -> Tensor:
    """Keep exactly the ``top_k`` most likely words of normalised ``(..., V)`` log-probs, renormalised.

    ``-inf`` elsewhere; ties at the boundary go to the lower index, so exactly ``k`` words
    survive. Off (``top_k`` 0, or at least ``V``): the input itself is returned.
    """
    if top_k <= 0 or top_k >= log_probs.size(-1):
        return log_probs
    boundary = torch.topk(log_probs, top_k, dim=-1, sorted=False).values.amin(dim=-1, keepdim=True)
    keep = log_probs >= boundary  # (..., V)
    if bool((keep.sum(dim=-1) > top_k).any()):  # ties at the boundary: only the lower indices may stay
        return _keep_per_row(log_probs, lambda row: descending_order(row, top_k))
    return log_probs.masked_fill(~keep, _NEG_INF).log_softmax(dim=-1)


def _nucleus_size(log_probs: Tensor, top_p: float) -> tuple[int, Tensor]:
    """How many words the top-p set of one normalised row ``(V,)`` holds, and the last one's log-prob.

    Only the sorted *values* are needed: tied words have equal mass, so their order does not
    change the running sums. The search looks at the best 64 words first and widens only when
    those fall short, straight to all words when even 512 cannot reach ``top_p`` (each word
    beyond the 64th has at most the 64th's mass), so a peaked distribution stays cheap.
    """
    finite = int(torch.isfinite(log_probs).sum())
    count = min(64, finite)
    while True:
        values = torch.topk(log_probs, count).values  # highest first
        probs = values.double().exp()
        mass_before = probs.cumsum(dim=0) - probs  # mass of the words ranked above each one
        inside = max(1, int((mass_before < top_p - TOP_P_TOLERANCE).sum()))  # a prefix: mass_before only grows
        if inside < count or count >= finite:
            return inside, values[inside - 1]
        smallest = float(probs[-1])  # 0 only when the remaining words' mass underflows to nothing
        at_least = count + (top_p - float(mass_before[-1]) - smallest) / smallest if smallest > 0 else math.inf
        count = min(512 if at_least <= 512 else finite, finite)


def filter_top_p(log_probs: Tensor, top_p: float) -> Tensor:
    """Nucleus filter on normalised ``(..., V)`` log-probs: the smallest most-likely set with mass ``>= top_p``.

    Words are taken in order of probability (ties: lower index first) until the mass of those
    taken is ``>= top_p - TOP_P_TOLERANCE`` (summed in float64). After top-k the input is the
    renormalised top-k distribution, so the mass is relative to those words (as in HF
    transformers). The most likely word always survives. Returns renormalised log-probs, ``-inf``
    outside the set; off (``top_p`` 1): the input itself.
    """
    if top_p >= 1.0:
        return log_probs
    rows = log_probs.reshape(-1, log_probs.size(-1))
    keep = torch.empty_like(rows, dtype=torch.bool)
    for row, mask in zip(rows, keep, strict=True):
        size, last = _nucleus_size(row, top_p)
        torch.gt(row, last, out=mask)  # every word above the last one taken ...
        tied = row == last
        missing = size - int(mask.sum())
        if int(tied.sum()) == missing:  # ... and the words tied with it (usually just itself),
            mask |= tied
        else:  # ... or only the lowest-index ones of those
            mask[torch.nonzero(tied).view(-1)[:missing]] = True
    return log_probs.masked_fill(~keep.view_as(log_probs), _NEG_INF).log_softmax(dim=-1)


def filter_min_p(log_probs: Tensor, min_p: float) -> Tensor:
    """Keep the words of normalised ``(..., V)`` log-probs at least ``min_p`` times as likely as the top word.

    The cut scales with the model's confidence: a peaked distribution keeps few words, a flat one
    many (Nguyen et al., 2024, "min-p sampling"). Compared as ``log p >= log p_max + log(min_p)``
    in float64, with :data:`MIN_P_TOLERANCE`. The top word always survives; the result is
    renormalised, ``-inf`` elsewhere. Off (``min_p`` 0): the input itself.
    """
    if min_p <= 0:
        return log_probs
    scores = log_probs.double()
    threshold = scores.amax(dim=-1, keepdim=True) + (math.log(min_p) - MIN_P_TOLERANCE)
    return log_probs.masked_fill(scores < threshold, _NEG_INF).log_softmax(dim=-1)


def penalize_repetition(log_probs: Tensor, seen: Tensor, penalty: float) -> Tensor:
    """Divide the probability of each ``seen`` word by ``penalty`` and renormalise.

    ``seen`` is a bool mask shaped like ``log_probs`` (``(..., V)``). This is CTRL's repetition
    penalty carried over to log-probabilities: CTRL divides positive logits and multiplies negative
    ones by ``penalty``, which depends on where the logits' zero happens to be; subtracting
    ``log(penalty)`` from a seen word's log-prob instead makes ``p(seen) / p(unseen)`` exactly
    ``penalty`` times smaller, whatever the output layer.
    """
    if penalty == 1.0:
        return log_probs
    return (log_probs - math.log(penalty) * seen).log_softmax(dim=-1)


# ---- the protocol and the processors ---------------------------------------------------------


class LogProbsProcessor(Protocol):
    """One stage of choosing a word.

    ``__call__`` maps ``log_probs (B, V)`` and one :class:`History` per row to new normalised
    log-probs ``(B, V)``, without modifying its input. ``name`` labels the stage (for
    :meth:`ProcessorList.stages`); ``stop_ids`` are the words that end the text when chosen
    (decoding stops there instead of writing them).
    """

    @property
    def name(self) -> str: ...

    @property
    def stop_ids(self) -> frozenset[int]: ...

    def __call__(self, log_probs: Tensor, histories: Sequence[History]) -> Tensor: ...


class OptionProcessor:
    """A processor built from one field of ``SamplingOptions``, named by :attr:`option`.

    The constructor takes that field's value and raises :class:`InputError` when it cannot work.
    :attr:`active` is False when the value turns the stage off, so the list leaves it out.
    """

    option: ClassVar[str]

    def __init__(self, value: Any) -> None:
        """Each stage is built from its option's value (and checks it)."""
        raise NotImplementedError

    @property
    def active(self) -> bool:
        return True

    @property
    def name(self) -> str:
        raise NotImplementedError

    @property
    def stop_ids(self) -> frozenset[int]:
        return frozenset()

    def __call__(self, log_probs: Tensor, histories: Sequence[History]) -> Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


def _refuse(problem: str) -> None:
    raise InputError(problem)


class UnknownWordRule(OptionProcessor):
    """What ``<unk>`` (the class of all rare words) may do: ``skip``, ``stop`` or ``allow``.

    ``skip`` removes its mass and renormalises, so it is never written; ``stop`` leaves the
    distribution alone but puts ``<unk>`` in :attr:`stop_ids`, so decoding ends the text where it
    would be chosen (the recipe's rule); ``allow`` writes it like any word.
    """

    option = "unknown"
    RULES: ClassVar[tuple[str, ...]] = ("skip", "stop", "allow")

    def __init__(self, rule: str) -> None:
        if rule not in self.RULES:
            _refuse(
                f"unknown must be one of {', '.join(self.RULES)}; got {rule!r} (skip never writes <unk>, stop ends "
                "the text where it would come, allow writes it)"
            )
        self.rule = rule

    @property
    def active(self) -> bool:
        return self.rule != "allow"

    @property
    def name(self) -> str:
        return f"<unk>: {self.rule}"

    @property
    def stop_ids(self) -> frozenset[int]:
        return frozenset({UNK_INDEX}) if self.rule == "stop" else frozenset()

    def __call__(self, log_probs: Tensor, histories: Sequence[History]) -> Tensor:
        if self.rule != "skip":
            return log_probs
        scores = log_probs.clone()
        scores[..., UNK_INDEX] = _NEG_INF
        return scores.log_softmax(dim=-1)


class RepetitionPenalty(OptionProcessor):
    """Divide the probability of every word already in the text by ``penalty`` (:func:`penalize_repetition`)."""

    option = "repetition_penalty"

    def __init__(self, penalty: float) -> None:
        if not is_finite_number(penalty) or penalty < 1:
            _refuse(
                f"repetition_penalty must be a number of 1 (off) or more, got {penalty!r} (below 1 it would favour "
                "repeats; use more than 1 to discourage them)"
            )
        self.penalty = float(penalty)

    @property
    def active(self) -> bool:
        return self.penalty > 1.0

    @property
    def name(self) -> str:
        return f"repetition penalty {self.penalty:g}"

    def __call__(self, log_probs: Tensor, histories: Sequence[History]) -> Tensor:
        seen = torch.stack([history.seen(log_probs.size(-1)) for history in histories])  # (B, V)
        return penalize_repetition(log_probs, seen, self.penalty)


class NoRepeatNgram(OptionProcessor):
    """Ban every word that would complete an n-gram already in the text (prime included).

    A ban that would leave a row with no word at all (only possible with a tiny vocabulary) is
    lifted for that step rather than ending the text.
    """

    option = "no_repeat_ngram"

    def __init__(self, n: int) -> None:
        if not is_whole_number(n) or n < 0:
            _refuse(f"no_repeat_ngram must be a whole number, 0 (off) or more, got {n!r} (2 forbids repeated pairs)")
        self.n = n

    @property
    def active(self) -> bool:
        return self.n > 0

    @property
    def name(self) -> str:
        return f"no repeated {self.n}-grams"

    def __call__(self, log_probs: Tensor, histories: Sequence[History]) -> Tensor:
        scores = log_probs
        for row, history in enumerate(histories):
            banned = history.ngrams(self.n).banned()
            if not banned:
                continue
            candidate = scores[row].index_fill(0, torch.tensor(sorted(banned)), _NEG_INF)
            if bool(torch.isfinite(candidate).any()):
                if scores is log_probs:
                    scores = scores.clone()
                scores[row] = candidate
        return log_probs if scores is log_probs else scores.log_softmax(dim=-1)


class Temperature(OptionProcessor):
    """Sample from ``p ** (1 / T)`` renormalised (:func:`apply_temperature`; one-hot at or below
    :data:`GREEDY_TEMPERATURE`). Always in a sampling list, at 1 too: it also normalises."""

    option = "temperature"

    def __init__(self, temperature: float) -> None:
        if not is_finite_number(temperature) or temperature <= 0:
            _refuse(
                f"temperature must be a number greater than 0, got {temperature!r} (for the most likely word use "
                f"method 'greedy', or a temperature of {GREEDY_TEMPERATURE:g} or less)"
            )
        self.temperature = float(temperature)

    @property
    def name(self) -> str:
        return f"temperature {self.temperature:g}"

    def __call__(self, log_probs: Tensor, histories: Sequence[History]) -> Tensor:
        return apply_temperature(log_probs, self.temperature)


class TopK(OptionProcessor):
    """Keep the ``k`` most likely words (:func:`filter_top_k`); 0 is off."""

    option = "top_k"

    def __init__(self, k: int) -> None:
        if not is_whole_number(k) or not 0 <= k <= MAX_TOP_K:
            too_many = is_whole_number(k) and k > MAX_TOP_K
            instead = " (for a wider choice use top_p or min_p, which adapt to the distribution)" if too_many else ""
            _refuse(f"top_k must be a whole number from 0 (off) to {MAX_TOP_K:,}, got {k!r}{instead}")
        self.k = k

    @property
    def active(self) -> bool:
        return self.k > 0

    @property
    def name(self) -> str:
        return f"top-k {self.k}"

    def __call__(self, log_probs: Tensor, histories: Sequence[History]) -> Tensor:
        return filter_top_k(log_probs, self.k)


class TopP(OptionProcessor):
    """Keep the smallest most-likely set of words whose mass reaches ``p`` (:func:`filter_top_p`); 1 is off."""

    option = "top_p"

    def __init__(self, p: float) -> None:
        if not is_finite_number(p) or not 0 < p <= 1:
            _refuse(
                f"top_p must be a number in (0, 1] (1 = off), got {p!r} (for the top word only use method 'greedy')"
            )
        self.p = float(p)

    @property
    def active(self) -> bool:
        return self.p < 1.0

    @property
    def name(self) -> str:
        return f"top-p {self.p:g}"

    def __call__(self, log_probs: Tensor, histories: Sequence[History]) -> Tensor:
        return filter_top_p(log_probs, self.p)


class MinP(OptionProcessor):
    """Keep the words at least ``min_p`` times as likely as the top word (:func:`filter_min_p`); 0 is off."""

    option = "min_p"

    def __init__(self, min_p: float) -> None:
        if not is_finite_number(min_p) or not 0 <= min_p <= 1:
            _refuse(f"min_p must be a number in [0, 1] (0 = off), got {min_p!r} (0.05 is a common choice)")
        self.min_p = float(min_p)

    @property
    def active(self) -> bool:
        return self.min_p > 0.0

    @property
    def name(self) -> str:
        return f"min-p {self.min_p:g}"

    def __call__(self, log_probs: Tensor, histories: Sequence[History]) -> Tensor:
        return filter_min_p(log_probs, self.min_p)


PIPELINE: tuple[type[OptionProcessor], ...] = (
    UnknownWordRule,
    RepetitionPenalty,
    NoRepeatNgram,
    Temperature,
    TopK,
    TopP,
    MinP,
)
"""Every processor an option can ask for, in the order they run: word rules, then filters."""


# ---- the list ----------------------------------------------------------------------------------


class ProcessorList(Sequence[LogProbsProcessor]):
    """Processors applied in order: ``ProcessorList(...)(log_probs, histories)``."""

    def __init__(self, processors: Iterable[LogProbsProcessor] = ()) -> None:
        self._processors = tuple(processors)

    @classmethod
    def from_options(cls, options: SamplingOptions) -> ProcessorList:
        """The stages ``options`` asks for, in :data:`PIPELINE` order.

        A field whose metadata names the methods it ``applies_to`` (temperature, top-k, top-p,
        min-p: ``sample``) is left out for the other methods, and stages that are off are left
        out, so greedy decoding with no rule gets an empty list.
        """
        applies_to = {spec.name: spec.metadata.get("applies_to") for spec in dataclasses.fields(options)}
        chosen: list[LogProbsProcessor] = []
        for kind in PIPELINE:
            methods = applies_to[kind.option]
            if methods is not None and options.method not in methods:
                continue
            processor = kind(getattr(options, kind.option))
            if processor.active:
                chosen.append(processor)
        return cls(chosen)

    @overload
    def __getitem__(self, index: int) -> LogProbsProcessor: ...

    @overload
    def __getitem__(self, index: slice) -> ProcessorList: ...

    def __getitem__(self, index: int | slice) -> LogProbsProcessor | ProcessorList:
        if isinstance(index, slice):
            return ProcessorList(self._processors[index])
        return self._processors[index]

    def __len__(self) -> int:
        return len(self._processors)

    def __iter__(self) -> Iterator[LogProbsProcessor]:
        return iter(self._processors)

    def __repr__(self) -> str:
        return f"ProcessorList({list(self._processors)!r})"

    @property
    def stop_ids(self) -> frozenset[int]:
        """The words that end the text when chosen (``<unk>`` under ``unknown='stop'``)."""
        return frozenset().union(*(processor.stop_ids for processor in self._processors))

    def __call__(self, log_probs: Tensor, histories: Sequence[History]) -> Tensor:
        """``log_probs (B, V)`` after every stage; the input itself when the list is empty."""
        assert log_probs.dim() == 2 and log_probs.size(0) == len(histories), "one history per row of (B, V)"
        for processor in self._processors:
            log_probs = processor(log_probs, histories)
        return log_probs

    def stages(self, log_probs: Tensor, histories: Sequence[History]) -> list[tuple[str, Tensor]]:
        """The distribution before and after each stage: ``[("model", input), (name, after), ...]``.

        For a walk-through of one choice (the model's word, then the rules, the temperature, the
        top-k cut, ...): the last entry is exactly what decoding samples from.
        """
        assert log_probs.dim() == 2 and log_probs.size(0) == len(histories), "one history per row of (B, V)"
        out = [("model", log_probs)]
        for processor in self._processors:
            log_probs = processor(log_probs, histories)
            out.append((processor.name, log_probs))
        return out
