"""Scoring a text word by word (the trainer's evaluate() is tested in tests/test_trainer.py)."""

from __future__ import annotations

import math

import pytest
import torch

from lstm_core.evaluation import score
from lstm_core.sampling import StepGenerator
from lstm_core.text import tokenize
from tests.conftest import SONNET
from tests.language_models import PRIME


def test_score_agrees_with_the_models_loss(sonnet_model, sonnet_vocab):
    text = "Shall I compare thee to a zounds summer's day? Thou art more lovely"
    result = score(sonnet_model, sonnet_vocab, text)
    words = tokenize(text)
    ids = torch.tensor([sonnet_vocab.encode(words)])
    with torch.no_grad():
        hidden, _ = sonnet_model(ids[:, :-1])
        nll = sonnet_model.token_nll(hidden, ids[:, 1:])[0]
        log_probs = sonnet_model.log_probs(hidden[0])
    assert [w.word for w in result.words] == words[1:]
    assert result.mean_nll == pytest.approx(float(nll.mean()), rel=1e-5)
    assert result.perplexity == pytest.approx(math.exp(result.mean_nll), rel=1e-12)
    for position, word in enumerate(result.words):
        assert word.index == int(ids[0, position + 1])
        assert word.known == (word.word != "zounds")
        assert word.probability == pytest.approx(math.exp(-float(nll[position])), rel=1e-5)
        assert word.surprisal == pytest.approx(-math.log2(word.probability), rel=1e-9)
        row = log_probs[position]
        assert word.rank == 1 + int((row > row[word.index]).sum())
        assert (word.rank == 1) == (int(row.argmax()) == word.index)


def test_score_in_blocks_equals_score_at_once(sonnet_model, sonnet_vocab, monkeypatch):
    text = SONNET[:300]
    whole = score(sonnet_model, sonnet_vocab, text)
    monkeypatch.setattr("lstm_core.evaluation.SCORE_BLOCK", 7)
    blocked = score(sonnet_model, sonnet_vocab, text)
    assert [w.rank for w in blocked.words] == [w.rank for w in whole.words]
    assert blocked.mean_nll == pytest.approx(whole.mean_nll, rel=1e-6)


def test_score_gives_rank_one_to_the_argmax(sonnet_model, sonnet_vocab):
    stepper = StepGenerator(sonnet_model, sonnet_vocab, PRIME)
    best = sonnet_vocab.itos[int(stepper.log_probs[1:].argmax()) + 1]
    result = score(sonnet_model, sonnet_vocab, f"{PRIME} {best}")
    assert result.words[-1].word == best and result.words[-1].rank == 1


@pytest.mark.parametrize("text", ["", "?!", "thou"])
def test_score_needs_two_words(sonnet_model, sonnet_vocab, text):
    with pytest.raises(ValueError, match="at least two words"):
        score(sonnet_model, sonnet_vocab, text)
