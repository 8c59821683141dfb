"""Scoring a text word by word (the trainer's evaluate() is tested in tests/test_trainer.py)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from lstm_core.evaluation.scoring import score
from lstm_core.model.checkpoint import load_checkpoint
from lstm_core.sampling.step import StepGenerator
from lstm_core.text.cleaning import tokenize
from tests.conftest import SONNET
from tests.language_models import PRIME, ProtocolOnly

DEMO = Path(__file__).resolve().parent.parent / "models" / "demo.pt"


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
    monkeypatch.setattr("lstm_core.evaluation.scoring.SCORE_BLOCK", 7)
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


def test_the_fast_path_scores_as_the_protocol_does(sonnet_model, sonnet_vocab):
    """An LSTM model is scored through FastLM.score_hidden; any other model through log_probs: the same scores."""
    text = SONNET + " ".join(reversed(tokenize(SONNET)))  # then words the model does not expect
    fast, reference = score(sonnet_model, sonnet_vocab, text), score(ProtocolOnly(sonnet_model), sonnet_vocab, text)
    assert fast.mean_nll == pytest.approx(reference.mean_nll, rel=1e-6)
    for mine, theirs in zip(fast.words, reference.words, strict=True):
        assert (mine.word, mine.index, mine.known) == (theirs.word, theirs.index, theirs.known)
        assert mine.probability == pytest.approx(theirs.probability, rel=2e-5)
        assert mine.rank == theirs.rank  # no near-ties in this model's distributions
    assert max(word.rank for word in fast.words) > 5


def test_the_demo_models_ranks_differ_from_the_full_distributions_only_at_near_ties():
    checkpoint = load_checkpoint(DEMO)
    model, vocab = checkpoint.build_model(), checkpoint.vocab
    text = SONNET * 3
    fast, reference = score(model, vocab, text), score(ProtocolOnly(model), vocab, text)
    assert fast.mean_nll == pytest.approx(reference.mean_nll, rel=1e-6)
    ids = torch.tensor([vocab.encode(tokenize(text))])
    with torch.no_grad():
        log_probs = model.log_probs(model(ids[:, :-1])[0][0])  # (N - 1, V)
    assert any(word.index >= model.cutoffs[0] for word in fast.words)  # tail words are scored too
    for position, (mine, theirs) in enumerate(zip(fast.words, reference.words, strict=True)):
        assert mine.probability == pytest.approx(theirs.probability, rel=2e-5)
        if mine.rank != theirs.rank:  # only words within float rounding of the target may count either way
            row, target = log_probs[position], log_probs[position, mine.index]
            assert 1 + int((row > target + 1e-5).sum()) <= mine.rank <= int((row > target - 1e-5).sum())
