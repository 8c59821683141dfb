"""Interpolated modified Kneser-Ney: the n-gram baseline the LSTM has to beat.

The model follows Chen & Goodman (1998), "An Empirical Study of Smoothing Techniques for
Language Modeling", section 3 ("modified Kneser-Ney"), interpolated all the way down to a
uniform distribution over the vocabulary.

Notation. ``N`` is the model's order, ``V`` the vocabulary size, ``g = h w`` an n-gram of
length ``k`` made of a context ``h`` (``k - 1`` words) and a word ``w``; ``h'`` is ``h`` without
its first (oldest) word.

Counts. Each length ``k`` has its own count ``a_k``::

    a_N(g) = c(g)                  the raw count, at the highest order
    a_k(g) = N1+(. g)  (k < N)     the continuation count: how many distinct words precede g

Continuation counts are what makes Kneser-Ney good: a lower order is only consulted when the
longer context says little, so it should favour words that follow *many* contexts ("Francisco"
is frequent but almost always after "san"). The training stream has no sentence markers, so its
very first n-grams have no word before them; they count as preceded by one virtual boundary
symbol (which is never predicted). That keeps ``a_k(g) >= 1`` for every n-gram in the training
text.

Discounts. For each length ``k``, ``n_r`` is the number of distinct k-grams with ``a_k = r``
(the count-of-counts) and::

    Y   = n1 / (n1 + 2 n2)
    D1  = 1 - 2 Y n2 / n1          applied to n-grams with a_k = 1
    D2  = 2 - 3 Y n3 / n2          applied to n-grams with a_k = 2
    D3+ = 3 - 4 Y n4 / n3          applied to n-grams with a_k >= 3

On small data a count-of-counts can be 0 and a formula undefined or out of range. The rule here
(see :func:`modified_discounts`): ``D_r`` keeps the formula's value when it lies strictly inside
``(0, r)``; otherwise it becomes the single Ney et al. (1994) discount ``Y``, itself taken as
``0.5`` when there are no singletons at all. Every discount then lies in ``(0, r]``, so no count
goes negative and every seen context leaves some mass to the lower order.

Probabilities. With ``A_k(h) = sum_w a_k(h w)`` and ``N1(h.)``, ``N2(h.)``, ``N3+(h.)`` the
number of words ``w`` with ``a_k(h w)`` equal to 1, 2, and 3 or more::

    p_k(w | h) = max(a_k(h w) - D(a_k(h w)), 0) / A_k(h) + gamma_k(h) p_{k-1}(w | h')
    gamma_k(h) = (D1 N1(h.) + D2 N2(h.) + D3+ N3+(h.)) / A_k(h)
    p_0(w)     = 1 / V

The discounted mass is exactly what ``gamma`` hands down, so each ``p_k(. | h)`` sums to 1. A
context never seen in training (``A_k(h) = 0``) has no evidence, so ``p_k(w | h) = p_{k-1}(w |
h')``: it backs off fully. A context shorter than ``N - 1`` words (the start of a stream) is
scored at the length it has, i.e. by the lower-order distribution.

Word ids are ``0 .. V - 1``; id 0 is ``<unk>`` and is an ordinary word here, as it is for the
LSTM, so both models' perplexities are over the same vocabulary and comparable.

Run ``python bench/kneser_ney.py --help`` for the command line: it trains on all bundled plays
but a few and reports the held-out perplexity of orders 1..5.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

DEFAULT_HELDOUT_PLAYS = ("hamlet", "the-tempest", "julius-caesar")

NGram = tuple[int, ...]


def modified_discounts(count_of_counts: Sequence[int]) -> tuple[float, float, float]:
    """``(D1, D2, D3+)`` from the count-of-counts ``(n1, n2, n3, n4)`` of one n-gram length.

    Chen & Goodman's estimates, ``D_r = r - (r + 1) Y n_{r+1} / n_r`` with
    ``Y = n1 / (n1 + 2 n2)``. A value that is undefined (``n_r = 0``) or outside ``(0, r)``
    (which happens when ``n_{r+1} = 0``, or when the counts are far from Zipf-like) is replaced
    by ``Y``; ``Y`` itself is ``0.5`` when ``n1 = 0``. All three results lie in ``(0, r]``.

    >>> modified_discounts((4, 2, 1, 1))
    (0.5, 1.25, 1.0)
    """
    if len(count_of_counts) != 4 or any(n < 0 for n in count_of_counts):
        raise ValueError(f"expected four non-negative counts (n1, n2, n3, n4), got {tuple(count_of_counts)}")
    n = (0, *count_of_counts)  # n[r] = number of n-grams seen exactly r times
    y = n[1] / (n[1] + 2 * n[2]) if n[1] > 0 else 0.5
    discounts = []
    for r in (1, 2, 3):
        estimate = r - (r + 1) * y * n[r + 1] / n[r] if n[r] > 0 else math.nan
        discounts.append(estimate if 0.0 < estimate < r else y)  # nan fails the test too
    return discounts[0], discounts[1], discounts[2]


def _as_ids(ids: Iterable[int]) -> list[int]:
    """Plain Python ints: a tensor's or array's elements would hash differently from ints."""
    tolist = getattr(ids, "tolist", None)
    return [int(i) for i in (tolist() if tolist is not None else ids)]


class KneserNey:
    """An interpolated modified Kneser-Ney n-gram model over word ids ``0 .. vocab_size - 1``.

    Fitting stores, for each n-gram length ``k`` (``1 .. order``), two dicts:

    * ``_alpha[k][h + (w,)] = max(a_k(h w) - D, 0) / A_k(h)``, the n-gram's own discounted share;
    * ``_gamma[k][h]``, the context's back-off weight; a context that is missing was never seen.

    Scoring one word is then at most ``order`` pairs of dict look-ups. ``count_of_counts[k]`` and
    ``discounts[k]`` keep the ``(n1, n2, n3, n4)`` and ``(D1, D2, D3+)`` of length ``k``.
    """

    def __init__(self, order: int = 5) -> None:
        if order < 1:
            raise ValueError(f"the order must be 1 or more, got {order}")
        self.order = order
        self.vocab_size = 0
        self.count_of_counts: dict[int, tuple[int, int, int, int]] = {}
        self.discounts: dict[int, tuple[float, float, float]] = {}
        self._alpha: dict[int, dict[NGram, float]] = {}
        self._gamma: dict[int, dict[NGram, float]] = {}

    def __repr__(self) -> str:
        state = f"vocab_size={self.vocab_size}" if self.vocab_size else "not fitted"
        return f"KneserNey(order={self.order}, {state})"

    # ---- fitting -------------------------------------------------------------------------

    def fit(self, ids: Sequence[int], vocab_size: int) -> KneserNey:
        """Count the n-grams of one training stream of ids and precompute every weight."""
        stream = _as_ids(ids)
        if not stream:
            raise ValueError("cannot fit on an empty stream of ids")
        self._check_ids(stream, vocab_size)
        self.vocab_size = vocab_size
        self.count_of_counts, self.discounts, self._alpha, self._gamma = {}, {}, {}, {}

        # Highest order: raw counts. zip over shifted copies yields every window of length N.
        counts: dict[NGram, int] = Counter(zip(*(stream[j:] for j in range(self.order)), strict=False))
        for k in range(self.order, 0, -1):
            self._fit_length(k, counts)
            if k > 1:
                counts = self._continuation_counts(counts, tuple(stream[: k - 1]), k - 1)
        return self

    @staticmethod
    def _continuation_counts(longer: dict[NGram, int], stream_start: NGram, length: int) -> dict[NGram, int]:
        """``N1+(. g)`` for every ``length``-gram ``g``, from the distinct ``length + 1``-grams.

        Each distinct longer n-gram ``v g`` adds one to ``g``: one more word seen before it.
        Every ``length``-gram of the stream but the first is the suffix of some longer n-gram;
        the first one (``stream_start``) also gets one for the virtual boundary before the stream.
        """
        counts: dict[NGram, int] = Counter(ngram[1:] for ngram in longer)
        if len(stream_start) == length:  # else the stream is shorter than `length`
            counts[stream_start] += 1
        return counts

    def _fit_length(self, k: int, counts: dict[NGram, int]) -> None:
        """Discounts, ``alpha`` and ``gamma`` of n-gram length ``k`` from its counts ``a_k``."""
        by_count = Counter(counts.values())
        count_of_counts = (by_count[1], by_count[2], by_count[3], by_count[4])
        d1, d2, d3 = modified_discounts(count_of_counts)
        discount = (0.0, d1, d2, d3)  # indexed by min(count, 3)

        # Per context: [A_k(h), N1(h.), N2(h.), N3+(h.)].
        stats: dict[NGram, list[int]] = {}
        for ngram, count in counts.items():
            context = ngram[:-1]
            row = stats.get(context)
            if row is None:
                row = stats[context] = [0, 0, 0, 0]
            row[0] += count
            row[count if count < 3 else 3] += 1

        self._gamma[k] = {
            context: (d1 * n1 + d2 * n2 + d3 * n3) / total for context, (total, n1, n2, n3) in stats.items()
        }
        self._alpha[k] = {
            ngram: (count - discount[count if count < 3 else 3]) / stats[ngram[:-1]][0]
            for ngram, count in counts.items()
        }
        self.count_of_counts[k] = count_of_counts
        self.discounts[k] = (d1, d2, d3)

    # ---- scoring -------------------------------------------------------------------------

    def prob(self, context: Sequence[int], word: int) -> float:
        """``p(word | context)``; only the last ``order - 1`` ids of ``context`` matter."""
        self._check_fitted()
        if not 0 <= word < self.vocab_size:
            raise ValueError(f"word id {word} is outside the vocabulary 0..{self.vocab_size - 1}")
        return self._prob(self._context(context), word)

    def log_prob(self, context: Sequence[int], word: int) -> float:
        """``log p(word | context)``, natural log."""
        return math.log(self.prob(context, word))

    def prob_dist(self, context: Sequence[int]) -> np.ndarray:
        """``p(. | context)`` over the whole vocabulary, shape ``(vocab_size,)``; sums to 1."""
        self._check_fitted()
        context_ = self._context(context)
        probs = np.full(self.vocab_size, 1.0 / self.vocab_size)
        for k in range(1, len(context_) + 2):
            history = context_[len(context_) - k + 1 :]
            gamma = self._gamma[k].get(history)
            if gamma is None:
                break
            alpha = self._alpha[k]
            own = np.fromiter((alpha.get((*history, w), 0.0) for w in range(self.vocab_size)), float, self.vocab_size)
            probs = own + gamma * probs
        return probs

    def stream_log_probs(self, ids: Sequence[int]) -> np.ndarray:
        """``log p(ids[i] | ids[i - order + 1 : i])`` for every position, shape ``(len(ids),)``.

        The first tokens have shorter contexts (the first one none at all): the stream is
        scored on its own, with nothing from the training text before it.
        """
        self._check_fitted()
        stream = _as_ids(ids)
        self._check_ids(stream, self.vocab_size)
        width = self.order - 1
        prob = self._prob
        return np.array(
            [math.log(prob(tuple(stream[max(0, i - width) : i]), word)) for i, word in enumerate(stream)],
            dtype=float,
        )

    def perplexity(self, ids: Sequence[int]) -> float:
        """``exp(-mean log p)`` over a held-out stream, every token given its preceding ids."""
        log_probs = self.stream_log_probs(ids)
        if log_probs.size == 0:
            raise ValueError("cannot compute the perplexity of an empty stream")
        return float(np.exp(-log_probs.mean()))

    def _prob(self, context: NGram, word: int) -> float:
        # Interpolate upwards from the uniform distribution: p_k = alpha + gamma * p_{k-1}.
        # A context unseen at length k is unseen at every longer length too (its extension
        # would have made it a context here), so the first miss ends the climb.
        prob = 1.0 / self.vocab_size
        n = len(context)
        for k in range(1, n + 2):
            history = context[n - k + 1 :]
            gamma = self._gamma[k].get(history)
            if gamma is None:
                break
            prob = self._alpha[k].get((*history, word), 0.0) + gamma * prob
        return prob

    def _context(self, context: Sequence[int]) -> NGram:
        ids = _as_ids(context)
        return tuple(ids[max(0, len(ids) - self.order + 1) :])

    def _check_fitted(self) -> None:
        if not self.vocab_size:
            raise ValueError("the model is not fitted yet: call fit(ids, vocab_size) first")

    @staticmethod
    def _check_ids(ids: list[int], vocab_size: int) -> None:
        if vocab_size < 1:
            raise ValueError(f"the vocabulary size must be 1 or more, got {vocab_size}")
        if ids and (min(ids) < 0 or max(ids) >= vocab_size):
            raise ValueError(f"ids must lie in 0..{vocab_size - 1}, got {min(ids)}..{max(ids)}")


# --------------------------------------------------------------------------------------------
# Command line: held-out perplexity per order
# --------------------------------------------------------------------------------------------


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(
            "Held-out perplexity of an interpolated modified Kneser-Ney n-gram model, the baseline "
            "for the LSTM. By default it trains on every bundled play except the held-out ones."
        )
    )
    parser.add_argument("--train", type=Path, help="a training text file (with --heldout, instead of the plays)")
    parser.add_argument("--heldout", type=Path, help="a held-out text file (with --train)")
    parser.add_argument(
        "--plays-heldout",
        help=f"comma-separated bundled plays to hold out (default: {','.join(DEFAULT_HELDOUT_PLAYS)})",
    )
    parser.add_argument("--order", type=int, help="evaluate this order only (default: every order 1..--max-order)")
    parser.add_argument("--max-order", type=int, default=5, help="the highest order evaluated (default: 5)")
    parser.add_argument(
        "--min-word-freq",
        type=int,
        default=5,
        help="keep training words seen more than this many times, the rest are <unk> (default: 5)",
    )
    args = parser.parse_args(argv)
    if (args.train is None) != (args.heldout is None):
        parser.error("--train and --heldout go together")
    if args.train is not None and args.plays_heldout is not None:
        parser.error("choose text files (--train/--heldout) or --plays-heldout, not both")
    if (args.order is not None and args.order < 1) or args.max_order < 1:
        parser.error("orders must be 1 or more")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    # `python bench/kneser_ney.py` puts bench/, not the repository root, on sys.path.
    root = str(Path(__file__).resolve().parent.parent)
    if root not in sys.path:
        sys.path.insert(0, root)
    from lstm_core.corpus import CorpusError, bundled_plays, list_plays, text_from_file
    from lstm_core.data import prepare_pair

    start = time.perf_counter()
    try:
        if args.train is not None:
            train_text, heldout_text = text_from_file(args.train).text, text_from_file(args.heldout).text
            source = f"train {args.train}, held out {args.heldout}"
        else:
            heldout = [name.strip() for name in (args.plays_heldout or ",".join(DEFAULT_HELDOUT_PLAYS)).split(",")]
            heldout = [name for name in heldout if name]
            heldout_text = bundled_plays(heldout).text  # raises on unknown names
            training = [name for name in list_plays() if name not in heldout]
            train_text = bundled_plays(training).text
            source = f"{len(training)} plays trained on, held out: {', '.join(heldout)}"
        dataset = prepare_pair(train_text, heldout_text, args.min_word_freq)
    except (CorpusError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    train_ids, heldout_ids = dataset.train.tolist(), dataset.valid.tolist()
    vocab_size = len(dataset.vocab)
    heldout_unknown = sum(1 for i in heldout_ids if i == 0)
    print(source)
    print(
        f"vocabulary {vocab_size:,} words (min_word_freq {args.min_word_freq}); "
        f"train {len(train_ids):,} tokens, held out {len(heldout_ids):,} tokens "
        f"({heldout_unknown / len(heldout_ids):.1%} <unk>); text prepared in {time.perf_counter() - start:.1f} s"
    )
    print(f"{'order':>5} {'perplexity':>11} {'fit s':>7} {'score s':>8}  discounts (D1, D2, D3+) of the top order")
    orders = [args.order] if args.order is not None else range(1, args.max_order + 1)
    for order in orders:
        model = KneserNey(order)
        start = time.perf_counter()
        model.fit(train_ids, vocab_size)
        fitted = time.perf_counter()
        perplexity = model.perplexity(heldout_ids)
        scored = time.perf_counter()
        discounts = ", ".join(f"{d:.3f}" for d in model.discounts[order])
        print(f"{order:>5} {perplexity:>11.2f} {fitted - start:>7.2f} {scored - fitted:>8.2f}  ({discounts})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
