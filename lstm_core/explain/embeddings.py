"""Word vectors: the words nearest a word, and the most frequent words on a 2-D map (PCA).

The vectors are the rows of the model's embedding, ``(V, E)`` (which is also the output layer
when the weights are tied); ``N`` is the number of words chosen for a map.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from lstm_core.errors import InputError
from lstm_core.explain.inspection import check_count
from lstm_core.text.cleaning import tokenize
from lstm_core.text.vocab import UNK_INDEX, Vocab


def _check_embedding(embedding: Tensor) -> Tensor:
    if embedding.dim() != 2 or embedding.size(0) < 2:
        raise InputError(f"an embedding must be (words, size) with at least 2 words, got {tuple(embedding.shape)}")
    return embedding.detach().double().cpu()


def nearest_words(embedding: Tensor, vocab: Vocab, word: str, k: int = 10) -> list[tuple[str, float]]:
    """The ``k`` words whose vectors point most nearly the same way as ``word``'s, with their cosine similarity.

    ``embedding (V, E)`` is e.g. ``model.embedding.weight`` (which is also the output layer when
    the weights are tied). ``word`` is cleaned like a text; the word itself and ``<unk>`` (a
    stand-in for many rare words, not a word) are left out. Most similar first.
    """
    check_count(k)
    vectors = _check_embedding(embedding)
    if vectors.size(0) != len(vocab):
        raise InputError(f"the embedding has {vectors.size(0)} rows but the vocabulary {len(vocab)} words")
    cleaned = tokenize(word)
    if len(cleaned) != 1:
        raise InputError(f"give one word to find neighbours of, got {word!r}")
    if cleaned[0] not in vocab:
        raise InputError(f"{cleaned[0]!r} is not in the vocabulary, so it has no vector of its own")
    index = vocab.index(cleaned[0])
    norms = vectors.norm(dim=1).clamp_min(torch.finfo(torch.float64).tiny)
    cosine = (vectors @ vectors[index]) / (norms * norms[index])  # (V,)
    cosine[index] = -math.inf
    cosine[UNK_INDEX] = -math.inf
    best = torch.topk(cosine, min(k, vectors.size(0) - 2)).indices  # the word and <unk> are out
    return [(vocab.itos[i], float(cosine[i])) for i in best.tolist()]


def most_frequent_ids(vocab: Vocab, count: int = 300) -> Tensor:
    """The ids of the ``count`` most frequent words, ``<unk>`` left out, ``(N,)``.

    The vocabulary keeps words in frequency order, so these are ids ``1 .. count``.
    """
    check_count(count)
    return torch.arange(1, min(count + 1, len(vocab)), dtype=torch.long)


def pca_2d(embedding: Tensor, ids: Tensor | Sequence[int]) -> Tensor:
    """The chosen words' vectors on their two principal axes: ``embedding (V, E)``, ``ids (N,)`` -> ``(N, 2)``.

    The vectors are centred on their mean and projected on the two directions of greatest
    variance among them (float32 result; axis 0 has the most variance). An axis's sign is
    arbitrary to the maths, so each is turned to make the word farthest from the centre along it
    positive: the same vectors always give the same map. When the words span fewer than two
    directions, the missing axis is all zeros.
    """
    vectors = _check_embedding(embedding)
    ids = torch.as_tensor(ids)
    if ids.dim() != 1 or ids.numel() < 2:
        raise InputError(f"choose at least 2 words to project (ids of shape (N,)), got shape {tuple(ids.shape)}")
    if ids.dtype.is_floating_point or ids.dtype == torch.bool:
        raise InputError(f"word ids must be integers, got {ids.dtype}")
    if int(ids.min()) < 0 or int(ids.max()) >= vectors.size(0):
        raise InputError(f"word ids must lie in [0, {vectors.size(0)})")
    chosen = vectors[ids.long().cpu()]
    centred = chosen - chosen.mean(0)
    # Rows of vh are the principal directions, by decreasing singular value.
    _, singular, vh = torch.linalg.svd(centred, full_matrices=False)
    projected = torch.zeros(chosen.size(0), 2, dtype=torch.float64)
    scale = singular[0] if singular.numel() else 0.0
    for axis in range(min(2, singular.numel())):
        if singular[axis] <= 1e-9 * scale:  # no spread left along this axis: leave it at 0
            continue
        coordinate = centred @ vh[axis]
        if coordinate[coordinate.abs().argmax()] < 0:
            coordinate = -coordinate
        projected[:, axis] = coordinate
    return projected.float()
