"""The tables behind the Kneser-Ney models of :mod:`lstm_core.evaluation.ngram`: n-grams counted once, discounted.

Notation as there: ``V`` is the vocabulary size, ``k`` the length of an n-gram, ``a_k`` its count
(raw at a model's top length, the continuation count below it), ``D1, D2, D3+`` the discounts of
its length.

Storage. Counting is vectorised with numpy rather than done in Python dicts: on the plays' 0.74
million training words a 5-gram fits in 0.4 s instead of 5.4 s, and its process grows by 116 MB at
the peak instead of 544 MB (one thread, measured against the dict version this replaced).

Every distinct k-gram gets an index, its rank among the distinct k-grams; a k-gram's *key* is
``index(its first k - 1 words) * V + its last word``, an int64 even when ``V**5`` is not (it is
not for the plays' 7,025 words). Sorted keys group the n-grams of one context together and sort them by word, so each
length is a compressed table (CSR) over its contexts::

    level k:  keys     (n_k,)          int64, strictly increasing: context index * V + word
              offsets  (n_{k-1} + 1,)  the n-grams of context c are keys[offsets[c]:offsets[c + 1]]
              alpha    (n_k,)          max(a_k - D, 0) / A_k(h), each n-gram's own share
              gamma    (n_{k-1},)      each context's back-off weight; 1 for one with no followers

where ``n_k`` is the number of distinct k-grams (``n_0 = 1``, the empty context). A context with
no followers (only the stream's last (k-1)-gram can be one) has ``gamma = 1`` and no ``alpha``,
so ``p_k = p_{k-1}`` exactly: the same as backing off. The arithmetic is done in the same order
as the formulas of :mod:`lstm_core.evaluation.ngram`, so the probabilities are those of a direct
implementation to the last bit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from lstm_core.errors import InputError

MAX_KEY = 2**62
"""A key, context index * V + word, must stay far from int64's limit."""


def modified_discounts(count_of_counts: Sequence[int]) -> tuple[float, float, float]:
    """``(D1, D2, D3+)`` from the count-of-counts ``(n1, n2, n3, n4)`` of one n-gram length.

    Chen & Goodman's estimates, ``D_r = r - (r + 1) Y n_{r+1} / n_r`` with
    ``Y = n1 / (n1 + 2 n2)``. A value that is undefined (``n_r = 0``) or outside ``(0, r)``
    (which happens when ``n_{r+1} = 0``, or when the counts are far from Zipf-like) is replaced
    by ``Y``; ``Y`` itself is ``0.5`` when ``n1 = 0``. All three results lie in ``(0, r]``.

    >>> modified_discounts((4, 2, 1, 1))
    (0.5, 1.25, 1.0)
    """
    if len(count_of_counts) != 4 or any(n < 0 for n in count_of_counts):
        raise InputError(f"expected four non-negative counts (n1, n2, n3, n4), got {tuple(count_of_counts)}")
    n = (0, *(int(c) for c in count_of_counts))  # n[r] = number of n-grams seen exactly r times
    y = n[1] / (n[1] + 2 * n[2]) if n[1] > 0 else 0.5
    discounts = []
    for r in (1, 2, 3):
        estimate = r - (r + 1) * y * n[r + 1] / n[r] if n[r] > 0 else math.nan
        discounts.append(estimate if 0.0 < estimate < r else y)  # nan fails the test too
    return discounts[0], discounts[1], discounts[2]


def as_ids(ids: object, what: str = "ids") -> np.ndarray:
    """A 1-D int64 array from a list, a numpy array or a (CPU or GPU) tensor of word ids."""
    if isinstance(ids, torch.Tensor):
        array = ids.detach().cpu().numpy()
    else:
        try:
            array = np.asarray(ids)
        except (TypeError, ValueError) as error:
            raise InputError(f"{what} must be a sequence of integer word ids: {error}") from None
    if array.ndim != 1:
        raise InputError(f"{what} must be one-dimensional, got shape {tuple(array.shape)}")
    if array.size == 0:
        return np.zeros(0, dtype=np.int64)
    if array.dtype.kind not in "iu":
        raise InputError(f"{what} must be integer word ids, got {array.dtype}")
    return array.astype(np.int64, copy=False)


def check_range(ids: np.ndarray, vocab_size: int, what: str) -> None:
    if ids.size and (int(ids.min()) < 0 or int(ids.max()) >= vocab_size):
        raise InputError(f"{what} must lie in 0..{vocab_size - 1}, got {int(ids.min())}..{int(ids.max())}")


def lookup(keys: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Position of each query in the sorted ``keys``, or -1 where it is missing."""
    if keys.size == 0:
        return np.full(queries.shape, -1, dtype=np.int64)
    positions = np.minimum(np.searchsorted(keys, queries), keys.size - 1)
    return np.where(keys[positions] == queries, positions, -1)


def _segment_sums(values: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Integer sum of ``values[offsets[c]:offsets[c + 1]]`` for every segment ``c`` (empty ones: 0)."""
    running = np.zeros(values.size + 1, dtype=np.int64)
    np.cumsum(values, out=running[1:])
    return running[offsets[1:]] - running[offsets[:-1]]


@dataclass(frozen=True)
class Level:
    """The n-grams of one length ``k`` of a fitted model (shapes in the module docstring)."""

    keys: np.ndarray
    offsets: np.ndarray
    counts: np.ndarray  # a_k, kept so that the model can be saved and rebuilt exactly
    alpha: np.ndarray
    gamma: np.ndarray
    count_of_counts: tuple[int, int, int, int]
    discounts: tuple[float, float, float]

    @classmethod
    def build(cls, keys: np.ndarray, counts: np.ndarray, contexts: int, vocab_size: int) -> Level:
        """Discounts, ``alpha`` and ``gamma`` from the sorted keys and their counts ``a_k``."""
        offsets = np.searchsorted(keys, np.arange(contexts + 1, dtype=np.int64) * vocab_size)
        by_count = np.bincount(np.minimum(counts, 5), minlength=6)
        count_of_counts = (int(by_count[1]), int(by_count[2]), int(by_count[3]), int(by_count[4]))
        d1, d2, d3 = modified_discounts(count_of_counts)
        count_class = np.minimum(counts, 3)  # 1, 2 or 3 (for 3+)
        total = _segment_sums(counts, offsets)  # A_k(h)
        n1, n2, n3 = (_segment_sums(count_class == r, offsets) for r in (1, 2, 3))
        with np.errstate(divide="ignore", invalid="ignore"):
            gamma = np.where(total > 0, (d1 * n1 + d2 * n2 + d3 * n3) / total, 1.0)
        own_total = np.repeat(total, np.diff(offsets))  # A_k(h) of each n-gram's context
        alpha = (counts - np.array([0.0, d1, d2, d3])[count_class]) / own_total
        return cls(keys, offsets, counts, alpha, gamma, count_of_counts, (d1, d2, d3))

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.keys, self.offsets, self.counts, self.alpha, self.gamma))


class NGramCounts:
    """Every distinct n-gram of one training stream up to ``max_order`` words, counted once.

    ``keys[k]`` (sorted, distinct k-grams, keyed as in the module docstring), ``raw[k]`` (their
    counts) and, below ``max_order``, ``continuation[k]`` (distinct words before each). One count
    serves models of every order up to ``max_order``; they share the arrays of their common
    levels, since level ``k < N`` of an order-``N`` model does not depend on ``N``.
    """

    def __init__(self, stream: np.ndarray, vocab_size: int, max_order: int) -> None:
        self.vocab_size = vocab_size
        length = stream.size
        self.keys: dict[int, np.ndarray] = {}
        self.raw: dict[int, np.ndarray] = {}
        self.continuation: dict[int, np.ndarray] = {}
        self._levels: dict[tuple[int, bool], Level] = {}
        parent = np.zeros(length, dtype=np.int64)  # index of the (k-1)-gram starting at each position
        first: dict[int, np.ndarray] = {}
        inverse: dict[int, np.ndarray] = {}
        for k in range(1, max_order + 1):
            windows = max(length - k + 1, 0)
            keys = parent[:windows] * vocab_size + stream[k - 1 :]
            self.keys[k], first[k], inverse[k], self.raw[k] = np.unique(
                keys, return_index=True, return_inverse=True, return_counts=True
            )
            parent = inverse[k]
        for k in range(1, max_order):
            # Each distinct (k+1)-gram, found at position p, adds one to its suffix: the k-gram at p + 1.
            suffixes = inverse[k][first[k + 1] + 1]
            counts = np.bincount(suffixes, minlength=self.keys[k].size)
            if inverse[k].size:
                counts[inverse[k][0]] += 1  # the stream's first k-gram follows the virtual boundary
            self.continuation[k] = counts

    def level(self, k: int, top: bool) -> Level:
        """Level ``k`` as the top level of a model (raw counts) or below it (continuation counts)."""
        if (k, top) not in self._levels:
            counts = self.raw[k] if top else self.continuation[k]
            contexts = self.keys[k - 1].size if k > 1 else 1
            self._levels[k, top] = Level.build(self.keys[k], counts, contexts, self.vocab_size)
        return self._levels[k, top]
