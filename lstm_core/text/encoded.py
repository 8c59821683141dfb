"""A cleaned text as ids over its own words, with their counts: numpy only, no torch.

:class:`EncodedText` is what a server keeps of a text (the 826,000 words of the plays take 3.3 MB
instead of about 50 MB as a list of Python strings), it answers the vocabulary questions of the
Data page at once, and every ``min_word_freq`` is one numpy remap away from a
:class:`lstm_core.data.dataset.Dataset` (:func:`lstm_core.data.dataset.prepare_encoded`). It lives
apart from :mod:`lstm_core.data.dataset` so that the pages that only count words (the app's Data
page) never import torch: importing it costs about a second of a fresh server's first page.
"""

from __future__ import annotations

import re
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from lstm_core.text.cleaning import tokenize

_CHUNK_CHARS = 1 << 20
_WHITESPACE = re.compile(r"\s")


def _chunks(text: str, size: int = _CHUNK_CHARS) -> Iterator[str]:
    """``text`` in pieces of about ``size`` characters, each cut at a whitespace character.

    Cleaning treats whitespace as a word boundary and looks at nothing across it, so tokenising
    the pieces one by one gives exactly the words of the whole text, without ever holding all
    of them as strings at once.
    """
    start = 0
    while start < len(text):
        end = start + size
        boundary = _WHITESPACE.search(text, end) if end < len(text) else None
        end = boundary.start() if boundary else len(text)
        yield text[start:end]
        start = end


@dataclass(frozen=True)
class EncodedText:
    """A cleaned text as ids into its own distinct words, most frequent first (ties alphabetical).

    ``ids[i]`` is the ``i``-th word of the text as an index into ``words``; ``counts[j]`` is how
    often ``words[j]`` occurs. Word order is the same rule as :class:`Vocab`'s, so the Data page's
    ranks and the vocabulary agree.
    """

    words: list[str]
    counts: np.ndarray  # (W,) int64, descending
    ids: np.ndarray  # (N,) int32

    @classmethod
    def from_text(cls, text: str) -> EncodedText:
        """Clean and encode a raw text, a piece at a time (see :func:`_chunks`)."""
        return cls.from_parts([text])[0]

    @classmethod
    def from_parts(cls, texts: Iterable[str]) -> tuple[EncodedText, np.ndarray]:
        """Clean and encode texts one after another, as one text, and say where each one's words start.

        Returns the encoding and ``offsets`` (``(P + 1,)`` int64): part ``p``'s words are
        ``ids[offsets[p]:offsets[p + 1]]``. Cleaning looks at nothing across whitespace, so this is
        exactly :meth:`from_text` of the texts joined by whitespace (as
        :func:`lstm_core.text.corpus.bundled_plays` joins plays), with the parts' boundaries kept for
        :meth:`concatenated`.
        """
        index: dict[str, int] = {}
        ids = array("i")
        offsets = [0]
        for text in texts:
            for piece in _chunks(text):
                ids.extend(index.setdefault(word, len(index)) for word in tokenize(piece))
            offsets.append(len(ids))
        encoded = cls._sorted(list(index), np.frombuffer(ids, dtype=np.int32) if ids else np.zeros(0, np.int32))
        return encoded, np.asarray(offsets, dtype=np.int64)

    @classmethod
    def from_tokens(cls, tokens: Sequence[str]) -> EncodedText:
        index: dict[str, int] = {}
        ids = np.fromiter((index.setdefault(word, len(index)) for word in tokens), dtype=np.int32, count=len(tokens))
        return cls._sorted(list(index), ids)

    @classmethod
    def _sorted(cls, first_seen: list[str], ids: np.ndarray) -> EncodedText:
        """Renumber words from first-seen order to most-frequent-first, ties alphabetical."""
        counts = np.bincount(ids, minlength=len(first_seen)).astype(np.int64)
        order = sorted(range(len(first_seen)), key=lambda i: (-counts[i], first_seen[i]))
        new_id = np.empty(len(first_seen), dtype=np.int32)
        new_id[order] = np.arange(len(order), dtype=np.int32)
        return cls([first_seen[i] for i in order], counts[order], new_id[ids] if ids.size else ids)

    def concatenated(self, spans: Sequence[tuple[int, int]]) -> EncodedText:
        """The text made of ``ids[start:end]`` for each span, in order, as its own EncodedText.

        The same as :meth:`from_text` of those pieces' text joined by whitespace (only the words
        that occur in it, renumbered by their counts in it), without cleaning anything again: a
        choice of a few plays is a slice of the encoding of all of them.
        """
        pieces = [self.ids[start:end] for start, end in spans]
        ids = np.concatenate(pieces) if pieces else np.zeros(0, np.int32)
        counts = np.bincount(ids, minlength=len(self.words))
        used = np.flatnonzero(counts)
        order = sorted(used.tolist(), key=lambda i: (-counts[i], self.words[i]))
        new_id = np.zeros(len(self.words), dtype=np.int32)
        new_id[order] = np.arange(len(order), dtype=np.int32)
        return EncodedText([self.words[i] for i in order], counts[order].astype(np.int64), new_id[ids])

    @property
    def tokens(self) -> int:
        return int(self.ids.size)

    @property
    def nbytes(self) -> int:
        """Roughly what this object holds in memory (ids, counts and the distinct words)."""
        return self.ids.nbytes + self.counts.nbytes + sum(49 + len(word) for word in self.words) + 8 * len(self.words)

    def vocabulary_size(self, min_word_freq: int) -> int:
        """Words kept by the "more than min_word_freq" rule over the whole text, plus ``<unk>``."""
        return int(np.count_nonzero(self.counts > min_word_freq)) + 1

    def vocab_counts(self, min_word_freq: int) -> list[int]:
        """Counts in vocabulary order over the whole text: ``<unk>`` (every word not kept) first."""
        kept = self.counts[self.counts > min_word_freq]
        return [int(self.tokens - kept.sum()), *kept.tolist()]

    def unknown_share(self, min_word_freq: int) -> float:
        return float(self.counts[self.counts <= min_word_freq].sum()) / max(1, self.tokens)
