"""The baselines of the perplexity chart: uniform, unigram and Kneser-Ney n-grams on a dataset."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from lstm_core.data.dataset import prepare, prepare_pair
from lstm_core.errors import InputError
from lstm_core.evaluation.baselines import (
    DEFAULT_ORDERS,
    Baseline,
    baseline_label,
    baseline_name,
    baseline_perplexities,
    fit_baselines,
    score_baselines,
)
from lstm_core.evaluation.ngram import KneserNey
from lstm_core.text.vocab import UNK_INDEX

TEXT = (
    "to be or not to be that is the question whether tis nobler in the mind to suffer "
    "the slings and arrows of outrageous fortune or to take arms against a sea of troubles "
) * 30


@pytest.fixture(scope="module")
def dataset():
    return prepare(TEXT, min_word_freq=0, fractions=(0.8, 0.1, 0.1), name="hamlet")


def test_every_baseline_is_fitted_on_train_and_scored_on_valid(dataset) -> None:
    baselines = baseline_perplexities(dataset, orders=(0, 1, 2, 3, 5))
    assert [b.order for b in baselines] == [0, 1, 2, 3, 5]
    assert [b.name for b in baselines] == ["uniform", "unigram", "bigram", "trigram", "5-gram"]
    vocab_size = len(dataset.vocab)
    for baseline in baselines:
        # As the LSTM's evaluation counts: every validation token after the first is scored.
        assert baseline.tokens == dataset.valid.numel() - 1
        model = KneserNey(baseline.order).fit(dataset.train, vocab_size)
        assert baseline.perplexity == pytest.approx(model.perplexity(dataset.valid), rel=1e-12)
    assert baselines[0].perplexity == pytest.approx(vocab_size, rel=1e-12)
    # A repeated text: more context predicts it better, and the 5-gram nearly knows it by heart.
    perplexities = [b.perplexity for b in baselines]
    assert perplexities == sorted(perplexities, reverse=True)
    assert baselines[-1].perplexity < 1.5


def test_the_default_orders(dataset) -> None:
    assert DEFAULT_ORDERS == (0, 1, 2, 5)
    assert [b.label for b in baseline_perplexities(dataset)] == [
        "uniform",
        "unigram",
        "bigram (Kneser-Ney)",
        "5-gram (Kneser-Ney)",
    ]
    assert [baseline_name(order) for order in range(6)] == [
        "uniform",
        "unigram",
        "bigram",
        "trigram",
        "4-gram",
        "5-gram",
    ]
    assert baseline_label(3) == "trigram (Kneser-Ney)"


def test_unknown_words_get_a_finite_probability_when_none_were_replaced() -> None:
    # min_word_freq 0 keeps every training word, so <unk> never occurs in training (count 0),
    # but a validation word unseen in training becomes <unk> and must still be scorable.
    data = prepare_pair("a b a c a b a b c a " * 4, "a b zebra a c", min_word_freq=0)
    assert int((data.train == UNK_INDEX).sum()) == 0
    assert int((data.valid == UNK_INDEX).sum()) == 1
    unigram = fit_baselines(data.train, len(data.vocab), orders=(1,))[1]
    counts = np.bincount(data.train.numpy(), minlength=len(data.vocab))
    # Counts a: 20, b: 12, c: 8 (total 40); n1..n4 are all 0, so every discount is 0.5 and the
    # freed mass 3 * 0.5 / 40 is spread over the 4 words: p(<unk>) = 1.5 / 40 / 4 = 3/320.
    assert counts.tolist() == [0, 20, 12, 8]
    assert unigram.prob([], UNK_INDEX) == pytest.approx(3 / 320, abs=1e-15)
    assert unigram.prob([], 1) == pytest.approx(19.5 / 40 + 3 / 320, abs=1e-15)
    for baseline in score_baselines(fit_baselines(data.train, len(data.vocab), (0, 1, 2, 5)), data.valid):
        assert math.isfinite(baseline.perplexity)


def test_score_baselines_accepts_any_id_stream(dataset) -> None:
    models = fit_baselines(dataset.train, len(dataset.vocab), orders=(2,))
    as_tensor = score_baselines(models, dataset.valid)
    as_list = score_baselines(models, dataset.valid.tolist())
    assert as_tensor == as_list
    with pytest.raises(InputError, match="at least 2"):
        score_baselines(models, torch.tensor([3]))


@pytest.mark.parametrize("orders", [(), (6,), (-1,), (2, 2), (True,), (1.0,)])
def test_bad_orders_are_refused(dataset, orders) -> None:
    with pytest.raises(InputError, match="order"):
        baseline_perplexities(dataset, orders=orders)


def test_baselines_travel_as_json(dataset) -> None:
    baselines = baseline_perplexities(dataset)
    text = json.dumps([b.to_dict() for b in baselines])
    assert [Baseline.from_dict(data) for data in json.loads(text)] == baselines
    assert baselines[0].phrase == "uniform guessing"
    assert baselines[2].phrase == "the bigram"


@pytest.mark.parametrize(
    "change",
    [
        {"order": "2"},
        {"name": None},
        {"perplexity": "12"},
        {"perplexity": 0.5},
        {"perplexity": math.nan},
        {"tokens": 0},
        {"order": True},
    ],
)
def test_a_malformed_baseline_is_refused(change) -> None:
    good = Baseline(2, "bigram", "bigram (Kneser-Ney)", 283.3, 41_314).to_dict()
    assert Baseline.from_dict(good).perplexity == 283.3
    with pytest.raises(InputError, match="baseline"):
        Baseline.from_dict({**good, **change})
    with pytest.raises(InputError, match="mapping"):
        Baseline.from_dict([1, 2])  # type: ignore[arg-type]
