"""The fast path's shortcut: a processor list's choice made on a :class:`~lstm_core.model.cursor.Cursor`.

The :class:`~lstm_core.sampling.processors.ProcessorList` is the one definition of what each
option does; this is an exact shortcut for the lists a cursor can follow, tested against them
(``tests/test_shortcut.py``). Those stages either ban words (the ``<unk>`` rule, no-repeat
n-grams) or keep the most likely ones (temperature, top-k, top-p, min-p), so the cursor can
choose without the full distribution::

    greedy:  best_next(cursor, banned)       the argmax; a tail cluster only if it can hold it
    sample:  sample_next(cursor, generator, temperature, top_k, top_p, banned, min_p)
             the same single draw as ``sample_index``; with top-k only the tails that can enter it

(both in :mod:`lstm_core.sampling.fast_choice`, following :mod:`lstm_core.sampling.rules`).

The same word as the list for the same seed, up to float rounding (at the edge of a word's share
of the draw, or of a filter's cut). A repetition penalty changes the probability of every word
seen so far, and a processor this does not know may do anything: their lists have no shortcut,
and decoding runs the processors on the cursor's full log-probs instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from lstm_core.model.cursor import Cursor
from lstm_core.sampling.fast_choice import best_next, sample_next
from lstm_core.sampling.history import History
from lstm_core.sampling.processors import (
    PIPELINE,
    MinP,
    NoRepeatNgram,
    ProcessorList,
    Temperature,
    TopK,
    TopP,
    UnknownWordRule,
)
from lstm_core.sampling.rules import ban_is_lifted
from lstm_core.text.vocab import UNK_INDEX

_FOLLOWED: dict[type, Callable[[Any], dict[str, Any]]] = {
    UnknownWordRule: lambda rule: {"skip_unknown": rule.rule == "skip"},
    NoRepeatNgram: lambda rule: {"no_repeat_ngram": rule.n},
    Temperature: lambda stage: {"temperature": stage.temperature},
    TopK: lambda stage: {"top_k": stage.k},
    TopP: lambda stage: {"top_p": stage.p},
    MinP: lambda stage: {"min_p": stage.min_p},
}
"""The processors a cursor can follow, and the settings each gives the shortcut."""


@dataclass(frozen=True)
class Shortcut:
    """The settings of a processor list a cursor follows, read from the list by :meth:`of`.

    ``unknown='stop'`` needs nothing here: it changes no probability, and decoding checks the
    choice against the list's ``stop_ids`` whichever way it was made.
    """

    method: str
    skip_unknown: bool = False
    no_repeat_ngram: int = 0
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0

    @classmethod
    def of(cls, processors: ProcessorList, method: str) -> Shortcut | None:
        """The shortcut for ``processors`` under ``method``, or None where there is none.

        None for beam search (it ranks every word of every beam), for a processor the cursor
        cannot follow (a repetition penalty, or any other), and for a list whose stages are not in
        :data:`~lstm_core.sampling.processors.PIPELINE` order (the shortcut applies them in that
        order).
        """
        if method not in ("greedy", "sample"):
            return None
        settings: dict[str, Any] = {}
        last = -1
        for processor in processors:
            kind = type(processor)
            if kind not in _FOLLOWED or PIPELINE.index(kind) <= last:
                return None
            last = PIPELINE.index(kind)
            settings.update(_FOLLOWED[kind](processor))
        return cls(method, **settings)

    def banned(self, history: History, vocab_size: int) -> set[int]:
        """The words the rules forbid next: ``<unk>`` under ``skip``, and those that would repeat an n-gram.

        As :class:`~lstm_core.sampling.processors.NoRepeatNgram` does, an n-gram ban that would
        leave no word at all is lifted for this step (:func:`~lstm_core.sampling.rules.ban_is_lifted`;
        the model's log-probs are all finite, so the words out already are the ones banned here).
        """
        banned = {UNK_INDEX} if self.skip_unknown else set()
        if self.no_repeat_ngram:
            repeats = history.ngrams(self.no_repeat_ngram).banned()
            if repeats and not ban_is_lifted(repeats, banned, vocab_size):
                banned |= repeats
        return banned

    def choose(self, cursor: Cursor, history: History, generator: torch.Generator | None) -> int:
        """The word the processor list would choose at ``cursor`` (one draw from ``generator`` when sampling)."""
        banned = sorted(self.banned(history, cursor.vocab_size))
        if self.method == "greedy":
            return best_next(cursor, banned)
        assert generator is not None, "internal error: sampling needs a random generator"
        return sample_next(cursor, generator, self.temperature, self.top_k, self.top_p, banned, self.min_p)
