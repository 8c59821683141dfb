"""What the trainer measures at an evaluation: the validation loss, shared over the ranks, and prime-text samples."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from lstm_core.evaluation.scoring import evaluate, evaluation_rows
from lstm_core.model.network import LSTMLanguageModel
from lstm_core.sampling.decoding import generate
from lstm_core.sampling.options import SamplingOptions
from lstm_core.text.vocab import Vocab
from lstm_core.training.distributed import DistributedContext


def validation_loss(
    model: LSTMLanguageModel, ids: Tensor, seq_len: int, dtype: torch.dtype | None, world: DistributedContext
) -> float:
    """The mean loss per word on the validation ids ``(N,)``; with several ranks, each scores a share.

    :func:`evaluate` cuts the text into ``rows`` contiguous rows of ``length`` words
    (:func:`evaluation_rows`); each rank scores a run of whole rows, and the sums of losses and word
    counts are added up over the ranks (a collective: every rank must call this). So every rank
    gets the single-process validation loss over the same rows and windows, up to the order of
    the float sums.
    """
    if world.size == 1:
        return evaluate(model, ids, seq_len, dtype=dtype)[0]
    rows = evaluation_rows(ids.numel(), seq_len)
    length = ids.numel() // rows
    first, last = world.share(rows)  # a rank may have no row of a short text
    totals = torch.zeros(2, dtype=torch.float64, device=world.device)  # (sum of losses, words)
    if last > first:
        loss, count = evaluate(
            model, ids[first * length : last * length], seq_len, batch_size=last - first, dtype=dtype
        )
        totals += torch.tensor([loss * count, count], dtype=torch.float64, device=world.device)
    total, count = world.sum(totals).tolist()
    return total / count


def prime_samples(model: LSTMLanguageModel, vocab: Vocab, primes: Sequence[str], length: int) -> dict[str, str]:
    """What the model writes after each prime text, ``length`` words with the default sampling options.

    A prime that cannot be continued (no words left after cleaning) gets the reason in brackets
    instead, so one bad prime never stops a run.
    """
    samples = {}
    for prime in primes:
        try:
            samples[prime] = generate(model, vocab, prime, length, SamplingOptions()).text
        except ValueError as error:  # e.g. a prime with no words after cleaning
            samples[prime] = f"({error})"
    return samples
