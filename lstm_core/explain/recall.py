"""Why gates: a memory test. Does the model remember a name it read N words ago?

The page builds the texts itself. For each of ``K`` character names and each distance ``N``::

    o <name> <N - 2 words of a fixed passage> o  ->  which name comes next?

Shakespeare's characters call each other "o romeo", "o cassio": after the second "o" a name is
likely, and the one read ``N`` words before is the one a model with a memory should expect more
than it would otherwise. The passage is the same for every name, so the ``K`` texts of a distance
differ only in the name read, and a name's probability at the end of the text where it was read,
against its probability at the end of the other ``K - 1`` texts, is what the memory adds; a
name's own frequency (romeo is more common than benedick) cancels out. :func:`recall_test` gives,
per distance:

* the **gain**: ``log p(name | it was read) - mean log p(name | another was read)``, averaged over
  the names, in nats; ``exp(gain)`` is how many times more likely the memory makes the name, 1
  when the model has forgotten it;
* the **accuracy**: the share of names that the model expects most at the end of the text where
  it read them (of the ``K`` texts); chance is ``1/K``.

The ``K`` texts of a distance go through the model as one batch.

Shapes: ``K`` names, ``N`` the distance in words.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from lstm_core.errors import InputError
from lstm_core.model.network import LSTMLanguageModel, inference
from lstm_core.text.cleaning import tokenize
from lstm_core.text.vocab import Vocab

NAMES = (
    "romeo",
    "juliet",
    "caesar",
    "antonio",
    "falstaff",
    "rosalind",
    "cassio",
    "iago",
    "desdemona",
    "macbeth",
    "benedick",
    "richard",
)
"""Character names from the plays, each seen more than five times in them (a word of the models' vocabulary)."""

CUE = "o"

PASSAGE = """Shall I compare thee to a summer's day? Thou art more lovely and more temperate:
Rough winds do shake the darling buds of May, and summer's lease hath all too short a date;
Sometime too hot the eye of heaven shines, and often is his gold complexion dimm'd;
And every fair from fair sometime declines, by chance or nature's changing course untrimm'd;
But thy eternal summer shall not fade, nor lose possession of that fair thou ow'st;
Nor shall death brag thou wander'st in his shade, when in eternal lines to time thou grow'st:
So long as men can breathe or eyes can see, so long lives this, and this gives life to thee."""
"""The words between the name and the question (sonnet 18: no name in it), repeated as far as needed."""

DISTANCES = (2, 5, 10, 20, 40, 80)
"""The distances the page tries: from the next-but-one word to about two speeches back."""

MAX_DISTANCE = 200
"""The farthest distance :func:`recall_test` accepts: ``K`` texts of this many words each."""

MIN_NAMES = 4


@dataclass(frozen=True)
class RecallResult:
    """One model's memory test: per distance, the gain in nats and the accuracy (see the module's docstring)."""

    names: tuple[str, ...]
    distances: tuple[int, ...]
    gain: tuple[float, ...]
    accuracy: tuple[float, ...]

    @property
    def chance(self) -> float:
        """The accuracy of a model without memory: one name in ``K``."""
        return 1 / len(self.names)

    @property
    def times_more_likely(self) -> tuple[float, ...]:
        """``exp(gain)`` per distance: how many times more likely having read the name makes it."""
        return tuple(math.exp(gain) for gain in self.gain)


def passage_words(count: int) -> list[str]:
    """The first ``count`` words of :data:`PASSAGE`, repeated as often as needed."""
    words = tokenize(PASSAGE)
    return (words * (count // len(words) + 1))[:count]


def usable_names(vocabs: Sequence[Vocab], names: Sequence[str] = NAMES) -> list[str]:
    """The ``names`` every vocabulary knows (and the cue word), in order; fewer than :data:`MIN_NAMES` is refused."""
    known = [name for name in names if all(name in vocab.stoi for vocab in vocabs)]
    if len(known) < MIN_NAMES or not all(CUE in vocab.stoi for vocab in vocabs):
        raise InputError(
            f"the memory test needs at least {MIN_NAMES} of the names {', '.join(names)} and the word "
            f"{CUE!r} in every model's vocabulary; models trained on other texts than the plays may lack them"
        )
    return known


def recall_texts(names: Sequence[str], distance: int) -> list[list[str]]:
    """The ``K`` texts of one distance: ``o <name> <distance - 2 words> o``, one per name."""
    if not 2 <= distance <= MAX_DISTANCE:
        raise InputError(f"a distance must lie in [2, {MAX_DISTANCE}] words, got {distance}")
    middle = passage_words(distance - 2)
    return [[CUE, name, *middle, CUE] for name in names]


def recall_test(
    model: LSTMLanguageModel, vocab: Vocab, names: Sequence[str], distances: Sequence[int] = DISTANCES
) -> RecallResult:
    """How much ``model`` remembers a name read ``N`` words before, for each ``N`` in ``distances``.

    One batch ``(K, N + 1)`` per distance, in eval mode without autograd; the gain and the accuracy
    are the module docstring's (a tie counts as not recalled: a model that cannot tell the texts
    apart has not remembered).
    """
    if len(names) < 2:
        raise InputError("the memory test needs at least two names to compare")
    count = len(names)
    name_ids = torch.tensor(vocab.encode(list(names)), device=model.device)  # (K,)
    same = torch.eye(count, dtype=torch.bool, device=model.device)
    gain, accuracy = [], []
    with inference(model):
        for distance in distances:
            ids = torch.tensor([vocab.encode(text) for text in recall_texts(names, distance)], device=model.device)
            hidden, _ = model(ids)  # (K, N + 1, H)
            # (K, K): row i = the text where name i was read, column j = name j's log-prob at its end
            log_probs = model.log_probs(hidden[:, -1])[:, name_ids].double()
            read = log_probs.diagonal()  # (K,)
            elsewhere = log_probs.masked_fill(same, 0.0).sum(dim=0) / (count - 1)  # (K,): column means off the diagonal
            gain.append(float((read - elsewhere).mean()))
            best_elsewhere = log_probs.masked_fill(same, -torch.inf).amax(dim=0)
            accuracy.append(float((read > best_elsewhere).double().mean()))
    return RecallResult(tuple(names), tuple(distances), tuple(gain), tuple(accuracy))
