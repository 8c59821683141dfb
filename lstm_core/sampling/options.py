"""How to choose each next word: :class:`SamplingOptions`, one frozen dataclass for every interface.

Each field carries its help text, the range and step a widget offers, and, for options that
only matter to some methods, which ones (``applies_to``): the command line's ``generate`` flags
and the app's Generate page are built from these (:mod:`lstm_core.fields`), and
:meth:`~lstm_core.sampling.processors.ProcessorList.from_options` turns the options into the
processors that apply them. The processors also validate their own values, so a rule about what
``top_p`` may be lives in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, get_args

from lstm_core.errors import InputError
from lstm_core.fields import meta
from lstm_core.sampling.processors import PIPELINE
from lstm_core.sampling.rules import MAX_TOP_K, is_finite_number, is_whole_number

Method = Literal["greedy", "sample", "beam"]
UnknownRule = Literal["skip", "stop", "allow"]

MAX_BEAM_WIDTH = 16
"""The widest beam: each beam is a row of every model call, so width is cost (a cap for a shared server)."""

_SAMPLING = ("sample",)
_BEAM = ("beam",)


@dataclass(frozen=True)
class SamplingOptions:
    """How to choose each next word. Frozen, so a UI can cache and share one safely.

    ``greedy`` takes the most likely word after the word rules; ``sample`` draws from the
    distribution after the rules and the filters (temperature, top-k, top-p, min-p); ``beam``
    keeps the ``beam_width`` best partial continuations after the rules. The filters apply only
    to ``sample`` and the beam settings only to ``beam`` (each field's ``applies_to``).
    """

    method: Method = field(
        default="greedy",
        metadata=meta(
            "greedy takes the most likely word; sample draws one from the filtered distribution; beam keeps the "
            "beam_width best continuations",
            label="Method",
            choice_labels={"greedy": "Greedy (the recipe's)", "sample": "Sampling", "beam": "Beam search"},
        ),
    )
    temperature: float = field(
        default=1.0,
        metadata=meta(
            "sample from p ** (1 / temperature): below 1 safer, above 1 wilder, near 0 the most likely word",
            0.05,
            2.0,
            step=0.05,
            label="Temperature: low is safe and repetitive, high is adventurous",
            applies_to=_SAMPLING,
        ),
    )
    top_k: int = field(
        default=0,
        metadata=meta(
            "sample from the k most likely words only (0 = off)",
            0,
            MAX_TOP_K,
            values=(0, 1, 2, 3, 5, 10, 20, 40, 50, 100, 200, 500, MAX_TOP_K),
            label="top-k (0 = off)",
            applies_to=_SAMPLING,
        ),
    )
    top_p: float = field(
        default=1.0,
        metadata=meta(
            "nucleus: sample from the fewest most likely words whose probabilities add up to p (1 = off)",
            0.05,
            1.0,
            step=0.05,
            label="top-p / nucleus (1 = off)",
            applies_to=_SAMPLING,
        ),
    )
    min_p: float = field(
        default=0.0,
        metadata=meta(
            "sample only from words at least min_p times as likely as the most likely one (0 = off)",
            0.0,
            1.0,
            step=0.01,
            label="min-p (0 = off)",
            applies_to=_SAMPLING,
        ),
    )
    repetition_penalty: float = field(
        default=1.0,
        metadata=meta(
            "divide the probability of every word already in the prime or the text by this (1 = off)",
            1.0,
            3.0,
            step=0.1,
            label="Repetition penalty (1 = off)",
        ),
    )
    no_repeat_ngram: int = field(
        default=0,
        metadata=meta(
            "never complete an n-gram of this size already in the prime or the text (0 = off)",
            0,
            5,
            label="Never repeat an n-gram of size (0 = off)",
        ),
    )
    beam_width: int = field(
        default=4,
        metadata=meta(
            f"beam search keeps this many partial continuations (1 is greedy; at most {MAX_BEAM_WIDTH})",
            1,
            MAX_BEAM_WIDTH,
            label="Beam width",
            applies_to=_BEAM,
        ),
    )
    length_penalty: float = field(
        default=1.0,
        metadata=meta(
            "beam search compares sum(log p) / length ** this; matters only against beams that ended at <unk> "
            "(unknown = stop); 0 compares plain sums",
            0.0,
            2.0,
            step=0.1,
            label="Length penalty (beam search)",
            applies_to=_BEAM,
        ),
    )
    unknown: UnknownRule = field(
        default="skip",
        metadata=meta(
            "what happens when <unk> (a rare word) is the choice: skip it, stop the text there, or allow it",
            label="When <unk> is the choice",
            choice_labels={
                "skip": "skip it (take the next best word)",
                "stop": "stop there (the recipe's rule)",
                "allow": "allow it",
            },
        ),
    )
    seed: int | None = field(
        default=None,
        metadata=meta(
            "seeds the random draws: same seed, same text (default: a new one each time)", 0, 2**31 - 1, label="Seed"
        ),
    )

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise InputError("invalid sampling options: " + "; ".join(problems))

    def problems(self) -> list[str]:
        """Every reason these options cannot work (empty if none).

        The processors' fields are checked by building each processor, which validates its own
        value; the rest (method, beam settings, seed) here.
        """
        out: list[str] = []
        methods = get_args(Method)
        if self.method not in methods:
            out.append(f"method must be one of {', '.join(methods)}; got {self.method!r}")
        for kind in PIPELINE:
            try:
                kind(getattr(self, kind.option))
            except InputError as error:
                out.append(str(error))
        if not is_whole_number(self.beam_width) or not 1 <= self.beam_width <= MAX_BEAM_WIDTH:
            out.append(
                f"beam_width must be a whole number from 1 to {MAX_BEAM_WIDTH}, got {self.beam_width!r} "
                "(wider beams rarely find better text; 4 is usual)"
            )
        if not is_finite_number(self.length_penalty) or self.length_penalty < 0:
            out.append(f"length_penalty must be a number of 0 (off) or more, got {self.length_penalty!r}")
        if self.seed is not None and (not is_whole_number(self.seed) or not 0 <= self.seed < 2**63):
            out.append(f"seed must be None (a new seed each time) or a whole number in [0, 2**63), got {self.seed!r}")
        return out
