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
filters are also plain functions on ``(..., V)`` tensors (:func:`filter_top_k` and friends). What
each stage keeps (its tolerance, its tie order, when a ban is lifted) is decided in
:mod:`lstm_core.sampling.rules`, which the fast path's choice at a cursor follows too.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, overload

import torch
from torch import Tensor

from lstm_core.errors import InputError
from lstm_core.sampling.history import History
from lstm_core.sampling.rules import (
    GREEDY_TEMPERATURE,
    MAX_TOP_K,
    apply_temperature,
    ban_is_lifted,
    below_min_p,
    is_finite_number,
    is_whole_number,
    nucleus_mask,
    top_k_mask,
    valid_min_p,
    valid_temperature,
    valid_top_k,
    valid_top_p,
)
from lstm_core.text.vocab import UNK_INDEX

if TYPE_CHECKING:
    from lstm_core.sampling.options import SamplingOptions

_NEG_INF = float("-inf")


# ---- pure filters on (..., V) log-probabilities ----------------------------------------------


def filter_top_k(log_probs: Tensor, top_k: int) -> Tensor:
    """Keep exactly the ``top_k`` most likely words of normalised ``(..., V)`` log-probs, renormalised.

    ``-inf`` elsewhere; ties at the boundary go to the lower index, so exactly ``k`` words
    survive. Off (``top_k`` 0, or at least ``V``): the input itself is returned.
    """
    if top_k <= 0 or top_k >= log_probs.size(-1):
        return log_probs
    return log_probs.masked_fill(~top_k_mask(log_probs, top_k), _NEG_INF).log_softmax(dim=-1)


def filter_top_p(log_probs: Tensor, top_p: float) -> Tensor:
    """Nucleus filter on normalised ``(..., V)`` log-probs: the smallest most-likely set with mass ``>= top_p``.

    Words are taken in order of probability (ties: lower index first) until the mass of those
    taken is ``>= top_p - TOP_P_TOLERANCE``, summed in float64 (the rule's
    :func:`~lstm_core.sampling.rules.nucleus_mask`). After top-k the input is the renormalised
    top-k distribution, so the mass is relative to those words (as in HF transformers). The most
    likely word always survives. Returns renormalised log-probs, ``-inf`` outside the set; off
    (``top_p`` 1): the input itself.
    """
    if top_p >= 1.0:
        return log_probs
    rows = log_probs.reshape(-1, log_probs.size(-1))
    keep = torch.empty_like(rows, dtype=torch.bool)
    for row, mask in zip(rows, keep, strict=True):
        nucleus_mask(row, top_p, out=mask)
    return log_probs.masked_fill(~keep.view_as(log_probs), _NEG_INF).log_softmax(dim=-1)


def filter_min_p(log_probs: Tensor, min_p: float) -> Tensor:
    """Keep the words of normalised ``(..., V)`` log-probs at least ``min_p`` times as likely as the top word.

    The cut scales with the model's confidence: a peaked distribution keeps few words, a flat one
    many (Nguyen et al., 2024, "min-p sampling"). Compared as ``log p >= log p_max + log(min_p)``
    in float64, with :data:`~lstm_core.sampling.rules.MIN_P_TOLERANCE`. The top word always survives; the result is
    renormalised, ``-inf`` elsewhere. Off (``min_p`` 0): the input itself.
    """
    if min_p <= 0:
        return log_probs
    return log_probs.masked_fill(below_min_p(log_probs, min_p), _NEG_INF).log_softmax(dim=-1)


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
            out = set(torch.nonzero(~torch.isfinite(scores[row])).view(-1).tolist())  # removed already
            if ban_is_lifted(banned, out, scores.size(-1)):
                continue
            if scores is log_probs:
                scores = scores.clone()
            scores[row].index_fill_(0, torch.tensor(sorted(banned)), _NEG_INF)
        return log_probs if scores is log_probs else scores.log_softmax(dim=-1)


class Temperature(OptionProcessor):
    """Sample from ``p ** (1 / T)`` renormalised (:func:`apply_temperature`; one-hot at or below
    :data:`GREEDY_TEMPERATURE`). Always in a sampling list, at 1 too: it also normalises."""

    option = "temperature"

    def __init__(self, temperature: float) -> None:
        if not valid_temperature(temperature):
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
        if not valid_top_k(k):
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
        if not valid_top_p(p):
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
        if not valid_min_p(min_p):
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
