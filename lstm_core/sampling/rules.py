"""The sampling rules, each written once: what temperature, top-k, top-p and min-p keep, how a draw picks a word.

Two ways of choosing a word follow these rules. The processors
(:mod:`lstm_core.sampling.processors`) apply them to a whole ``(B, V)`` distribution; the fast
path (:mod:`lstm_core.sampling.fast_choice`) applies them at a cursor, computing only the words
that can matter. Both call the functions here, so a fix made here is made for both; where the
fast path computes a rule in other arithmetic (a few Python floats for a top-k set), it uses the
same pieces (the tolerances, the tie order, the cut, the draw) and a test compares the two.

    temperature   p ** (1 / T); at or below GREEDY_TEMPERATURE all mass on the most likely word
    top-k         the k most likely words; ties to the lower index
    top-p         the fewest most likely words whose mass reaches top_p (TOP_P_TOLERANCE);
                  the search sorts the best 64 words, then 512, then all: never the same twice
    min-p         the words at least min_p times as likely as the top word (MIN_P_TOLERANCE)
    the draw      one float64 uniform, mapped through the cumulative mass in vocabulary order
    a word ban    lifted when it would leave no word at all

A leaf module: it imports torch, math and the standard library only, so any module can use it.
Shapes: ``V`` vocabulary size; ``(..., V)`` any number of rows of log-probs.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Sequence, Set
from typing import TypeGuard

import torch
from torch import Tensor

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

NUCLEUS_LOOKS = (64, 512)
"""How many of the best words the nucleus search sorts first, and next; after those, all of them.

A peaked distribution reaches ``top_p`` within the first 64 words, so sorting all ``V`` would be
wasted; each size is tried at most once, so the search ends after three looks at most."""

_NEG_INF = float("-inf")


# ---- the values an option may take -------------------------------------------------------------


def is_whole_number(value: object) -> TypeGuard[int]:
    """An ``int`` that is not a ``bool`` (``True`` is no count of words)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_finite_number(value: object) -> TypeGuard[int | float]:
    """An ``int`` or ``float``, not a ``bool``, neither infinite nor NaN."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def valid_temperature(value: object) -> bool:
    """A number greater than 0 (at or below :data:`GREEDY_TEMPERATURE` sampling is greedy)."""
    return is_finite_number(value) and value > 0


def valid_top_k(value: object) -> bool:
    """A whole number from 0 (off) to :data:`MAX_TOP_K`."""
    return is_whole_number(value) and 0 <= value <= MAX_TOP_K


def valid_top_p(value: object) -> bool:
    """A number in ``(0, 1]`` (1 is off)."""
    return is_finite_number(value) and 0 < value <= 1


def valid_min_p(value: object) -> bool:
    """A number in ``[0, 1]`` (0 is off)."""
    return is_finite_number(value) and 0 <= value <= 1


# ---- temperature -------------------------------------------------------------------------------


def is_greedy(temperature: float) -> bool:
    """Whether sampling at ``temperature`` is the argmax (the limit of ``p ** (1 / T)`` as ``T -> 0``)."""
    return temperature <= GREEDY_TEMPERATURE


def apply_temperature(log_probs: Tensor, temperature: float) -> Tensor:
    """``(..., V)`` -> normalised log-probs of ``p ** (1 / T)``.

    At ``T <= GREEDY_TEMPERATURE`` the result is one-hot on the argmax (the first one on ties):
    dividing by a tiny ``T`` would turn differences into infinities and NaNs.
    """
    if is_greedy(temperature):
        best = log_probs.argmax(dim=-1, keepdim=True)
        return torch.full_like(log_probs, _NEG_INF).scatter_(-1, best, 0.0)
    scores = log_probs if temperature == 1.0 else log_probs / temperature
    return scores.log_softmax(dim=-1)


# ---- top-k: the order of the words, ties to the lower index -------------------------------------


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


def top_k_mask(log_probs: Tensor, top_k: int) -> Tensor:
    """Which words of ``log_probs (..., V)`` are among each row's ``top_k`` most likely: bool ``(..., V)``.

    Exactly ``top_k`` per row (every word when ``top_k >= V``): ties at the boundary go to the
    lower index. Needs ``top_k >= 1``.
    """
    if top_k >= log_probs.size(-1):
        return torch.ones_like(log_probs, dtype=torch.bool)
    boundary = torch.topk(log_probs, top_k, dim=-1, sorted=False).values.amin(dim=-1, keepdim=True)
    keep = log_probs >= boundary  # (..., V)
    if bool((keep.sum(dim=-1) > top_k).any()):  # ties at the boundary: only the lower indices may stay
        rows = log_probs.reshape(-1, log_probs.size(-1))
        keep = torch.zeros_like(rows, dtype=torch.bool)
        for row, mask in zip(rows, keep, strict=True):
            mask[descending_order(row, top_k)] = True
        keep = keep.view_as(log_probs)
    return keep


def ranked(values: Sequence[float], positions: Sequence[int]) -> list[int]:
    """The places ``0..n-1`` of ``values`` in top-k order: highest value first, ties to the lower position.

    :func:`descending_order` for a few Python floats, ``values[i]`` standing at ``positions[i]``.
    """
    return sorted(range(len(values)), key=lambda place: (-values[place], positions[place]))


# ---- top-p: the nucleus ------------------------------------------------------------------------


def nucleus_limit(top_p: float) -> float:
    """A word joins the nucleus while the mass of the words ranked above it is below this share."""
    return top_p - TOP_P_TOLERANCE


def _wider_look(count: int, finite: int, mass: float, smallest: float, top_p: float) -> int:
    """How many words the nucleus search sorts next, after ``count`` were not enough: always more.

    Each word beyond the ``count``-th has at most the ``count``-th's mass (``smallest``), so
    reaching ``top_p`` from ``mass`` takes at least ``at_least`` words; when that is beyond the
    second look (or that look was taken), straight to all ``finite`` words. Always more than
    ``count`` (which is below ``finite`` here), so the search ends.
    """
    at_least = count + (top_p - mass - smallest) / smallest if smallest > 0 else math.inf
    second = NUCLEUS_LOOKS[1]
    wider = second if count < second and at_least <= second else finite
    assert count < min(wider, finite), "internal error: the nucleus search must widen"
    return min(wider, finite)


def nucleus_size(log_probs: Tensor, top_p: float) -> tuple[int, Tensor]:
    """How many words the top-p set of one normalised row ``(V,)`` holds, and the last one's log-prob ``()``.

    The most likely words are taken while the mass of those already taken (summed in float64)
    is below :func:`nucleus_limit`; at least one. Only the sorted *values* are needed: tied words
    have equal mass, so their order does not change the running sums. The search sorts the best
    :data:`NUCLEUS_LOOKS` words and widens only when those fall short, never to a size it tried,
    so it ends for every distribution (a nucleus of exactly 512 words once sent a copy of this
    search looking at 512 for ever).
    """
    finite = int(torch.isfinite(log_probs).sum())
    limit = nucleus_limit(top_p)
    count = min(NUCLEUS_LOOKS[0], finite)
    while True:
        values = torch.topk(log_probs, count).values  # highest first
        probs = values.double().exp()
        mass_before = probs.cumsum(dim=0) - probs  # mass of the words ranked above each one
        inside = max(1, int((mass_before < limit).sum()))  # a prefix: mass_before only grows
        if inside < count or count >= finite:
            return inside, values[inside - 1]
        count = _wider_look(count, finite, float(mass_before[-1]), float(probs[-1]), top_p)


def nucleus_mask(log_probs: Tensor, top_p: float, out: Tensor | None = None) -> Tensor:
    """Which words of one normalised row ``(V,)`` are in its top-p set: bool ``(V,)`` (into ``out`` if given).

    Every word more likely than the last one taken, and of the words tied with that one, those
    of lowest index, so that the set holds exactly :func:`nucleus_size` words.
    """
    size, last = nucleus_size(log_probs, top_p)
    keep = torch.gt(log_probs, last, out=out) if out is not None else torch.gt(log_probs, last)
    tied = log_probs == last
    missing = size - int(keep.sum())
    if int(tied.sum()) == missing:  # every word tied with the last one (usually just itself)
        keep |= tied
    else:  # only the lowest-index ones of those
        keep[torch.nonzero(tied).view(-1)[:missing]] = True
    return keep


def nucleus_count(masses: Sequence[float], top_p: float) -> int:
    """How many of ``masses`` (unnormalised, highest first) the top-p set takes: :func:`nucleus_size` in floats.

    For a few Python floats (a top-k set), where tensor operations cost more than the sums: the
    same rule, the words taken while the mass before each is below :func:`nucleus_limit` of the
    total, at least one.
    """
    limit = nucleus_limit(top_p) * sum(masses)
    count, before = 0, 0.0
    for mass in masses:
        if before >= limit:
            break
        count += 1
        before += mass
    return max(1, count)


# ---- min-p -------------------------------------------------------------------------------------


def min_p_cut(min_p: float) -> float:
    """The lowest log-ratio to the top word's probability with which a word stays under ``min_p > 0``."""
    return math.log(min_p) - MIN_P_TOLERANCE


def below_min_p(log_probs: Tensor, min_p: float) -> Tensor:
    """Which words of ``log_probs (..., V)`` min-p removes: bool ``(..., V)``, compared in float64.

    The words less than ``min_p`` times as likely as their row's top word (Nguyen et al., 2024,
    "min-p sampling"), within :data:`MIN_P_TOLERANCE`. The top word always stays. Needs
    ``min_p > 0``.
    """
    scores = log_probs.double()
    return scores < scores.amax(dim=-1, keepdim=True) + min_p_cut(min_p)


# ---- the draw ----------------------------------------------------------------------------------


def uniform(generator: torch.Generator) -> Tensor:
    """The one random number a draw takes from ``generator``: ``(1,)`` float64 in ``[0, 1)``, on the CPU.

    Every sampled word takes exactly one, whatever the filters (a greedy one too), so a seed
    gives the same words on every path.
    """
    return torch.rand(1, dtype=torch.float64, generator=generator)


def draw_index(probs: Tensor, generator: torch.Generator, cumulative: Tensor | None = None) -> int:
    """One position of ``probs (n,)`` (float64, unnormalised) drawn with one :func:`uniform`.

    The uniform, scaled by the total mass, lands in the cumulative distribution summed in
    position order: the first position whose cumulative mass exceeds it
    (``searchsorted(right=True)``), which has positive mass. ``torch.multinomial`` would draw an
    exponential variate for every word instead, ten times the cost for 7,000 words. If rounding
    takes the draw to the total itself, the last position of positive mass. ``cumulative`` is an
    ``(n,)`` float64 buffer to sum into (a new tensor when None).
    """
    cumulative = torch.cumsum(probs, 0, out=cumulative) if cumulative is not None else probs.cumsum(0)
    draw = uniform(generator).to(cumulative.device) * cumulative[-1]
    index = int(torch.searchsorted(cumulative, draw, right=True))
    if index >= probs.numel():  # the draw rounded up to the total mass: the last possible word
        index = int(torch.nonzero(probs)[-1])
    return index


def draw_from_masses(masses: Sequence[float], generator: torch.Generator) -> int:
    """:func:`draw_index` for a few Python floats: the same uniform, sums and landing place."""
    cumulative = list(itertools.accumulate(masses))
    draw = float(uniform(generator)) * cumulative[-1]
    index = bisect.bisect_right(cumulative, draw)
    if index >= len(masses):  # the draw rounded up to the total mass: the last possible word
        index = max(place for place, mass in enumerate(masses) if mass > 0)
    return index


# ---- word bans ---------------------------------------------------------------------------------


def ban_is_lifted(ban: Set[int], out: Set[int], vocab_size: int) -> bool:
    """Whether banning the words ``ban`` is lifted for this step: with ``out`` (words already
    removed) it would leave none of the ``vocab_size`` words, and a text must go on."""
    return len(ban | out) >= vocab_size
