"""The Kneser-Ney n-gram models (lstm_core.evaluation.ngram) against probabilities worked out by hand.

Every expected number below is derived in the comments from the formulas in the module's
docstring, so a reader can check it with pencil and paper:

    p_k(w | h) = max(a_k(h w) - D, 0) / A_k(h) + gamma_k(h) p_{k-1}(w | h'),   p_0(w) = 1 / V
    gamma_k(h) = (D1 N1(h.) + D2 N2(h.) + D3+ N3+(h.)) / A_k(h)
    Y = n1 / (n1 + 2 n2),  D1 = 1 - 2Y n2/n1,  D2 = 2 - 3Y n3/n2,  D3+ = 3 - 4Y n4/n3

with a_k the raw count at the model's order and the continuation count (distinct words before
the n-gram, plus one for the boundary before the stream's first n-gram) below it. A discount
outside (0, r) falls back to Y.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lstm_core.errors import InputError
from lstm_core.evaluation.ngram import KneserNey, fit_kneser_ney
from lstm_core.evaluation.ngram_tables import modified_discounts
from lstm_core.text.vocab import Vocab

# The hand-worked corpus: 17 tokens over words 0..3; word 4 is in the vocabulary (V = 5) but
# never occurs in training.
#
#   position  0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16
#   word      1 1 1 1 2 2 2 2 0 0 3  1  0  0  1  1  0
#
# Bigram counts (16 bigrams):
#   (1,1): 4   (2,2): 3   (0,0): 2   (1,0): 2
#   (1,2): 1   (2,0): 1   (0,3): 1   (3,1): 1   (0,1): 1
# so n1 = 5, n2 = 2, n3 = 1, n4 = 1.
#
# Unigram continuation counts (distinct left neighbours, from the bigram list above):
#   word 0: after 0, 1, 2                      -> 3
#   word 1: after 1, 3, 0, plus the boundary   -> 4   (the stream starts with 1)
#   word 2: after 2, 1                         -> 2
#   word 3: after 0                            -> 1
#   word 4: never                              -> 0
# total A_1 = 10, and n1 = n2 = n3 = n4 = 1.
HAND = [1, 1, 1, 1, 2, 2, 2, 2, 0, 0, 3, 1, 0, 0, 1, 1, 0]
HAND_V = 5


@pytest.fixture(scope="module")
def bigram() -> KneserNey:
    return KneserNey(2).fit(HAND, HAND_V)


@pytest.fixture(scope="module")
def trigram() -> KneserNey:
    return KneserNey(3).fit(HAND, HAND_V)


# ---- discounts -------------------------------------------------------------------------------


def test_modified_discounts_formula() -> None:
    # n = (4, 2, 1, 1): Y = 4 / (4 + 4) = 1/2
    #   D1 = 1 - 2 (1/2)(2/4) = 1/2,  D2 = 2 - 3 (1/2)(1/2) = 5/4,  D3+ = 3 - 4 (1/2)(1/1) = 1
    assert modified_discounts((4, 2, 1, 1)) == pytest.approx((0.5, 1.25, 1.0), abs=1e-15)
    # n = (5, 2, 1, 1): Y = 5/9;  D1 = 1 - 2 (5/9)(2/5) = 5/9,  D2 = 2 - 3 (5/9)(1/2) = 7/6,
    #   D3+ = 3 - 4 (5/9)(1/1) = 7/9
    assert modified_discounts((5, 2, 1, 1)) == pytest.approx((5 / 9, 7 / 6, 7 / 9), abs=1e-15)


def test_modified_discounts_fall_back_to_the_single_discount() -> None:
    # n = (5, 1, 1, 1): Y = 5/7; D2 = 2 - 3 (5/7)(1/1) = -1/7 is negative -> Y;
    #   D3+ = 3 - 4 (5/7)(1/1) = 1/7 is fine.
    assert modified_discounts((5, 1, 1, 1)) == pytest.approx((5 / 7, 5 / 7, 1 / 7), abs=1e-15)
    # n = (11, 2, 0, 0): Y = 11/15; D2 = 2 - 0 = 2 is not below 2, D3+ has n3 = 0 -> both Y.
    assert modified_discounts((11, 2, 0, 0)) == pytest.approx((11 / 15,) * 3, abs=1e-15)
    # Only singletons: Y = 1, so D1 = 1 (the formula's own value too); the others fall back.
    assert modified_discounts((3, 0, 0, 0)) == (1.0, 1.0, 1.0)
    # No singletons at all: Y = 0.5 for everything.
    assert modified_discounts((0, 0, 0, 0)) == (0.5, 0.5, 0.5)
    assert modified_discounts((0, 4, 2, 1)) == pytest.approx((0.5, 2 - 3 * 0.5 * 2 / 4, 3 - 4 * 0.5 * 1 / 2))


def test_modified_discounts_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="four"):
        modified_discounts((1, 2, 3))
    with pytest.raises(ValueError, match="non-negative"):
        modified_discounts((1, -2, 3, 4))


def test_discounts_from_counted_count_of_counts(bigram: KneserNey, trigram: KneserNey) -> None:
    # Order 2, bigrams (raw counts, listed at the top): n = (5, 2, 1, 1) -> (5/9, 7/6, 7/9).
    assert bigram.count_of_counts[2] == (5, 2, 1, 1)
    assert bigram.discounts[2] == pytest.approx((5 / 9, 7 / 6, 7 / 9), abs=1e-15)
    # Unigram continuation counts 3, 4, 2, 1: n = (1, 1, 1, 1), Y = 1/3,
    #   D1 = 1 - 2 (1/3) = 1/3,  D2 = 2 - 3 (1/3) = 1,  D3+ = 3 - 4 (1/3) = 5/3.
    assert bigram.count_of_counts[1] == (1, 1, 1, 1)
    assert bigram.discounts[1] == pytest.approx((1 / 3, 1.0, 5 / 3), abs=1e-15)

    # Order 3. Trigrams (raw counts, 15 of them): (1,1,1) and (2,2,2) twice, eleven others once:
    #   n = (11, 2, 0, 0), Y = 11/15, and D2, D3+ fall back to Y.
    assert trigram.count_of_counts[3] == (11, 2, 0, 0)
    assert trigram.discounts[3] == pytest.approx((11 / 15,) * 3, abs=1e-15)
    # Bigram continuation counts (distinct words before each bigram, from the trigram list):
    #   (1,1): after 1 and 0, plus the boundary -> 3     (2,2): after 1 and 2 -> 2
    #   (0,0): after 2 and 1 -> 2     (1,0): after 3 and 1 -> 2
    #   (1,2), (2,0), (0,3), (3,1), (0,1): once each -> 1
    # n = (5, 3, 1, 0): Y = 5/11, D1 = 5/11, D2 = 2 - 3 (5/11)(1/3) = 17/11, D3+ = 3 -> Y.
    assert trigram.count_of_counts[2] == (5, 3, 1, 0)
    assert trigram.discounts[2] == pytest.approx((5 / 11, 17 / 11, 5 / 11), abs=1e-15)
    # The unigram level is the same as in the order-2 model: it only sees distinct bigrams.
    assert trigram.count_of_counts[1] == (1, 1, 1, 1)


# ---- hand-computed probabilities -------------------------------------------------------------

# Unigram level of the order-2 and order-3 models (continuation counts, A_1 = 10):
#   gamma_1 = (D1 N1 + D2 N2 + D3+ N3+) / 10 = (1/3 + 1 + 2 * 5/3) / 10 = 7/15
#   and the uniform share of every word is gamma_1 / V = 7/75.
#   p1(0) = (3 - 5/3) / 10 + 7/75 = 2/15 + 7/75 = 17/75
#   p1(1) = (4 - 5/3) / 10 + 7/75 = 7/30 + 7/75 = 49/150
#   p1(2) = (2 - 1) / 10   + 7/75 = 1/10 + 7/75 = 29/150
#   p1(3) = (1 - 1/3) / 10 + 7/75 = 1/15 + 7/75 = 4/25
#   p1(4) =                  7/75
# (17/75 + 49/150 + 29/150 + 4/25 + 7/75 = (34 + 49 + 29 + 24 + 14) / 150 = 1.)
P1 = {0: 17 / 75, 1: 49 / 150, 2: 29 / 150, 3: 4 / 25, 4: 7 / 75}


def test_lower_order_continuation_probabilities(bigram: KneserNey) -> None:
    # An empty context is scored by the unigram (continuation) level alone.
    for word, expected in P1.items():
        assert bigram.prob([], word) == pytest.approx(expected, abs=1e-15)
    # Word 1 is far more frequent than word 2 by raw count (7 vs 4), yet only 49/150 vs 29/150:
    # what counts is the number of distinct words it follows.


def test_bigram_probabilities(bigram: KneserNey) -> None:
    # Context 1 has the followers (1,1): 4, (1,0): 2, (1,2): 1, so A(1) = 7 and one follower
    # in each count class:
    #   gamma(1) = (5/9 + 7/6 + 7/9) / 7 = (45/18) / 7 = 5/14
    # Seen bigram:   p(0 | 1) = (2 - 7/6) / 7 + 5/14 * 17/75 = 5/42 + 17/210 = 42/210 = 1/5
    assert bigram.prob([1], 0) == pytest.approx(1 / 5, abs=1e-15)
    #                p(1 | 1) = (4 - 7/9) / 7 + 5/14 * 49/150 = 29/63 + 7/60 = 727/1260
    assert bigram.prob([1], 1) == pytest.approx(727 / 1260, abs=1e-15)
    #                p(2 | 1) = (1 - 5/9) / 7 + 5/14 * 29/150 = 4/63 + 29/420 = 167/1260
    assert bigram.prob([1], 2) == pytest.approx(167 / 1260, abs=1e-15)
    # Unseen bigram: p(3 | 1) = 5/14 * 4/25 = 2/35
    assert bigram.prob([1], 3) == pytest.approx(2 / 35, abs=1e-15)
    # A word never seen at all: p(4 | 1) = 5/14 * 7/75 = 1/30
    assert bigram.prob([1], 4) == pytest.approx(1 / 30, abs=1e-15)
    # (1/5 + 727/1260 + 167/1260 + 2/35 + 1/30 = (252 + 727 + 167 + 72 + 42) / 1260 = 1.)
    assert bigram.prob_dist([1]).sum() == pytest.approx(1.0, abs=1e-12)
    # Context 4 never occurs in training: back off fully to the unigram level.
    assert bigram.prob_dist([4]) == pytest.approx([P1[w] for w in range(HAND_V)], abs=1e-15)
    # Only the last word of a longer context matters at order 2.
    assert bigram.prob([3, 2, 1], 0) == bigram.prob([1], 0)
    assert bigram.log_prob([1], 0) == pytest.approx(math.log(1 / 5), abs=1e-14)


def test_trigram_probabilities(trigram: KneserNey) -> None:
    # Bigram level of the order-3 model (continuation counts). Context 1 has the followers
    # (1,1): 3, (1,0): 2, (1,2): 1, so A(1) = 6 and
    #   gamma_2(1) = (5/11 + 17/11 + 5/11) / 6 = 9/22
    #   p2(0 | 1)  = (2 - 17/11) / 6 + 9/22 * 17/75 = 5/66 + 51/550 = 139/825
    # Trigram level (raw counts). Context (1,1) has the followers (1,1,1): 2, (1,1,2): 1,
    # (1,1,0): 1, so A(1,1) = 4 and
    #   gamma_3(1,1) = (11/15 * 2 + 11/15 * 1) / 4 = 11/20
    # Seen trigram: p(0 | 1 1) = (1 - 11/15) / 4 + 11/20 * 139/825 = 1/15 + 139/1500 = 239/1500
    assert trigram.prob([1, 1], 0) == pytest.approx(239 / 1500, abs=1e-15)

    # Context 3 at the bigram level: only (3,1), continuation count 1, so A(3) = 1 and
    #   gamma_2(3) = 5/11,  p2(1 | 3) = (1 - 5/11) + 5/11 * 49/150 = 6/11 + 49/330 = 229/330
    # The trigram context (3,3) never occurs: back off fully to p2(1 | 3).
    assert trigram.prob([3, 3], 1) == pytest.approx(229 / 330, abs=1e-15)
    # The trigram context (0,3) has the single follower (0,3,1), seen once:
    #   p(1 | 0 3) = (1 - 11/15) + 11/15 * 229/330 = 4/15 + 229/450 = 349/450
    assert trigram.prob([0, 3], 1) == pytest.approx(349 / 450, abs=1e-15)
    # A context of one word is scored at the bigram level: p(0 | 1) = p2(0 | 1).
    assert trigram.prob([1], 0) == pytest.approx(139 / 825, abs=1e-15)


def test_order_one_is_a_discounted_unigram_on_the_hand_corpus() -> None:
    # Raw counts: word 0: 5, word 1: 7, word 2: 4, word 3: 1, word 4: 0 (total 17), so
    # n = (1, 0, 0, 1): Y = 1, D1 = 1, and D2, D3+ fall back to Y = 1.
    #   gamma = 4 * 1 / 17 = 4/17, the uniform share is 4/17 / 5 = 4/85, and
    #   p(0) = 4/17 + 4/85 = 24/85,  p(1) = 6/17 + 4/85 = 34/85,  p(2) = 3/17 + 4/85 = 19/85,
    #   p(3) = 0 + 4/85,              p(4) = 4/85
    model = KneserNey(1).fit(HAND, HAND_V)
    assert model.count_of_counts[1] == (1, 0, 0, 1)
    expected = np.array([24, 34, 19, 4, 4]) / 85
    assert model.prob_dist([]) == pytest.approx(expected, abs=1e-15)
    assert model.prob_dist([3, 1, 2]) == pytest.approx(expected, abs=1e-15)  # context is ignored


def test_order_one_matches_a_direct_smoothed_unigram() -> None:
    rng = np.random.default_rng(3)
    vocab_size = 40
    ids = rng.zipf(1.3, size=3000) % (vocab_size - 5)  # the last five words never occur
    model = KneserNey(1).fit(ids, vocab_size)

    counts = np.bincount(ids, minlength=vocab_size)
    n1, n2, n3, n4 = (int((counts == r).sum()) for r in (1, 2, 3, 4))
    d1, d2, d3 = modified_discounts((n1, n2, n3, n4))
    discount = np.select([counts == 0, counts == 1, counts == 2], [0.0, d1, d2], d3)
    expected = (counts - discount) / counts.sum() + discount.sum() / counts.sum() / vocab_size
    assert model.prob_dist([]) == pytest.approx(expected, abs=1e-15)
    assert model.prob_dist([7]) == pytest.approx(expected, abs=1e-15)


# ---- distributions sum to one ----------------------------------------------------------------


@pytest.mark.parametrize("order", [1, 2, 3, 4, 5])
def test_distributions_sum_to_one(order: int) -> None:
    rng = np.random.default_rng(order)
    vocab_size = 12
    ids = rng.integers(0, vocab_size - 2, size=300).tolist()  # words 10 and 11 never occur
    model = KneserNey(order).fit(ids, vocab_size)
    contexts: list[list[int]] = [[]]
    contexts += [ids[i : i + length] for i in range(0, 250, 17) for length in (1, 2, 3, 4)]  # seen
    contexts += [rng.integers(0, vocab_size - 2, size=4).tolist() for _ in range(20)]  # mostly unseen
    contexts += [[10], [11, 11, 11, 11], [ids[0], 10, ids[1]], [ids[5], ids[6], 11]]  # unseen words
    contexts += [ids[-4:], [0] * 9]
    for context in contexts:
        probs = model.prob_dist(context)
        assert probs.shape == (vocab_size,)
        assert probs.min() > 0.0
        assert probs.sum() == pytest.approx(1.0, abs=1e-9)
        assert probs[3] == pytest.approx(model.prob(context, 3), abs=1e-15)


@settings(max_examples=60, deadline=None)
@given(
    ids=st.lists(st.integers(0, 5), min_size=1, max_size=40),
    order=st.integers(1, 5),
    context=st.lists(st.integers(0, 6), max_size=6),
)
def test_distributions_sum_to_one_on_any_corpus(ids: list[int], order: int, context: list[int]) -> None:
    # Tiny corpora hit every zero count-of-counts case; the fallback keeps the sum at 1.
    probs = KneserNey(order).fit(ids, 7).prob_dist(context)
    assert probs.min() > 0.0
    assert probs.sum() == pytest.approx(1.0, abs=1e-9)


# ---- perplexity ------------------------------------------------------------------------------


def test_perplexity_by_hand(bigram: KneserNey) -> None:
    # Held-out stream 1 0 4. As in the LSTM's evaluation the first word is only context, so two
    # words are scored: p(0 | 1) = 1/5, and p(4 | 0) from context 0, whose followers are
    # (0,0): 2, (0,3): 1, (0,1): 1 (A(0) = 4):
    #   gamma(0) = (2 * 5/9 + 7/6) / 4 = 41/72,  p(4 | 0) = 41/72 * p1(4) = 41/72 * 7/75 = 287/5400
    product = 1 / 5 * 287 / 5400
    assert bigram.perplexity([1, 0, 4]) == pytest.approx(product ** (-1 / 2), rel=1e-13)
    assert bigram.token_log_probs([1, 0, 4]) == pytest.approx([math.log(1 / 5), math.log(287 / 5400)], abs=1e-14)


def test_perplexity_is_exp_of_the_mean_negative_log_prob() -> None:
    rng = np.random.default_rng(11)
    vocab_size = 20
    train = rng.integers(0, vocab_size, size=500).tolist()
    heldout = rng.integers(0, vocab_size, size=80).tolist()
    for order in (0, 1, 3, 5):
        model = KneserNey(order).fit(train, vocab_size)
        log_probs = [model.log_prob(heldout[max(0, i - order + 1) : i], heldout[i]) for i in range(1, len(heldout))]
        assert model.token_log_probs(heldout) == pytest.approx(log_probs, abs=1e-12)
        assert model.perplexity(heldout) == pytest.approx(math.exp(-sum(log_probs) / len(log_probs)), rel=1e-12)


def test_order_zero_is_uniform() -> None:
    model = KneserNey(0).fit(HAND, HAND_V)
    assert model.prob_dist([1, 2, 3]) == pytest.approx([1 / HAND_V] * HAND_V, abs=1e-15)
    assert model.perplexity([4, 4, 0, 1]) == pytest.approx(HAND_V, rel=1e-12)
    assert model.ngrams == 0


def test_tensors_arrays_and_lists_give_the_same_model() -> None:
    as_list = KneserNey(3).fit(HAND, HAND_V)
    as_tensor = KneserNey(3).fit(torch.tensor(HAND), HAND_V)
    as_array = KneserNey(3).fit(np.array(HAND, dtype=np.int32), HAND_V)
    heldout = torch.tensor([1, 1, 0, 3, 1])
    assert as_tensor.perplexity(heldout) == as_list.perplexity(heldout.tolist())
    assert as_array.prob(np.array([1, 1]), 0) == as_list.prob([1, 1], 0)
    assert as_tensor.prob(torch.tensor([0, 3]), 1) == as_list.prob([0, 3], 1)


def test_a_stream_shorter_than_the_order() -> None:
    model = KneserNey(5).fit([2, 3], 4)  # no 3-, 4- or 5-grams at all
    assert model.prob_dist([1, 2]).sum() == pytest.approx(1.0, abs=1e-12)
    assert math.isfinite(model.perplexity([2, 3, 0, 1]))
    single = KneserNey(3).fit([2], 4)  # not even a bigram
    assert single.prob_dist([2, 2]) == pytest.approx(single.prob_dist([]), abs=1e-15)
    assert math.isfinite(single.perplexity([2, 2, 1]))


def test_bad_input_is_refused() -> None:
    with pytest.raises(InputError, match="order"):
        KneserNey(-1)
    with pytest.raises(InputError, match="empty"):
        KneserNey(2).fit([], 3)
    with pytest.raises(InputError, match=r"0\.\.2"):
        KneserNey(2).fit([0, 1, 3], 3)
    with pytest.raises(InputError, match="integer"):
        KneserNey(2).fit([0.5, 1.0], 3)
    with pytest.raises(InputError, match="one-dimensional"):
        KneserNey(2).fit([[0, 1], [1, 2]], 3)
    with pytest.raises(InputError, match="not fitted"):
        KneserNey(2).prob([1], 0)
    model = KneserNey(2).fit([0, 1, 2], 3)
    with pytest.raises(InputError, match="outside"):
        model.prob([1], 3)
    with pytest.raises(InputError, match=r"context must lie in 0\.\.2"):
        model.next_log_probs([5])
    for too_short in ([], [1]):
        with pytest.raises(InputError, match="at least 2"):
            model.perplexity(too_short)


# ---- the vectorised counting against a direct implementation of the formulas ---------------


def reference_model(ids: list[int], vocab_size: int, order: int):
    """``p(word | context)`` computed straight from the module's formulas with dicts and tuples."""
    raw = Counter(tuple(ids[i : i + order]) for i in range(len(ids) - order + 1))
    counts = {order: raw}
    for k in range(order - 1, 0, -1):
        # Distinct words before each k-gram, plus the boundary before the stream's first k-gram.
        continuation = Counter(ngram[1:] for ngram in counts[k + 1])
        if len(ids) >= k:
            continuation[tuple(ids[:k])] += 1
        counts[k] = continuation
    tables = {}
    for k, a in counts.items():
        by_count = Counter(a.values())
        d = (0.0, *modified_discounts([by_count[1], by_count[2], by_count[3], by_count[4]]))
        totals, classes = Counter(), Counter()
        for ngram, count in a.items():
            totals[ngram[:-1]] += count
            classes[ngram[:-1], min(count, 3)] += 1
        gamma = {h: sum(d[r] * classes[h, r] for r in (1, 2, 3)) / total for h, total in totals.items()}
        alpha = {g: (c - d[min(c, 3)]) / totals[g[:-1]] for g, c in a.items()}
        tables[k] = (alpha, gamma)

    def prob(context: list[int], word: int) -> float:
        history = tuple(context[max(0, len(context) - order + 1) :]) if order > 1 else ()
        p = 1.0 / vocab_size
        for k in range(1, len(history) + 2):
            alpha, gamma = tables[k]
            h = history[len(history) - k + 1 :]
            if h not in gamma:
                break
            p = alpha.get((*h, word), 0.0) + gamma[h] * p
        return p

    return prob


@settings(max_examples=80, deadline=None)
@given(
    ids=st.lists(st.integers(0, 6), min_size=1, max_size=60),
    order=st.integers(1, 5),
    heldout=st.lists(st.integers(0, 7), min_size=2, max_size=12),
)
def test_counting_gives_the_probabilities_of_the_formulas(ids: list[int], order: int, heldout: list[int]) -> None:
    model = KneserNey(order).fit(ids, 8)
    reference = reference_model(ids, 8, order)
    expected = [reference(heldout[:i], heldout[i]) for i in range(1, len(heldout))]
    # The arithmetic follows the formulas in the same order, so the numbers agree to the last bit.
    assert np.exp(model.token_log_probs(heldout)) == pytest.approx(expected, rel=1e-15, abs=0)
    for i in range(len(heldout)):
        assert model.prob_dist(heldout[:i]).tolist() == [reference(heldout[:i], w) for w in range(8)]


def test_one_count_serves_every_order() -> None:
    rng = np.random.default_rng(5)
    ids = rng.integers(0, 30, size=2000)
    heldout = rng.integers(0, 30, size=300)
    together = fit_kneser_ney(ids, 30, [0, 1, 2, 5])
    assert sorted(together) == [0, 1, 2, 5]
    for order, model in together.items():
        alone = KneserNey(order).fit(ids, 30)
        assert model.order == order
        assert model.perplexity(heldout) == alone.perplexity(heldout)
        assert model.count_of_counts == alone.count_of_counts
    with pytest.raises(InputError, match="order"):
        fit_kneser_ney(ids, 30, [2, -1])
    with pytest.raises(InputError, match="at least one"):
        fit_kneser_ney(ids, 30, [])


# ---- next-word distributions for the samplers ------------------------------------------------


@pytest.mark.parametrize("order", [0, 1, 2, 3, 5])
def test_next_log_probs_are_a_normalised_float32_distribution(order: int) -> None:
    model = KneserNey(order).fit(HAND, HAND_V)
    for context in ([], [1], [1, 1], [0, 3], [4, 4, 4, 4, 4, 4], torch.tensor([2, 2, 2])):
        log_probs = model.next_log_probs(context)
        assert log_probs.dtype == torch.float32
        assert log_probs.shape == (HAND_V,)
        assert torch.isfinite(log_probs).all()
        assert float(torch.logsumexp(log_probs.double(), 0)) == pytest.approx(0.0, abs=1e-6)
        expected = np.log(model.prob_dist(context if isinstance(context, list) else context.tolist()))
        assert log_probs.numpy() == pytest.approx(expected.astype(np.float32), abs=1e-6)
    # p(0 | 1) by hand: 1/5 at order 2; at order 3 a one-word context is scored at the bigram level.
    expected_p01 = {2: 1 / 5, 3: 139 / 825}.get(order)
    if expected_p01 is not None:
        assert float(model.next_log_probs([1]).exp()[0]) == pytest.approx(expected_p01, rel=1e-6)


# ---- saving and loading ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def corpus_model() -> tuple[KneserNey, list[int]]:
    rng = np.random.default_rng(8)
    ids = (rng.zipf(1.4, size=3000) % 50).tolist()
    return KneserNey(5).fit(ids, 50), ids


def test_save_and_load_give_the_same_probabilities(tmp_path, corpus_model) -> None:
    model, ids = corpus_model
    vocab = Vocab(["<unk>", *(f"w{i}" for i in range(1, 50))])
    path = tmp_path / "model.npz"
    model.save(path, vocab)
    loaded = KneserNey.load(path, vocab)
    assert (loaded.order, loaded.vocab_size, loaded.ngrams) == (5, 50, model.ngrams)
    assert loaded.discounts == model.discounts
    heldout = ids[::7]
    assert (loaded.token_log_probs(heldout) == model.token_log_probs(heldout)).all()
    assert (loaded.prob_dist(ids[10:14]) == model.prob_dist(ids[10:14])).all()
    assert KneserNey.load(path).perplexity(heldout) == model.perplexity(heldout)  # the vocabulary is optional
    # The size bound of save(): at most order * T n-grams of at most 12 bytes each, before compression.
    assert path.stat().st_size <= 12 * model.order * len(ids) + 2000
    uniform = tmp_path / "uniform.npz"
    KneserNey(0).fit(ids, 50).save(uniform)
    assert KneserNey.load(uniform).perplexity(heldout) == pytest.approx(50, rel=1e-12)


def test_loading_checks_the_vocabulary(tmp_path, corpus_model) -> None:
    model, _ = corpus_model
    vocab = Vocab(["<unk>", *(f"w{i}" for i in range(1, 50))])
    path = tmp_path / "model.npz"
    model.save(path, vocab)
    other = Vocab(["<unk>", *(f"v{i}" for i in range(1, 50))])
    with pytest.raises(InputError, match="different vocabulary"):
        KneserNey.load(path, other)
    with pytest.raises(InputError, match="50"):
        KneserNey.load(path, Vocab(["<unk>", "a"]))
    with pytest.raises(InputError, match="vocabulary has 2 words"):
        model.save(tmp_path / "other.npz", Vocab(["<unk>", "a"]))


def test_a_truncated_or_foreign_file_is_refused(tmp_path, corpus_model) -> None:
    model, _ = corpus_model
    path = tmp_path / "model.npz"
    model.save(path)
    data = path.read_bytes()
    for size in (0, 10, len(data) // 2, len(data) - 30):
        cut = tmp_path / f"cut{size}.npz"
        cut.write_bytes(data[:size])
        with pytest.raises(InputError, match=r"cannot read|not usable"):
            KneserNey.load(cut)
    with pytest.raises(InputError, match="no n-gram model file"):
        KneserNey.load(tmp_path / "missing.npz")
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match="cannot read"):
        KneserNey.load(tmp_path / "objects.npy")
    np.savez(tmp_path / "other.npz", weights=np.zeros(3))
    with pytest.raises(InputError, match="header is missing"):
        KneserNey.load(tmp_path / "other.npz")


def _rewrite(path, change) -> None:
    """Load the file's arrays, let ``change`` edit them, and write them back."""
    with np.load(path, allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    change(arrays)
    np.savez_compressed(path, **arrays)


def _header(arrays: dict) -> dict:
    return json.loads(arrays["header"].tobytes().decode("utf-8"))


def _set_header(arrays: dict, header: dict) -> None:
    arrays["header"] = np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8)


def _rehash(arrays: dict) -> None:
    """Recompute the checksum, as someone editing the file on purpose would."""
    header = _header(arrays)
    digest = hashlib.sha256()
    for name in sorted(n for n in arrays if n != "header"):
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}:{array.dtype.str}:{array.shape};".encode())
        digest.update(array.tobytes())
    header["arrays_sha256"] = digest.hexdigest()
    _set_header(arrays, header)


def test_a_tampered_file_is_refused(tmp_path, corpus_model) -> None:
    model, _ = corpus_model
    original = tmp_path / "model.npz"
    model.save(original)

    def refused(change, match: str) -> None:
        path = tmp_path / "tampered.npz"
        path.write_bytes(original.read_bytes())
        _rewrite(path, change)
        with pytest.raises(InputError, match=match):
            KneserNey.load(path)

    def bump_count(arrays: dict) -> None:
        arrays["counts_3"] = arrays["counts_3"].copy()
        arrays["counts_3"][5] += 1

    refused(bump_count, "altered")
    refused(lambda a: a.pop("words_2"), "has 15 arrays, the file has 14")
    refused(lambda a: a.update(weights=a.pop("words_2")), "expected the arrays")
    refused(lambda a: _set_header(a, {**_header(a), "format": "something-else"}), "not an n-gram model")
    refused(lambda a: _set_header(a, {**_header(a), "version": 9}), "version")
    refused(lambda a: _set_header(a, {**_header(a), "order": "5"}), "order")
    refused(lambda a: _set_header(a, {**_header(a), "order": 10**12}), "arrays")
    refused(lambda a: a.update(header=np.frombuffer(b"{not json", dtype=np.uint8)), "not JSON")

    # Edits with a recomputed checksum are caught by the structural checks.
    def unsorted_words(arrays: dict) -> None:
        arrays["words_1"] = arrays["words_1"][::-1].copy()
        _rehash(arrays)

    def word_outside(arrays: dict) -> None:
        arrays["words_2"] = arrays["words_2"].copy()
        arrays["words_2"][-1] = 60
        _rehash(arrays)

    def zero_count(arrays: dict) -> None:
        arrays["counts_4"] = arrays["counts_4"].copy()
        arrays["counts_4"][0] = 0
        _rehash(arrays)

    def fewer_contexts(arrays: dict) -> None:
        arrays["followers_3"] = arrays["followers_3"][:-1].copy()
        _rehash(arrays)

    def float_words(arrays: dict) -> None:
        arrays["words_1"] = arrays["words_1"].astype(np.float64)
        _rehash(arrays)

    refused(unsorted_words, "distinct and sorted")
    refused(word_outside, r"words_2 must lie in 0\.\.49")
    refused(zero_count, "counts_4")
    refused(fewer_contexts, "followers_3")
    refused(float_words, "integer")
