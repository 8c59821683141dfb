"""Text -> a dataset ready to train on: cleaned words, a vocabulary, and id tensors per split."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from lstm_core.text import split_tokens, tokenize
from lstm_core.vocab import UNK_INDEX, Coverage, Vocab


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


def _ids(vocab: Vocab, tokens: Sequence[str]) -> torch.Tensor:
    return torch.tensor(vocab.encode(tokens), dtype=torch.long)


def prepare(
    text: str | Sequence[str],
    min_word_freq: int = 5,
    fractions: tuple[float, float, float] = (0.9, 0.05, 0.05),
    name: str = "text",
) -> Dataset:
    """Clean one text (or take its words), split it into contiguous blocks, build the vocabulary."""
    tokens = tokenize(text) if isinstance(text, str) else list(text)
    if not tokens:
        raise ValueError(f"{name} has no words in it after cleaning")
    split = split_tokens(tokens, fractions)
    vocab = Vocab.build(split.train, min_word_freq)
    return Dataset(vocab, _ids(vocab, split.train), _ids(vocab, split.valid), _ids(vocab, split.test), name)


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
        raise ValueError("the training text has no words in it after cleaning")
    if not valid:
        raise ValueError("the validation text has no words in it after cleaning")
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
