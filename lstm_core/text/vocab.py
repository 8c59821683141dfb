"""Words -> ids: the vocabulary, its unknown word, coverage statistics and a JSON form."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from lstm_core.errors import InputError
from lstm_core.files import atomic_write_text

UNK_TOKEN = "<unk>"
"""The unknown word's token. Cleaning turns ``<`` and ``>`` into spaces, so no cleaned text can
contain it -- unlike the recipe's literal ``unknown``, which is also one of Shakespeare's words."""

UNK_INDEX = 0
_FORMAT = "lstm-playhouse-vocab"


@dataclass(frozen=True)
class Coverage:
    """How much of a token stream the vocabulary covers."""

    tokens: int
    unknown: int

    @property
    def known(self) -> int:
        return self.tokens - self.unknown

    @property
    def unknown_share(self) -> float:
        return self.unknown / self.tokens if self.tokens else 0.0


class Vocab:
    """Index 0 is :data:`UNK_TOKEN`; the other words follow by frequency, most frequent first.

    Words of equal frequency are ordered alphabetically, so the same text always gives the same
    ids. ``counts[i]`` is the training-text frequency of word ``i`` (for ``<unk>``: the number of
    tokens it replaced).
    """

    def __init__(self, words: Sequence[str], counts: Sequence[int] | None = None, min_word_freq: int = 0) -> None:
        if not words or words[0] != UNK_TOKEN:
            raise InputError(f"a vocabulary's first word must be {UNK_TOKEN!r}")
        if len(set(words)) != len(words):
            raise InputError("a vocabulary cannot hold the same word twice")
        if UNK_TOKEN in words[1:]:
            raise InputError(f"{UNK_TOKEN!r} may only be the first word")
        if counts is not None and len(counts) != len(words):
            raise InputError(f"{len(counts)} counts for {len(words)} words")
        self.itos: list[str] = list(words)
        self.stoi: dict[str, int] = {word: i for i, word in enumerate(self.itos)}
        self.counts: list[int] = list(counts) if counts is not None else [0] * len(words)
        self.min_word_freq = min_word_freq

    @classmethod
    def build(cls, tokens: Iterable[str], min_word_freq: int = 5) -> Vocab:
        """Keep the words seen **more than** ``min_word_freq`` times (the recipe's rule).

        With ``min_word_freq=5`` a word seen 6 times is kept and one seen 5 times becomes
        ``<unk>``; ``min_word_freq=0`` keeps every word.
        """
        if min_word_freq < 0:
            raise InputError(f"min_word_freq must be 0 or more, got {min_word_freq}")
        counter = Counter(tokens)
        counter.pop(UNK_TOKEN, None)
        kept = sorted((w for w, n in counter.items() if n > min_word_freq), key=lambda w: (-counter[w], w))
        unknown = sum(n for w, n in counter.items() if n <= min_word_freq)
        return cls([UNK_TOKEN, *kept], [unknown, *(counter[w] for w in kept)], min_word_freq)

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, word: object) -> bool:
        return word in self.stoi

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self.itos == other.itos and self.counts == other.counts

    def __repr__(self) -> str:
        return f"Vocab({len(self)} words, min_word_freq={self.min_word_freq})"

    def index(self, word: str) -> int:
        return self.stoi.get(word, UNK_INDEX)

    def encode(self, tokens: Iterable[str]) -> list[int]:
        get = self.stoi.get
        return [get(token, UNK_INDEX) for token in tokens]

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.itos[i] for i in ids]

    def unknown_words(self, tokens: Iterable[str]) -> list[str]:
        """The tokens that would become ``<unk>``, in order, each once."""
        return list(dict.fromkeys(t for t in tokens if t not in self.stoi))

    def coverage(self, tokens: Iterable[str]) -> Coverage:
        total = unknown = 0
        for token in tokens:
            total += 1
            unknown += token not in self.stoi
        return Coverage(tokens=total, unknown=unknown)

    # ---- plain-data forms (never pickle) -------------------------------------------------

    def to_dict(self) -> dict:
        return {
            "format": _FORMAT,
            "version": 1,
            "min_word_freq": self.min_word_freq,
            "words": self.itos,
            "counts": self.counts,
        }

    @classmethod
    def from_dict(cls, data: dict) -> Vocab:
        if not isinstance(data, dict) or data.get("format") != _FORMAT:
            raise InputError("not a vocabulary (its 'format' field is missing or wrong)")
        if data.get("version") != 1:
            raise InputError(f"unsupported vocabulary version {data.get('version')!r}")
        words, counts = data.get("words"), data.get("counts")
        if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
            raise InputError("the vocabulary's 'words' must be a list of strings")
        if not isinstance(counts, list) or not all(isinstance(n, int) for n in counts):
            raise InputError("the vocabulary's 'counts' must be a list of integers")
        min_word_freq = data.get("min_word_freq", 0)
        if not isinstance(min_word_freq, int) or min_word_freq < 0:
            raise InputError("the vocabulary's 'min_word_freq' must be an integer, 0 or more")
        return cls(words, counts, min_word_freq)

    def save(self, path: Path | str) -> None:
        atomic_write_text(path, json.dumps(self.to_dict(), ensure_ascii=False))

    @classmethod
    def load(cls, path: Path | str) -> Vocab:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls.from_dict(data)
        except FileNotFoundError:
            raise InputError(f"no vocabulary file at {path}") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, ValueError) as error:
            raise InputError(f"cannot read the vocabulary in {path}: {error}") from error
