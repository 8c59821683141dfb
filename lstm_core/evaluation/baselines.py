"""Baselines for the perplexity chart: what a model that knows nothing, or only word counts, scores.

Visitors ask what a good loss is. The answer is a few reference models, all trained on the same
training ids over the same vocabulary as the LSTM, and scored on the same validation ids with
``<unk>`` (id 0) an ordinary word for every one of them:

* **uniform** (order 0): every word has probability ``1 / V``, so the perplexity is ``V``, the
  vocabulary size. Any model that learned anything beats it.
* **unigram** (order 1): word frequencies, ignoring context. Each count ``c(w)`` loses a modified
  Kneser-Ney discount (absolute discounting, ``D`` in ``(0, 3]``) and the freed mass is spread
  evenly over the whole vocabulary, so a word with count 0 keeps a finite probability: with
  ``min_word_freq`` 0 nothing is replaced by ``<unk>`` and its training count is 0, yet
  ``p(<unk>) = sum of discounts / (T V) > 0`` (1.3e-6 on the plays). The freed mass is small: on
  the plays 0.5% with ``min_word_freq`` 5 (every word seen 6 times or more, ``D = 0.5``), 3.6%
  with ``min_word_freq`` 0 (27,075 words, 12,024 of them seen once).
* **bigram** (order 2) and longer **n-grams** (up to 5): interpolated modified Kneser-Ney
  (:mod:`lstm_core.evaluation.ngram`). The bigram is Kneser-Ney too, not a simply smoothed (add-one) bigram:
  add-one gives each of the ``V**2`` possible pairs a pseudo-count, which on a 7,000-word
  vocabulary hands most of the probability mass to pairs never seen and makes the bigram look
  far worse than a bigram can be. A baseline should be the best its context length allows, so
  that "better than the bigram" means something; and one family of models means each step up
  the chart is exactly one more word of context.

Perplexities are counted as the LSTM's :func:`lstm_core.evaluation.scoring.evaluate` counts them: every token
after the first is predicted from the ones before it, and the perplexity is ``exp`` of the mean
negative log-probability. ``evaluate`` cuts the stream into (at most 16) rows, so it also leaves
out the first token of each later row and the fewer than 16 tokens left over at the end; on the
plays' 41,315 validation words it scores 41,296 tokens where the baselines score 41,314, and
scoring the baselines its way moves their perplexities by 0.02% at most
(``bench/bench_baselines.py`` prints the figures).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

from lstm_core.data.dataset import Dataset
from lstm_core.errors import InputError
from lstm_core.evaluation.ngram import KneserNey, fit_kneser_ney

MAX_ORDER = 5
DEFAULT_ORDERS: tuple[int, ...] = (0, 1, 2, 5)
"""Uniform, unigram, bigram and 5-gram: on the plays the 3- and 4-gram lie within 1% of the 5-gram."""

_NAMES = {0: "uniform", 1: "unigram", 2: "bigram", 3: "trigram"}


def baseline_name(order: int) -> str:
    """``"uniform"``, ``"unigram"``, ``"bigram"``, ``"trigram"``, then ``"4-gram"``, ``"5-gram"``."""
    return _NAMES.get(order, f"{order}-gram")


def baseline_label(order: int) -> str:
    """The chart's label of a baseline line: its name, with the smoothing for orders 2 and up."""
    return baseline_name(order) if order < 2 else f"{baseline_name(order)} (Kneser-Ney)"


@dataclass(frozen=True)
class Baseline:
    """One baseline's validation perplexity, as plain data (``to_dict`` gives JSON-ready values).

    ``order`` is the n-gram order (0 for uniform), ``name`` the short name used in sentences,
    ``label`` the chart's label, and ``tokens`` the number of tokens scored.
    """

    order: int
    name: str
    label: str
    perplexity: float
    tokens: int

    @property
    def phrase(self) -> str:
        """How a sentence names it: "uniform guessing", "the bigram"."""
        return "uniform guessing" if self.order == 0 else f"the {self.name}"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping) -> Baseline:
        """Read back :meth:`to_dict`'s form (e.g. from a run's JSON file), checking every field."""
        if not isinstance(data, Mapping):
            raise InputError(f"a baseline must be a mapping, got {type(data).__name__}")
        fields: dict[str, type | tuple[type, ...]] = {
            "order": int,
            "name": str,
            "label": str,
            "perplexity": (int, float),
            "tokens": int,
        }
        for key, kind in fields.items():
            value = data.get(key)
            if isinstance(value, bool) or not isinstance(value, kind):
                raise InputError(f"a baseline's {key!r} is missing or of the wrong type: {value!r}")
        if data["order"] < 0 or data["tokens"] < 1 or not data["perplexity"] >= 1.0:
            raise InputError(f"a baseline needs an order >= 0, tokens >= 1 and a perplexity >= 1, got {dict(data)}")
        return cls(data["order"], data["name"], data["label"], float(data["perplexity"]), data["tokens"])


def _check_orders(orders: Sequence[int]) -> tuple[int, ...]:
    if not orders:
        raise InputError("give at least one baseline order")
    for order in orders:
        if isinstance(order, bool) or not isinstance(order, int) or not 0 <= order <= MAX_ORDER:
            raise InputError(f"baseline orders run from 0 (uniform) to {MAX_ORDER}, got {order!r}")
    if len(set(orders)) != len(orders):
        raise InputError(f"each baseline order once, please: got {tuple(orders)}")
    return tuple(sorted(orders))


def fit_baselines(train_ids: object, vocab_size: int, orders: Sequence[int] = DEFAULT_ORDERS) -> dict[int, KneserNey]:
    """One model per order (0 = uniform, 1 = unigram, 2.. = Kneser-Ney), counted in one pass.

    ``train_ids`` is the 1-D training id stream (tensor, array or list).
    """
    return fit_kneser_ney(train_ids, vocab_size, _check_orders(orders))


def score_baselines(models: Mapping[int, KneserNey], ids: object) -> list[Baseline]:
    """Each model's perplexity on the id stream ``ids``, lowest order first."""
    baselines = []
    for order in sorted(models):
        model = models[order]
        log_probs = model.token_log_probs(ids)
        if log_probs.size == 0:
            raise InputError("scoring needs at least 2 ids: the first one is only context")
        perplexity = float(math.exp(-log_probs.mean()))
        baselines.append(Baseline(order, baseline_name(order), baseline_label(order), perplexity, log_probs.size))
    return baselines


def baseline_perplexities(dataset: Dataset, orders: Sequence[int] = DEFAULT_ORDERS) -> list[Baseline]:
    """Fit every baseline on ``dataset.train`` and score it on ``dataset.valid``: one call, plain data.

    About a second with one thread on the full bundled plays (0.74 million training words); see
    ``bench/bench_baselines.py``.
    """
    return score_baselines(fit_baselines(dataset.train, len(dataset.vocab), orders), dataset.valid)
