"""What the word rules need to know about the text so far: its ids, the words seen, its n-grams.

A :class:`History` is one text (prime + words generated): decoding keeps one per row (one per
beam) and appends each chosen word. The views the rules read -- the seen-word mask for the
repetition penalty, an :class:`NgramIndex` for no-repeat n-grams -- are built the first time a
rule asks and kept up to date after, so a text whose rules need neither costs one list append
per word.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import Tensor


class NgramIndex:
    """The words that would complete an n-gram already present in a growing id sequence.

    ``append`` is O(n), so generation stays linear in its length. With ``n == 1`` every word
    seen so far is banned; with ``n == 0`` nothing is.
    """

    def __init__(self, n: int, ids: Sequence[int] = ()) -> None:
        self.n = n
        self.ids: list[int] = []
        self._next: dict[tuple[int, ...], set[int]] = {}
        for index in ids:
            self.append(index)

    def append(self, index: int) -> None:
        self.ids.append(index)
        if self.n > 0 and len(self.ids) >= self.n:
            self._next.setdefault(tuple(self.ids[len(self.ids) - self.n : -1]), set()).add(index)

    def banned(self) -> set[int]:
        """Ids that would repeat an n-gram if they came next."""
        if self.n == 0 or len(self.ids) < self.n - 1:
            return set()
        return self._next.get(tuple(self.ids[len(self.ids) - self.n + 1 :]), set())

    def copy(self) -> NgramIndex:
        twin = NgramIndex(0)
        twin.n, twin.ids = self.n, list(self.ids)
        twin._next = {key: set(value) for key, value in self._next.items()}
        return twin


def banned_ngram_words(ids: Sequence[int], n: int) -> set[int]:
    """Ids that would complete an n-gram already in ``ids`` (pure helper over :class:`NgramIndex`)."""
    return NgramIndex(n, ids).banned()


class History:
    """The ids of one text so far, and the views of them the word rules ask for.

    Not thread-safe: each generation (and each beam) has its own; :meth:`copy` gives a beam's
    successor its own.
    """

    def __init__(self, ids: Iterable[int] = ()) -> None:
        self.ids: list[int] = list(ids)
        self._seen: Tensor | None = None
        self._ngrams: dict[int, NgramIndex] = {}

    def append(self, index: int) -> History:
        """Add one word; returns ``self``, so ``history.copy().append(word)`` reads as one step."""
        self.ids.append(index)
        if self._seen is not None:
            self._seen[index] = True
        for index_of_n in self._ngrams.values():
            index_of_n.append(index)
        return self

    def seen(self, vocab_size: int) -> Tensor:
        """A ``(V,)`` bool mask of the words in the text (shared: read it, do not change it)."""
        if self._seen is None:
            self._seen = torch.zeros(vocab_size, dtype=torch.bool)
            if self.ids:
                self._seen[self.ids] = True
        assert self._seen.numel() == vocab_size, "internal error: one history read with two vocabulary sizes"
        return self._seen

    def ngrams(self, n: int) -> NgramIndex:
        """The text's :class:`NgramIndex` for n-grams of size ``n``."""
        if n not in self._ngrams:
            self._ngrams[n] = NgramIndex(n, self.ids)
        return self._ngrams[n]

    def copy(self) -> History:
        twin = History(self.ids)
        twin._seen = None if self._seen is None else self._seen.clone()
        twin._ngrams = {n: index.copy() for n, index in self._ngrams.items()}
        return twin
