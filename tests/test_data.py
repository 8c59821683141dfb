"""Text -> dataset (lstm_core.data.dataset): split first, vocabulary from the training block only."""

from __future__ import annotations

import pytest
import torch

from lstm_core.data.dataset import Dataset, prepare, prepare_pair
from lstm_core.text.vocab import UNK_INDEX, UNK_TOKEN

# 100 words: 90 of training text (o / thee / sweet), then 5 of validation with "zebra" in the
# middle, then 5 of test with "yak". Neither animal occurs in the training block.
_TRAIN = ["o", "thee", "sweet"] * 30
_VALID = ["o", "thee", "zebra", "sweet", "o"]
_TEST = ["thee", "yak", "o", "sweet", "thee"]


def test_vocabulary_comes_from_the_training_block_only() -> None:
    dataset = prepare(_TRAIN + _VALID + _TEST, min_word_freq=0, fractions=(0.9, 0.05, 0.05))
    assert "zebra" not in dataset.vocab and "yak" not in dataset.vocab
    assert dataset.vocab.itos == [UNK_TOKEN, "o", "sweet", "thee"]
    assert dataset.valid.tolist() == dataset.vocab.encode(_VALID)
    assert dataset.valid[2].item() == UNK_INDEX
    assert dataset.test[1].item() == UNK_INDEX
    assert (dataset.train != UNK_INDEX).all()
    assert dataset.coverage("train").unknown == 0
    assert dataset.coverage("valid").unknown == 1


def test_split_sizes_and_order() -> None:
    tokens = [f"w{i % 7}" for i in range(200)]
    dataset = prepare(tokens, min_word_freq=0, fractions=(0.8, 0.15, 0.05))
    assert (dataset.train.numel(), dataset.valid.numel(), dataset.test.numel()) == (160, 30, 10)
    assert dataset.vocab.decode(torch.cat([dataset.train, dataset.valid, dataset.test]).tolist()) == tokens
    assert all(t.dtype == torch.long and t.dim() == 1 for t in (dataset.train, dataset.valid, dataset.test))


def test_prepare_cleans_a_string() -> None:
    text = "This is sweet sorrow,\nthey would--'tis so. " * 20
    dataset = prepare(text, min_word_freq=0, fractions=(1.0, 0.0, 0.0), name="tiny")
    assert set(dataset.vocab.itos) == {UNK_TOKEN, "this", "is", "sweet", "sorrow", "they", "would", "'tis", "so"}
    assert dataset.train.numel() == 8 * 20
    assert dataset.valid.numel() == 0 and dataset.test.numel() == 0
    assert dataset.name == "tiny"


def test_min_word_freq_is_applied_to_the_training_counts() -> None:
    # "rare" appears 2 times in training and 3 more times in validation: still unknown.
    tokens = ["common"] * 6 + ["rare"] * 2 + ["common"] * 2 + ["rare"] * 3
    dataset = prepare(tokens, min_word_freq=2, fractions=(10 / 13, 3 / 13, 0.0))
    assert "rare" not in dataset.vocab
    assert dataset.valid.tolist() == [UNK_INDEX] * 3
    assert dataset.coverage("train").unknown == 2


def test_empty_text_is_refused() -> None:
    with pytest.raises(ValueError, match="my upload has no words in it after cleaning"):
        prepare("?! -- ...", name="my upload")
    with pytest.raises(ValueError, match="no words"):
        prepare([])


def test_summary_mentions_the_sizes() -> None:
    dataset = prepare(_TRAIN + _VALID + _TEST, min_word_freq=0, name="plays")
    summary = dataset.summary()
    assert summary.startswith("plays: 4 words in the vocabulary (min_word_freq 0)")
    assert "train 90 / valid 5 / test 5 tokens" in summary
    assert "0.0% of training tokens are <unk>" in summary


def test_prepare_pair_builds_the_vocabulary_from_the_training_text() -> None:
    dataset = prepare_pair("O thee, sweet thee. O!", "O zebra thee", min_word_freq=0, test_text=["yak", "o"])
    assert isinstance(dataset, Dataset)
    assert dataset.vocab.itos == [UNK_TOKEN, "o", "thee", "sweet"]
    assert dataset.train.tolist() == [1, 2, 3, 2, 1]
    assert dataset.valid.tolist() == [1, UNK_INDEX, 2]
    assert dataset.test.tolist() == [UNK_INDEX, 1]


def test_prepare_pair_test_text_defaults_to_empty() -> None:
    dataset = prepare_pair(["a", "b"], ["a"], min_word_freq=0)
    assert dataset.test.numel() == 0
    assert dataset.test.dtype == torch.long


def test_prepare_pair_refuses_empty_parts() -> None:
    with pytest.raises(ValueError, match="training text"):
        prepare_pair("...", "some words")
    with pytest.raises(ValueError, match="validation text"):
        prepare_pair("some words", "")
