"""Text -> a dataset ready to train on: cleaned words, a vocabulary, and id tensors per split.

:class:`Dataset` is the vocabulary (built from the training block only) and the id tensors of
each split, which the trainer reads. It saves to and loads from a folder of plain files, so a
training process can be handed its data, and a run can always resume on exactly its own data.

A server keeps a text as an :class:`~lstm_core.text.encoded.EncodedText` (ids over its own
distinct words, no torch); :func:`prepare_encoded` turns it into a :class:`Dataset` for any
``min_word_freq`` with one numpy remap, and :func:`prepare` does both for a raw text.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lstm_core.errors import InputError
from lstm_core.files import atomic_write, atomic_write_text
from lstm_core.text.cleaning import split_sizes, split_tokens, tokenize
from lstm_core.text.encoded import EncodedText
from lstm_core.text.vocab import UNK_INDEX, UNK_TOKEN, Coverage, Vocab

__all__ = ["Dataset", "prepare", "prepare_encoded", "prepare_holdout", "prepare_pair"]

DATASET_FORMAT = "lstm-playhouse-dataset"
_SPLITS = ("train", "valid", "test")


def _save_ids(path: Path, ids: np.ndarray) -> None:
    atomic_write(path, lambda file: np.save(file, ids, allow_pickle=False))


@dataclass(frozen=True)
class Dataset:
    """The vocabulary (built from the training words only) and 1-D id tensors for each split."""

    vocab: Vocab
    train: torch.Tensor
    valid: torch.Tensor
    test: torch.Tensor
    name: str = "text"

    def coverage(self, split: str = "train") -> Coverage:
        ids: torch.Tensor = getattr(self, split)
        return Coverage(tokens=ids.numel(), unknown=int((ids == UNK_INDEX).sum()))

    def summary(self) -> str:
        return (
            f"{self.name}: {len(self.vocab):,} words in the vocabulary (min_word_freq {self.vocab.min_word_freq}); "
            f"train {self.train.numel():,} / valid {self.valid.numel():,} / test {self.test.numel():,} tokens; "
            f"{self.coverage('train').unknown_share:.1%} of training tokens are <unk>"
        )

    @property
    def nbytes(self) -> int:
        return sum(getattr(self, split).numel() * 8 for split in _SPLITS)

    def save(self, folder: Path | str) -> Path:
        """Write ``folder/meta.json`` (name, vocabulary) and one ``.npy`` of int32 ids per split.

        Each file is written atomically and ``meta.json`` last, so a folder with ``meta.json``
        is complete.
        """
        folder = Path(folder)
        for split in _SPLITS:
            _save_ids(folder / f"{split}.npy", getattr(self, split).numpy().astype(np.int32))
        meta = {"format": DATASET_FORMAT, "version": 1, "name": self.name, "vocab": self.vocab.to_dict()}
        atomic_write_text(folder / "meta.json", json.dumps(meta, ensure_ascii=False))
        return folder

    @classmethod
    def load(cls, folder: Path | str) -> Dataset:
        """Read a folder written by :meth:`save`; anything missing or inconsistent is an InputError."""
        folder = Path(folder)

        def fail(problem: str) -> InputError:
            return InputError(f"cannot read the dataset in {folder}: {problem}")

        try:
            meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise fail("it has no meta.json (not a saved dataset, or an unfinished one)") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise fail(str(error)) from None
        if not isinstance(meta, dict) or meta.get("format") != DATASET_FORMAT or meta.get("version") != 1:
            raise fail("its meta.json is not a version 1 dataset description")
        try:
            vocab = Vocab.from_dict(meta.get("vocab") or {})
        except ValueError as error:
            raise fail(str(error)) from None
        splits = {}
        for split in _SPLITS:
            try:
                ids = np.load(folder / f"{split}.npy", allow_pickle=False)
            except (OSError, ValueError) as error:
                raise fail(f"{split}.npy: {error}") from None
            if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
                raise fail(f"{split}.npy must hold a 1-D array of integers")
            if ids.size and (int(ids.min()) < 0 or int(ids.max()) >= len(vocab)):
                raise fail(f"{split}.npy holds ids outside the vocabulary of {len(vocab):,} words")
            splits[split] = torch.from_numpy(ids.astype(np.int64))
        return cls(vocab, splits["train"], splits["valid"], splits["test"], str(meta.get("name", "text")))


# ---- one-call preparation ------------------------------------------------------------------


def _ids(vocab: Vocab, tokens: Sequence[str]) -> torch.Tensor:
    return torch.tensor(vocab.encode(tokens), dtype=torch.long)


def prepare(
    text: str | Sequence[str],
    min_word_freq: int = 5,
    fractions: tuple[float, float, float] = (0.9, 0.05, 0.05),
    name: str = "text",
) -> Dataset:
    """Clean one text (or take its words), split it into contiguous blocks, build the vocabulary."""
    encoded = EncodedText.from_text(text) if isinstance(text, str) else EncodedText.from_tokens(list(text))
    return prepare_encoded(encoded, min_word_freq, fractions, name)


def prepare_encoded(
    encoded: EncodedText,
    min_word_freq: int = 5,
    fractions: tuple[float, float, float] = (0.9, 0.05, 0.05),
    name: str = "text",
) -> Dataset:
    """Exactly what :func:`prepare` gives for the text ``encoded`` holds: split, then a vocabulary of
    the training block, without cleaning the text again (a remap of its ids)."""
    if not encoded.tokens:
        raise InputError(f"{name} has no words in it after cleaning")
    if min_word_freq < 0:
        raise InputError(f"min_word_freq must be 0 or more, got {min_word_freq}")
    words, ids = encoded.words, encoded.ids
    n_train, n_valid, _ = split_sizes(encoded.tokens, fractions)
    train_counts = np.bincount(ids[:n_train], minlength=len(words))
    kept = np.flatnonzero(train_counts > min_word_freq)
    # Most frequent in the training block first, ties alphabetical: encoded.words is already
    # alphabetical within equal whole-text counts, so sort by (-train count, alphabetical rank).
    alphabetical = np.empty(len(words), dtype=np.int64)
    alphabetical[sorted(range(len(words)), key=words.__getitem__)] = np.arange(len(words))
    kept = kept[np.lexsort((alphabetical[kept], -train_counts[kept]))]
    mapping = np.zeros(len(words), dtype=np.int64)  # everything else is <unk>
    mapping[kept] = np.arange(1, kept.size + 1)
    unknown = int(n_train - train_counts[kept].sum())
    vocab = Vocab([UNK_TOKEN, *(words[i] for i in kept)], [unknown, *train_counts[kept].tolist()], min_word_freq)
    blocks = (ids[:n_train], ids[n_train : n_train + n_valid], ids[n_train + n_valid :])
    train, valid, test = (torch.from_numpy(mapping[block]) for block in blocks)
    return Dataset(vocab, train, valid, test, name)


def prepare_pair(
    train_text: str | Sequence[str],
    valid_text: str | Sequence[str],
    min_word_freq: int = 5,
    test_text: str | Sequence[str] = (),
    name: str = "text",
) -> Dataset:
    """A dataset from separate training and held-out texts (e.g. some plays held out whole)."""
    train, valid, test = (tokenize(t) if isinstance(t, str) else list(t) for t in (train_text, valid_text, test_text))
    if not train:
        raise InputError("the training text has no words in it after cleaning")
    if not valid:
        raise InputError("the validation text has no words in it after cleaning")
    vocab = Vocab.build(train, min_word_freq)
    return Dataset(vocab, _ids(vocab, train), _ids(vocab, valid), _ids(vocab, test), name)


def prepare_holdout(
    train_text: str | Sequence[str],
    test_text: str | Sequence[str],
    min_word_freq: int = 5,
    valid_fraction: float = 0.05,
    name: str = "text",
) -> Dataset:
    """Train and validate on one text, test on another held out whole (e.g. unseen plays).

    The validation block is the last ``valid_fraction`` of the training text, so model selection
    never looks at the test text, and the vocabulary comes from the training block only.
    """
    tokens = tokenize(train_text) if isinstance(train_text, str) else list(train_text)
    split = split_tokens(tokens, (1.0 - valid_fraction, valid_fraction, 0.0))
    return prepare_pair(split.train, split.valid, min_word_freq, test_text=test_text, name=name)
