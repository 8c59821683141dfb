"""How well a model predicts a text: mean loss over a token stream, and word-by-word scores.

:func:`evaluate` is the validation loss the trainer reports (and ``python -m lstm_core
evaluate``); :func:`score` explains one short text word by word for the app (probability, rank,
surprisal). Both read the text as training did: a word is predicted from the words before it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from lstm_core.data.batching import windows
from lstm_core.errors import InputError
from lstm_core.model.fast import fast_path
from lstm_core.model.network import LanguageModel, LSTMLanguageModel, State, check_vocab_size, inference
from lstm_core.system.runtime import autocast
from lstm_core.text.cleaning import tokenize
from lstm_core.text.vocab import Vocab

EVAL_BATCH_SIZE = 16


def evaluation_rows(words: int, seq_len: int, batch_size: int = EVAL_BATCH_SIZE) -> int:
    """How many contiguous rows :func:`evaluate` cuts ``words`` into: at most ``batch_size``, and
    fewer for short texts, so that rows stay long and the state carried through them stays useful."""
    return max(1, min(batch_size, words // (seq_len + 1)))


@torch.no_grad()
def evaluate(
    model: LSTMLanguageModel,
    ids: Tensor,
    seq_len: int,
    batch_size: int = EVAL_BATCH_SIZE,
    dtype: torch.dtype | None = None,
) -> tuple[float, int]:
    """Mean per-token loss (natural log) of ``model`` on the id stream, and the tokens scored.

    The stream is cut into :func:`evaluation_rows` contiguous rows.
    """
    if ids.numel() < 2:
        raise InputError(f"evaluation needs at least 2 words, got {ids.numel()}")
    rows = evaluation_rows(ids.numel(), seq_len, batch_size)
    streams = ids[: ids.numel() // rows * rows].view(rows, -1).to(model.device)
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    state: State | None = None
    try:
        for inputs, targets in windows(streams, seq_len):
            with autocast(model.device, dtype):
                hidden, state = model(inputs, state)
                total += float(model.token_nll(hidden, targets).sum())
            count += targets.numel()
    finally:
        model.train(was_training)
    return total / count, count


def perplexity(loss: float) -> float:
    """``exp(loss)`` for a mean loss in nats, or infinity where that overflows (``math.exp``
    raises past about 709)."""
    return math.exp(loss) if loss < 700 else math.inf


@dataclass(frozen=True)
class WordScore:
    word: str
    index: int
    """The id the model saw (``UNK_INDEX`` for an unknown word)."""
    known: bool
    probability: float
    """For an unknown word: the probability of ``<unk>``, the class of all rare words together."""
    rank: int
    """1 + the number of words the model found strictly more likely (1 = its top choice).

    Words within float rounding of this one (about 1e-6 in log-prob) may or may not be counted:
    the fast path adds up the log-probs in another order than ``model.log_probs`` (and compares a
    tail word's within-cluster log-prob against the target's minus its cluster token's), so at
    such near-ties a rank can differ from a count over ``model.log_probs``."""
    surprisal: float
    """``-log2(probability)``, in bits."""


@dataclass(frozen=True)
class TextScore:
    """How well the model predicts a text, word by word.

    ``words`` has one entry per word after the first: the model has no beginning-of-text token
    and was only ever trained to predict a word from the words before it, so the first word has
    no prediction to score. This makes ``mean_nll`` the training loss on the same text.
    """

    words: list[WordScore]
    perplexity: float
    mean_nll: float
    """Mean negative log-likelihood per scored word, natural log."""


SCORE_BLOCK = 2048
"""Positions per block when turning hidden features into log-probs while scoring: a whole play
(30,000 words x 7,500-word vocabulary) at once would need about 1 GB for the log-probs alone."""


def score(model: LanguageModel, vocab: Vocab, text: str) -> TextScore:
    """Score every word of ``text`` after the first.

    The LSTM reads the text in one forward pass; its hidden features ``(N - 1, H)`` are then scored
    a block of positions at a time, on the model's device, and only each word's log-prob and
    rank come back to the CPU. For an :class:`LSTMLanguageModel` in float32 on the CPU a block
    goes through :meth:`~lstm_core.model.fast.FastLM.score_hidden`, which with the adaptive
    softmax never forms the ``(block, V)`` distribution (a tail is computed only where it can
    hold a word above the target); for any other model, through ``model.log_probs``.
    """
    check_vocab_size(model, len(vocab))
    words = tokenize(text)
    if len(words) < 2:
        raise InputError(
            f"the text has {'no words' if not words else 'only one word'} after cleaning; scoring needs at least "
            "two words (each word is predicted from the ones before it)"
        )
    ids = torch.tensor([vocab.encode(words)], device=model.device)
    targets = ids[0, 1:]  # (N - 1,)
    picked: list[Tensor] = []
    ranks: list[Tensor] = []
    with inference(model):
        lm = fast_path(model)
        hidden, _ = model(ids[:, :-1])  # (1, N - 1, H)
        for start in range(0, targets.numel(), SCORE_BLOCK):
            block = slice(start, start + SCORE_BLOCK)
            if lm is not None:
                target_log_probs, target_ranks = lm.score_hidden(hidden[0, block], targets[block])
                picked.append(target_log_probs.cpu())
                ranks.append(target_ranks.cpu())
                continue
            log_probs = model.log_probs(hidden[0, block])  # (block, V)
            target_log_probs = log_probs.gather(1, targets[block, None])  # (block, 1)
            picked.append(target_log_probs[:, 0].cpu())
            # int32 sums are about 4x faster than the default int64 here.
            ranks.append(((log_probs > target_log_probs).sum(dim=1, dtype=torch.int32) + 1).cpu())
    nll = -torch.cat(picked).double()
    mean_nll = float(nll.mean())
    scored = [
        WordScore(word, index, word in vocab, math.exp(-loss), rank, loss / math.log(2))
        for word, index, loss, rank in zip(
            words[1:], targets.tolist(), nll.tolist(), torch.cat(ranks).tolist(), strict=True
        )
    ]
    return TextScore(scored, perplexity(mean_nll), mean_nll)
