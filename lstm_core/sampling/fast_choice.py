"""The fast path's choice: the next word at a :class:`~lstm_core.model.cursor.Cursor`, computing only what can matter.

The processors (:mod:`lstm_core.sampling.processors`) filter every word of a distribution. Here
the same rules (:mod:`lstm_core.sampling.rules`) choose from a cursor's distribution piece by
piece: a tail cluster of the adaptive softmax is asked for only where it can hold the answer (its
token bounds every word inside), and with top-k on only the best ``k`` values go on, as a few
Python floats::

    best_next(cursor, banned)        the argmax; a tail only if its token beats the best word so far
    sample_next(cursor, generator, temperature, top_k, top_p, banned, min_p)
                                     one draw after the filters; with top-k only the tails that
                                     can enter the top k (sample_top_k), else every word
                                     (nucleus_ids, cut_min_p, then the draw)

The same words as the processors and ``sample_index`` for the same seed, up to float rounding (at
the edge of a word's share of the draw, or of a filter's cut): ``tests/test_inference.py`` and
``tests/test_sampling_rules.py`` compare them. :mod:`lstm_core.sampling.shortcut` decides when a
processor list can be followed this way.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from lstm_core.model.cursor import Cursor
from lstm_core.sampling.rules import (
    MAX_TOP_K,
    below_min_p,
    draw_from_masses,
    draw_index,
    is_greedy,
    min_p_cut,
    nucleus_count,
    nucleus_mask,
    ranked,
    top_k_mask,
    uniform,
    valid_min_p,
    valid_temperature,
    valid_top_k,
    valid_top_p,
)

_NEG_INF = float("-inf")


def _without(values: Tensor, banned: list[int], scratch: Tensor) -> Tensor:
    """``values`` itself, or a copy in ``scratch`` with the ``banned`` positions at ``-inf``."""
    if not banned:
        return values
    scratch.copy_(values)
    for index in banned:
        scratch[index] = _NEG_INF
    return scratch


def best_next(cursor: Cursor, banned: Sequence[int] = ()) -> int:
    """The most likely next word at ``cursor`` (lowest id on ties), never one of ``banned``: the full argmax.

    Computes the head, and a tail cluster only when its token's head log-prob beats the best
    word so far (a word inside scores that plus a non-positive within-cluster log-prob, and a tie
    goes to the lower id, which is the earlier one). If every word is banned, returns 0, as
    ``argmax`` of an all ``-inf`` row does.
    """
    lm = cursor.lm
    groups = cursor.parts(banned)
    work = cursor.buffers.work
    head = _without(cursor.head_log_probs()[: lm.head_words], groups[0], work[: lm.head_words])
    value, index = torch.max(head, 0)
    best, best_index = float(value), int(index)
    for cluster, token in enumerate(cursor.token_log_probs()):
        if token <= best:
            continue
        start, end = lm.clusters[cluster]
        tail = _without(cursor.tail_log_probs(cluster), groups[cluster + 1], work[start:end])
        value, index = torch.max(tail, 0)
        if float(value) > best:
            best, best_index = float(value), start + int(index)
    return best_index


def sample_next(
    cursor: Cursor,
    generator: torch.Generator,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    banned: Sequence[int] = (),
    min_p: float = 0.0,
) -> int:
    """One word drawn at ``cursor`` as the samplers draw it: temperature, top-k, top-p, min-p, one uniform.

    The same distribution as the samplers' processors (``Temperature``, ``TopK``, ``TopP``,
    ``MinP``, in that order) followed by ``sample_index``, on the log-probs with ``banned``
    removed (as ``unknown='skip'`` removes ``<unk>``), and the same use of ``generator``: exactly
    one :func:`~lstm_core.sampling.rules.uniform` per call, mapped through the cumulative
    distribution in vocabulary order, so a seed gives the same words (up to float rounding at the
    edges of a word's share of ``[0, 1)``, or of a filter's cut).

    With ``top_k`` on, only the ``top_k`` best words' values are needed after temperature, and a
    tail cluster is computed only when its token beats the ``top_k``-th best head word.
    """
    if not (valid_temperature(temperature) and valid_top_k(top_k) and valid_top_p(top_p) and valid_min_p(min_p)):
        raise ValueError(
            f"temperature must be a number greater than 0, top_k a whole number from 0 to {MAX_TOP_K}, top_p in "
            f"(0, 1] and min_p in [0, 1]; got {temperature!r}, {top_k!r}, {top_p!r}, {min_p!r}"
        )
    if is_greedy(temperature):
        uniform(generator)  # a one-hot draw still takes one
        return best_next(cursor, banned)
    lm, buffers = cursor.lm, cursor.buffers
    groups = cursor.parts(banned)
    head = cursor.head_log_probs()
    work = buffers.work
    work[: lm.head_words].copy_(head[: lm.head_words])
    for index in groups[0]:
        work[index] = _NEG_INF
    filtering = 0 < top_k < lm.vocab_size
    needed: Sequence[int] = range(len(lm.clusters))
    if filtering and top_k <= lm.head_words and lm.clusters:
        # A tail can hold one of the top k only if its token beats the k-th best head word,
        # that is, if fewer than k head words are at least as likely as the token.
        tokens = head[lm.head_words :].unsqueeze(1)  # (clusters, 1)
        at_least = torch.ge(work[: lm.head_words], tokens, out=buffers.at_least).sum(dim=1).tolist()
        needed = [cluster for cluster, count in enumerate(at_least) if count < top_k]
    last = needed[-1] if needed else -1
    scope = lm.clusters[last][1] if needed else lm.head_words  # words [0, scope) are filled in below
    for cluster in range(last + 1):
        start, end = lm.clusters[cluster]
        if cluster in needed:
            work[start:end].copy_(cursor.tail_log_probs(cluster))
            for index in groups[cluster + 1]:
                work[start + index] = _NEG_INF
        else:
            work[start:end].fill_(_NEG_INF)
    if filtering:
        return sample_top_k(work[:scope], top_k, generator, temperature, top_p, min_p)
    if temperature != 1.0:
        work.div_(temperature)
    scores = torch.log_softmax(work, 0, out=buffers.scores)
    if top_p >= 1.0:
        return _draw(cut_min_p(scores, min_p), generator, buffers.probs, buffers.cumulative)
    ids = nucleus_ids(scores, top_p)  # ascending
    scores = cut_min_p(torch.log_softmax(scores[ids], 0), min_p)
    count = ids.numel()
    return int(ids[_draw(scores, generator, buffers.probs[:count], buffers.cumulative[:count])])


def sample_top_k(
    scores: Tensor,
    top_k: int,
    generator: torch.Generator,
    temperature: float = 1.0,
    top_p: float = 1.0,
    min_p: float = 0.0,
) -> int:
    """One position of ``scores (n,)`` (log-probs, normalised or not) drawn after temperature, top-k, top-p and min-p.

    Exactly the samplers' processors (``Temperature``, ``TopK``, ``TopP``, ``MinP``) followed by
    ``sample_index`` (same words kept, ties at the top-k boundary to the lower position, one
    uniform from ``generator`` mapped through the kept words' cumulative mass in position order),
    up to float rounding. Needs ``0 < top_k <= n``.

    The ``k`` values are few, so past the top-k the work is a few Python floats, through the
    rules' float forms (:func:`~lstm_core.sampling.rules.nucleus_count`,
    :func:`~lstm_core.sampling.rules.ranked`, :func:`~lstm_core.sampling.rules.min_p_cut`,
    :func:`~lstm_core.sampling.rules.draw_from_masses`): no tensor operation costs less than a
    microsecond or two. A tie at the boundary (seen in the ``k + 1``-th value) takes the exact
    tensor route instead.
    """
    values, ids = torch.topk(scores, min(top_k + 1, scores.numel()))  # highest first; one more shows a tie
    levels = values.tolist()
    if len(levels) > top_k and levels[top_k] == levels[top_k - 1]:
        ids = top_k_ids(scores, top_k)  # ascending
        kept = torch.log_softmax(scores[ids] / temperature, 0)
        if top_p < 1.0:
            keep = nucleus_ids(kept, top_p)
            ids, kept = ids[keep], torch.log_softmax(kept[keep], 0)
        kept = cut_min_p(kept, min_p)
        probs = torch.empty(ids.numel(), dtype=torch.float64, device=scores.device)
        return int(ids[_draw(kept, generator, probs, torch.empty_like(probs))])
    levels, positions = levels[:top_k], ids.tolist()[:top_k]
    highest = levels[0]
    masses = [math.exp((level - highest) / temperature) for level in levels]  # unnormalised, float64
    count = top_k
    if top_p < 1.0:
        count = nucleus_count(masses, top_p)  # of the top k's mass
        if count < top_k and levels[count - 1] == levels[count]:
            # It ends inside a run of equal values (whose masses are equal, so the count holds):
            # of those, the lower positions are in. Only equal values move, so levels[i] still
            # holds the value at place i.
            order = ranked(levels, positions)
            positions, masses = [positions[i] for i in order], [masses[i] for i in order]
    if min_p > 0.0:
        # min-p: the words whose log-ratio to the top word (after temperature) reaches the cut,
        # a prefix of the values (highest first) that never splits a run of equal ones.
        cut = min_p_cut(min_p)
        count = sum(1 for level in levels[:count] if (level - highest) / temperature >= cut)
    chosen = sorted(zip(positions[:count], masses[:count], strict=True))  # position order
    return chosen[draw_from_masses([mass for _, mass in chosen], generator)][0]


def cut_min_p(log_probs: Tensor, min_p: float) -> Tensor:
    """``log_probs (n,)`` with ``-inf``, in place, for the words under ``min_p`` times the top word's probability.

    The rule's cut (:func:`~lstm_core.sampling.rules.below_min_p`) without ``filter_min_p``'s
    renormalisation: a draw scales by the kept words' total anyway. Off (``min_p`` 0): untouched.
    """
    if min_p <= 0.0:
        return log_probs
    return log_probs.masked_fill_(below_min_p(log_probs, min_p), _NEG_INF)


def _draw(log_probs: Tensor, generator: torch.Generator, probs: Tensor, cumulative: Tensor) -> int:
    """One position of ``log_probs (n,)`` drawn as ``sample_index`` draws: the rule's ``draw_index``.

    ``probs`` and ``cumulative`` are ``(n,)`` float64 buffers; ``log_probs`` is overwritten (with
    probabilities).
    """
    probs.copy_(log_probs.exp_())  # exp in float32 (several times cheaper than in float64), summed in float64
    return draw_index(probs, generator, cumulative)


def top_k_ids(scores: Tensor, count: int) -> Tensor:
    """The ids of the ``count`` highest ``scores (V,)`` in ascending id order; boundary ties to lower ids."""
    return torch.nonzero(top_k_mask(scores, count)).view(-1)


def nucleus_ids(log_probs: Tensor, top_p: float) -> Tensor:
    """Positions (ascending) of the top-p set of one normalised row ``(n,)``: the samplers' nucleus.

    :func:`~lstm_core.sampling.rules.nucleus_mask`, whose search sorts only the best few words'
    values (64, then 512, then all), as a peaked distribution reaches ``top_p`` early.
    """
    return torch.nonzero(nucleus_mask(log_probs, top_p)).view(-1)
