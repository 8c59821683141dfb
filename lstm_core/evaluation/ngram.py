"""Interpolated modified Kneser-Ney n-gram models over word ids: the baselines the LSTM has to beat.

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
(see :func:`~lstm_core.evaluation.ngram_tables.modified_discounts`): ``D_r`` keeps the formula's
value when it lies strictly inside ``(0, r)``; otherwise it becomes the single Ney et al. (1994)
discount ``Y``, itself taken as ``0.5`` when there are no singletons at all. Every discount then
lies in ``(0, r]``, so no count goes negative and every seen context leaves some mass to the lower
order.

Probabilities. With ``A_k(h) = sum_w a_k(h w)`` and ``N1(h.)``, ``N2(h.)``, ``N3+(h.)`` the
number of words ``w`` with ``a_k(h w)`` equal to 1, 2, and 3 or more::

    p_k(w | h) = max(a_k(h w) - D(a_k(h w)), 0) / A_k(h) + gamma_k(h) p_{k-1}(w | h')
    gamma_k(h) = (D1 N1(h.) + D2 N2(h.) + D3+ N3+(h.)) / A_k(h)
    p_0(w)     = 1 / V

The discounted mass is exactly what ``gamma`` hands down, so each ``p_k(. | h)`` sums to 1. A
context never seen in training (``A_k(h) = 0``) has no evidence, so ``p_k(w | h) = p_{k-1}(w |
h')``: it backs off fully. A context shorter than ``N - 1`` words (the start of a stream) is
scored at the length it has, i.e. by the lower-order distribution. Order 0 is the uniform
distribution itself, and order 1 a unigram with absolute discounts whose freed mass is spread
evenly over the vocabulary (so a word never seen in training, such as ``<unk>`` when nothing was
replaced, still gets a small, finite probability).

Word ids are ``0 .. V - 1``; id 0 is ``<unk>`` and is an ordinary word here, as it is for the
LSTM, so both models' perplexities are over the same vocabulary and comparable.

How the n-grams are counted and the weights kept, one compressed table per length, is
:mod:`lstm_core.evaluation.ngram_tables`; this module is the model that reads them, and its file.
"""

from __future__ import annotations

import hashlib
import json
import math
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lstm_core.errors import InputError
from lstm_core.evaluation.ngram_tables import MAX_KEY, Level, NGramCounts, as_ids, check_range, lookup
from lstm_core.files import atomic_write
from lstm_core.text.vocab import Vocab

_FORMAT = "lstm-playhouse-ngram"
_VERSION = 1


def fit_kneser_ney(ids: object, vocab_size: int, orders: Sequence[int]) -> dict[int, KneserNey]:
    """Fit one model per order on the same training ids, counting the n-grams only once.

    ``ids`` is a 1-D sequence, array or tensor of word ids in ``0 .. vocab_size - 1``. Models of
    different orders share the arrays of the levels they have in common (read-only).
    """
    if vocab_size < 1:
        raise InputError(f"the vocabulary size must be 1 or more, got {vocab_size}")
    if not orders:
        raise InputError("give at least one order to fit")
    for order in orders:
        if isinstance(order, bool) or not isinstance(order, int | np.integer) or order < 0:
            raise InputError(f"an order must be a whole number, 0 or more, got {order!r}")
    stream = as_ids(ids, "the training ids")
    if stream.size == 0:
        raise InputError("cannot fit an n-gram model on an empty stream of ids")
    check_range(stream, vocab_size, "the training ids")
    if stream.size * vocab_size >= MAX_KEY:
        raise InputError(f"{stream.size:,} training ids over {vocab_size:,} words are too many to count")
    counts = NGramCounts(stream, vocab_size, max(orders))
    models = {}
    for order in orders:
        levels = [counts.level(k, top=k == order) for k in range(1, order + 1)]
        models[int(order)] = KneserNey._from_levels(int(order), vocab_size, levels)
    return models


class KneserNey:
    """An interpolated modified Kneser-Ney n-gram model over word ids ``0 .. vocab_size - 1``.

    ``KneserNey(5).fit(train_ids, vocab_size)`` counts and precomputes every weight (see the
    module docstring for the maths and the arrays); then :meth:`perplexity` scores a stream,
    :meth:`next_log_probs` gives the whole next-word distribution after a context, and
    :meth:`save` / :meth:`load` keep the model in a plain ``.npz`` file. ``count_of_counts[k]``
    and ``discounts[k]`` are the ``(n1, n2, n3, n4)`` and ``(D1, D2, D3+)`` of length ``k``.
    Order 0 is the uniform distribution.
    """

    def __init__(self, order: int = 5) -> None:
        if isinstance(order, bool) or not isinstance(order, int) or order < 0:
            raise InputError(f"the order must be a whole number, 0 or more, got {order!r}")
        self.order = order
        self.vocab_size = 0
        self._levels: list[Level] = []  # _levels[k - 1] is length k

    @classmethod
    def _from_levels(cls, order: int, vocab_size: int, levels: list[Level]) -> KneserNey:
        model = cls(order)
        model.vocab_size = vocab_size
        model._levels = levels
        return model

    def __repr__(self) -> str:
        state = f"vocab_size={self.vocab_size}, {self.ngrams:,} n-grams" if self.vocab_size else "not fitted"
        return f"KneserNey(order={self.order}, {state})"

    @property
    def count_of_counts(self) -> dict[int, tuple[int, int, int, int]]:
        return {k: level.count_of_counts for k, level in enumerate(self._levels, 1)}

    @property
    def discounts(self) -> dict[int, tuple[float, float, float]]:
        return {k: level.discounts for k, level in enumerate(self._levels, 1)}

    @property
    def ngrams(self) -> int:
        """How many n-grams (of every length) the model holds."""
        return sum(level.keys.size for level in self._levels)

    @property
    def nbytes(self) -> int:
        """Memory held by the model's arrays (levels shared with other models counted in full)."""
        return sum(level.nbytes for level in self._levels)

    # ---- fitting -------------------------------------------------------------------------

    def fit(self, ids: object, vocab_size: int) -> KneserNey:
        """Count the n-grams of one training stream of ids and precompute every weight."""
        fitted = fit_kneser_ney(ids, vocab_size, [self.order])[self.order]
        self.vocab_size, self._levels = fitted.vocab_size, fitted._levels
        return self

    # ---- scoring -------------------------------------------------------------------------

    def prob(self, context: object, word: int) -> float:
        """``p(word | context)``; only the last ``order - 1`` ids of ``context`` matter."""
        self._check_fitted()
        if not 0 <= word < self.vocab_size:
            raise InputError(f"word id {word} is outside the vocabulary 0..{self.vocab_size - 1}")
        return float(self.prob_dist(context)[word])

    def log_prob(self, context: object, word: int) -> float:
        """``log p(word | context)``, natural log."""
        return math.log(self.prob(context, word))

    def prob_dist(self, context: object) -> np.ndarray:
        """``p(. | context)`` over the whole vocabulary, float64 of shape ``(vocab_size,)``; sums to 1."""
        self._check_fitted()
        history = as_ids(context, "the context")
        check_range(history, self.vocab_size, "the context")
        history = history[max(0, history.size - self.order + 1) :] if self.order > 1 else history[:0]
        probs = np.full(self.vocab_size, 1.0 / self.vocab_size)
        # Interpolate upwards from the uniform distribution: p_k = alpha + gamma * p_{k-1}.
        for k in range(1, min(history.size + 1, self.order) + 1):
            context_index = self._index_of(history[history.size - k + 1 :])
            if context_index < 0:
                break  # an unseen (k-1)-gram: every longer context is unseen too
            level = self._levels[k - 1]
            start, end = level.offsets[context_index], level.offsets[context_index + 1]
            probs *= level.gamma[context_index]
            probs[level.keys[start:end] - context_index * self.vocab_size] += level.alpha[start:end]
        return probs

    def next_log_probs(self, context_ids: Sequence[int]) -> torch.Tensor:
        """Log-probabilities of every next word after ``context_ids``: float32, shape ``(vocab_size,)``.

        Normalised (their exponentials sum to 1), so the project's samplers, which work on
        log-probabilities, can continue a prime with the n-gram model as they do with the LSTM.
        """
        return torch.from_numpy(np.log(self.prob_dist(context_ids)).astype(np.float32))

    def token_log_probs(self, ids: object) -> np.ndarray:
        """``log p(ids[i] | the ids before it)`` for ``i = 1 .. len(ids) - 1``: shape ``(len(ids) - 1,)``.

        As in the LSTM's evaluation, the first id is given, not predicted, and each later one is
        predicted from the ones before it (here the last ``order - 1`` of them), with nothing
        from the training text before the stream.
        """
        self._check_fitted()
        stream = as_ids(ids, "the ids to score")
        check_range(stream, self.vocab_size, "the ids to score")
        size, vocab_size = stream.size, self.vocab_size
        probs = np.full(max(size - 1, 0), 1.0 / vocab_size)
        # grams[j][p] = index of the j-gram stream[p : p + j] among the training j-grams, -1 if unseen.
        grams = [np.zeros(size + 1, dtype=np.int64)]
        for j in range(1, self.order):
            previous = grams[-1][: max(size - j + 1, 0)]
            found = lookup(self._levels[j - 1].keys, previous * vocab_size + stream[j - 1 :])
            grams.append(np.where(previous >= 0, found, -1))
        for k in range(1, self.order + 1):
            first = max(1, k - 1)  # the first position with k - 1 words before it
            level = self._levels[k - 1]
            if first >= size or level.gamma.size == 0:
                break  # no position has a context this long, or training had none
            context = grams[k - 1][first - k + 1 : size - k + 1]  # the (k-1)-gram before each position
            seen = context >= 0
            found = lookup(level.keys, context * vocab_size + stream[first:])
            found = np.where(seen, found, -1)
            alpha = np.where(found >= 0, level.alpha[np.maximum(found, 0)], 0.0) if level.alpha.size else 0.0
            gamma = level.gamma[np.where(seen, context, 0)]
            lower = probs[first - 1 :]
            probs[first - 1 :] = np.where(seen, alpha + gamma * lower, lower)
        return np.log(probs)

    def perplexity(self, ids: object) -> float:
        """``exp(-mean log p)`` over the ids after the first, each given the ids before it."""
        log_probs = self.token_log_probs(ids)
        if log_probs.size == 0:
            raise InputError("a perplexity needs at least 2 ids: the first one is only context")
        return float(np.exp(-log_probs.mean()))

    def _index_of(self, gram: np.ndarray) -> int:
        """Index of ``gram`` among the training n-grams of its length (-1 if unseen); () is 0."""
        index = 0
        for j, word in enumerate(gram.tolist(), 1):
            keys = self._levels[j - 1].keys
            key = index * self.vocab_size + word
            position = int(np.searchsorted(keys, key))
            if position == keys.size or keys[position] != key:
                return -1
            index = position
        return index

    def _check_fitted(self) -> None:
        if not self.vocab_size:
            raise InputError("the model is not fitted yet: call fit(ids, vocab_size) first")

    # ---- plain files ---------------------------------------------------------------------

    def save(self, path: Path | str, vocab: Vocab | None = None) -> None:
        """Write the model to ``path`` as a compressed ``.npz`` of integer arrays (no pickle).

        The file holds, for each length ``k``, the words, the counts ``a_k`` and the number of
        followers of every context; loading recomputes the discounts and weights from them with
        the same code as fitting, so a loaded model gives the same probabilities bit for bit,
        and any file that passes :meth:`load`'s checks is a normalised model. A JSON header
        records the order, the vocabulary size, a SHA-256 of the arrays and, given ``vocab``, a
        fingerprint of its words, which :meth:`load` can check. At most ``order * T`` n-grams
        for ``T`` training ids, each stored in at most 12 bytes before compression.
        """
        self._check_fitted()
        if vocab is not None and len(vocab) != self.vocab_size:
            raise InputError(f"the vocabulary has {len(vocab)} words but the model {self.vocab_size}")
        arrays = self._arrays()
        header = {
            "format": _FORMAT,
            "version": _VERSION,
            "order": self.order,
            "vocab_size": self.vocab_size,
            "vocab_sha256": _vocab_fingerprint(vocab) if vocab is not None else None,
            "arrays_sha256": _digest(arrays),
        }
        header_bytes = np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8)
        payload: dict[str, Any] = {"header": header_bytes, **arrays}
        atomic_write(path, lambda file: np.savez_compressed(file, **payload))

    @classmethod
    def load(cls, path: Path | str, vocab: Vocab | None = None) -> KneserNey:
        """Read a model written by :meth:`save`; a missing, truncated or altered file raises InputError.

        Given ``vocab``, the model must have been saved with the same vocabulary's words.
        """
        path = Path(path)
        if not path.is_file():
            raise InputError(f"no n-gram model file at {path}")
        try:
            with np.load(path, allow_pickle=False) as archive:
                arrays = {name: archive[name] for name in archive.files}
        except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile, zlib.error) as error:
            raise InputError(
                f"cannot read the n-gram model in {path} (truncated or not a model file): {error}"
            ) from None
        try:
            return cls._from_arrays(arrays, vocab)
        except InputError as error:
            raise InputError(f"the n-gram model in {path} is not usable: {error}") from None

    def _arrays(self) -> dict[str, np.ndarray]:
        arrays = {}
        for k, level in enumerate(self._levels, 1):
            words = level.keys - np.repeat(np.arange(level.offsets.size - 1), np.diff(level.offsets)) * self.vocab_size
            arrays[f"words_{k}"] = words.astype(np.min_scalar_type(self.vocab_size))
            arrays[f"counts_{k}"] = level.counts.astype(np.min_scalar_type(int(level.counts.max(initial=0))))
            followers = np.diff(level.offsets)
            arrays[f"followers_{k}"] = followers.astype(np.min_scalar_type(int(followers.max(initial=0))))
        return arrays

    @classmethod
    def _from_arrays(cls, arrays: dict[str, np.ndarray], vocab: Vocab | None) -> KneserNey:
        header = _read_header(arrays.pop("header", None))
        order, vocab_size = header["order"], header["vocab_size"]
        if 3 * order != len(arrays):  # before building names from an order nobody checked yet
            raise InputError(f"an order-{order} model has {3 * order} arrays, the file has {len(arrays)}")
        expected = {f"{name}_{k}" for k in range(1, order + 1) for name in ("words", "counts", "followers")}
        if set(arrays) != expected:
            raise InputError(f"expected the arrays {sorted(expected)}, found {sorted(arrays)}")
        if _digest(arrays) != header["arrays_sha256"]:
            raise InputError("its arrays do not match the checksum written with them: the file was altered")
        if vocab is not None:
            if len(vocab) != vocab_size:
                raise InputError(f"it was built over {vocab_size} words, but the vocabulary has {len(vocab)}")
            if header["vocab_sha256"] not in (None, _vocab_fingerprint(vocab)):
                raise InputError("it was built with a different vocabulary")
        levels: list[Level] = []
        contexts = 1
        for k in range(1, order + 1):
            words, counts, followers = (arrays[f"{name}_{k}"] for name in ("words", "counts", "followers"))
            for name, array in (("words", words), ("counts", counts), ("followers", followers)):
                if array.ndim != 1 or array.dtype.kind not in "iu":
                    raise InputError(f"{name}_{k} must be a 1-D integer array")
            words, counts, followers = (a.astype(np.int64) for a in (words, counts, followers))
            if followers.size != contexts or followers.min(initial=0) < 0 or followers.sum() != words.size:
                raise InputError(f"followers_{k} does not match the {contexts} contexts and {words.size} words")
            if counts.size != words.size or counts.min(initial=1) < 1:
                raise InputError(f"counts_{k} must hold one count of 1 or more per word")
            check_range(words, vocab_size, f"words_{k}")
            if contexts * vocab_size >= MAX_KEY:
                raise InputError(f"{contexts:,} contexts over {vocab_size:,} words are too many")
            keys = np.repeat(np.arange(contexts, dtype=np.int64), followers) * vocab_size + words
            if keys.size > 1 and not (np.diff(keys) > 0).all():
                raise InputError(f"the words of each context in words_{k} must be distinct and sorted")
            levels.append(Level.build(keys, counts, contexts, vocab_size))
            contexts = words.size
        return cls._from_levels(order, vocab_size, levels)


def _read_header(header: np.ndarray | None) -> dict:
    if header is None or header.ndim != 1 or header.dtype != np.uint8:
        raise InputError("its header is missing")
    try:
        data = json.loads(header.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"its header is not JSON: {error}") from None
    if not isinstance(data, dict) or data.get("format") != _FORMAT:
        raise InputError("it is not an n-gram model (its header's 'format' is missing or wrong)")
    if data.get("version") != _VERSION:
        raise InputError(f"unsupported n-gram model version {data.get('version')!r}")
    order, vocab_size = data.get("order"), data.get("vocab_size")
    if not isinstance(order, int) or isinstance(order, bool) or order < 0:
        raise InputError(f"its order must be a whole number, 0 or more, got {order!r}")
    if not isinstance(vocab_size, int) or isinstance(vocab_size, bool) or vocab_size < 1:
        raise InputError(f"its vocabulary size must be a whole number, 1 or more, got {vocab_size!r}")
    if not isinstance(data.get("arrays_sha256"), str) or not isinstance(data.get("vocab_sha256"), str | None):
        raise InputError("its checksums are missing")
    return data


def _digest(arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 over every array's name, dtype, shape and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}:{array.dtype.str}:{array.shape};".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _vocab_fingerprint(vocab: Vocab) -> str:
    """SHA-256 of the vocabulary's words in id order: what the model's ids mean."""
    return hashlib.sha256(json.dumps(vocab.itos, ensure_ascii=False).encode("utf-8")).hexdigest()
