"""Word-by-word generation for a UI: :class:`StepGenerator`, and the candidates it shows.

The candidates come from the same :class:`~lstm_core.sampling.processors.ProcessorList` that
decoding uses, applied to the same history and the same log-probs, so a chart of them shows the
distribution the next word is drawn from (exactly; or, where the fast path's shortcut makes the
choice, to float rounding).
"""

from __future__ import annotations

import collections
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from lstm_core.errors import InputError
from lstm_core.model.fast import fast_path
from lstm_core.model.network import LanguageModel, State, inference
from lstm_core.sampling.decoding import (
    MAX_LENGTH,
    Chooser,
    Generation,
    continue_primed,
    make_generator,
    open_position,
    prime_model,
)
from lstm_core.sampling.history import History
from lstm_core.sampling.options import SamplingOptions
from lstm_core.sampling.processors import ProcessorList
from lstm_core.sampling.rules import descending_order, is_whole_number
from lstm_core.text.cleaning import tokenize
from lstm_core.text.vocab import UNK_TOKEN, Vocab

UNDO_LIMIT = 100
"""How many steps :meth:`StepGenerator.undo` can take back; older ones are forgotten. Each costs
about 4 bytes per vocabulary word (30 KB for 7,500 words), so a visitor holds at most ~3.5 MB."""


@dataclass(frozen=True)
class Candidate:
    word: str
    index: int
    probability: float


@dataclass(frozen=True)
class Distribution:
    """The most likely next words, highest first, and the mass of all the others."""

    candidates: list[Candidate]
    rest: float


def word_distribution(
    log_probs: Tensor,
    vocab: Vocab,
    options: SamplingOptions | None = None,
    n: int = 10,
    history: Sequence[int] = (),
) -> Distribution:
    """The top ``n`` words of a ``(V,)`` log-distribution after the stages ``options`` asks for.

    ``history`` is the text so far (ids, prime included), which the word rules read. The stages
    are :meth:`ProcessorList.from_options`: for ``sample`` the word rules and the filters, for
    ``greedy`` and ``beam`` the word rules only (what their choice ranks). Default options remove
    ``<unk>`` and filter nothing.

    Candidates come most likely first, ties in vocabulary order (so a UI's table never reshuffles).
    Words a stage removed are not listed, so there may be fewer than ``n``; ``rest`` is
    ``1 - sum(candidates)`` (never below 0).
    """
    if not is_whole_number(n) or n < 1:
        raise InputError(f"n must be a whole number of at least 1, got {n!r}")
    processors = ProcessorList.from_options(options or SamplingOptions())
    probs = processors(log_probs.reshape(1, -1), [History(history)])[0].exp()
    indices = descending_order(probs, min(n, int((probs > 0).sum())))  # ties: lower index first
    values = probs[indices]
    candidates = [
        Candidate(vocab.itos[index], index, probability)
        for index, probability in zip(indices.tolist(), values.tolist(), strict=True)
    ]
    return Distribution(candidates, max(0.0, 1.0 - math.fsum(values.tolist())))


@dataclass(frozen=True)
class LastWord:
    """The word the model read last, and where to feed it from to see again what reading it did.

    Feeding ``ids`` to the model from ``state`` (None: the zero state, the start of the text) ends
    at the generator's current position, and ``ids[-1]`` is the last word read. After a step that
    is the one word from the state before it (the undo stack keeps that state); at the prime's end,
    or after undoing past what the stack keeps, it is the whole text from the start.
    """

    ids: list[int]
    state: State | None

    @property
    def index(self) -> int:
        """The id of the word read last."""
        return self.ids[-1]


@dataclass
class _Snapshot:
    """Everything a step changes, saved before it, so undo restores it exactly."""

    log_probs: Tensor
    state: State
    generator: torch.Generator | None
    generator_state: Tensor | None
    generator_seed: int | None


class StepGenerator:
    """Word-by-word generation for a UI: feed the prime once, then step, undo, reset or regenerate.

    It keeps the LSTM state and the raw next-word log-probs ``(1, V)`` of the current position,
    plus a stack of the previous ones, so :meth:`distribution` (every slider move) and
    :meth:`undo` never call the model, :meth:`step` calls it once for one word, and
    :meth:`regenerate` starts from the cached post-prime state without re-feeding the prime.
    Log-probs live on the CPU; the small ``(L, 1, H)`` state stays on the model's device. The undo
    stack keeps the last :data:`UNDO_LIMIT` positions, and a text stops at :data:`MAX_LENGTH`
    words, so one visitor's memory is bounded.

    Sampled steps draw from a generator kept between steps: a step whose options carry the same
    seed as the previous sampled step continues its random stream, a different seed (or the first
    sampled step) starts a new one. So ``n`` steps with one seed give the same words as
    :func:`~lstm_core.sampling.decoding.generate` with that seed. Undo restores the generator
    too; reset forgets it.

    Thread safety: each method holds a lock, so calls from overlapping UI reruns of one user are
    applied one at a time and each either completes or leaves the generator unchanged. The model
    is switched to eval mode during a call and back after; do not share it with a thread that is
    training it at the same moment.
    """

    def __init__(self, model: LanguageModel, vocab: Vocab, prime: str) -> None:
        self._model = model
        self._vocab = vocab
        self._start = prime_model(model, vocab, prime)
        self._lock = threading.RLock()
        self._restart()

    def _restart(self) -> None:
        self._log_probs, self._state = self._start.log_probs, self._start.state
        self._ids: list[int] = []
        self._undo: collections.deque[_Snapshot] = collections.deque(maxlen=UNDO_LIMIT)
        self._generator: torch.Generator | None = None
        self._generator_seed: int | None = None

    # ---- read-only views ----

    @property
    def prime_words(self) -> list[str]:
        return list(self._start.prime_words)

    @property
    def unknown_words(self) -> list[str]:
        return list(self._start.unknown_words)

    @property
    def words(self) -> list[str]:
        """The words generated (or chosen) so far."""
        return self._vocab.decode(self._ids)

    @property
    def text(self) -> str:
        return " ".join([*self._start.prime_words, *self.words])

    @property
    def continuation(self) -> str:
        return " ".join(self.words)

    @property
    def log_probs(self) -> Tensor:
        """A copy of the model's raw next-word log-probs ``(V,)`` at the current position."""
        return self._log_probs[0].clone()

    @property
    def state(self) -> State:
        """A copy of the LSTM ``(h, c)`` at the current position, each ``(L, 1, H)``."""
        return self._state[0].clone(), self._state[1].clone()

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def model(self) -> LanguageModel:
        """The model the text is generated with (read it; do not train it while generating)."""
        return self._model

    @property
    def vocab(self) -> Vocab:
        return self._vocab

    def last_word(self) -> LastWord:
        """The word read last and the state before it, for a page that shows what reading it did.

        No model call: the state before the last generated word is the top of the undo stack
        (a copy of it is returned). Without one -- at the prime's end, or after undoing every
        step the stack kept -- the whole text is returned, to be fed from the zero state.
        """
        with self._lock:
            if self._ids and self._undo:
                before = self._undo[-1].state
                return LastWord([self._ids[-1]], (before[0].clone(), before[1].clone()))
            return LastWord(self._start.prime_ids + self._ids, None)

    def _history(self) -> History:
        return History(self._start.prime_ids + self._ids)

    # ---- cheap: no model call ----

    def distribution(self, options: SamplingOptions | None = None, n: int = 10) -> Distribution:
        """The next-word candidates at the current position, as ``options`` would choose among them.

        See :func:`word_distribution`; the word rules read the prime and the words so far.
        """
        with self._lock:
            return word_distribution(self._log_probs[0], self._vocab, options, n, self._start.prime_ids + self._ids)

    def stages(self, options: SamplingOptions | None = None) -> list[tuple[str, Tensor]]:
        """The next-word distribution ``(V,)`` before and after each stage ``options`` asks for.

        ``[("model", raw log-probs), (stage name, log-probs after it), ...]``; the last entry is
        what :meth:`step` draws from (:meth:`ProcessorList.stages`).
        """
        with self._lock:
            processors = ProcessorList.from_options(options or SamplingOptions())
            return [(name, row[0]) for name, row in processors.stages(self._log_probs, [self._history()])]

    # ---- one model step ----

    def step(self, word: str | None = None, options: SamplingOptions | None = None) -> str:
        """Append ``word`` (the user's choice) or one chosen per ``options`` (greedy by default).

        ``word`` must be a vocabulary word; it is cleaned first, so ``"Thou"`` means ``"thou"``.
        With ``unknown='stop'``, a step whose choice is ``<unk>`` changes nothing (not even the
        random stream) and returns :data:`UNK_TOKEN`: the text has ended there, as it would in
        :func:`~lstm_core.sampling.decoding.generate`. Returns the word appended. A text of
        :data:`MAX_LENGTH` words takes no more (undo or reset first).
        """
        with self._lock:
            if len(self._ids) >= MAX_LENGTH:
                raise InputError(
                    f"the text has reached the limit of {MAX_LENGTH:,} words; undo some words or reset to go on"
                )
            # Saved before the draw: undo restores this generator object *and* its position.
            before = _Snapshot(
                self._log_probs,
                self._state,
                self._generator,
                None if self._generator is None else self._generator.get_state(),
                self._generator_seed,
            )
            generator, generator_seed = self._generator, self._generator_seed
            # The same kind of position as generate() moves along (a cursor on the fast path), so
            # a step makes the choice generate() makes there.
            position = open_position(self._model, fast_path(self._model), self._log_probs, self._state)
            if word is not None:
                index = self._lookup(word)
            else:
                options = options or SamplingOptions()
                if options.method == "beam":
                    raise InputError("step() chooses one word at a time; beam search needs regenerate()")
                if options.method == "sample" and (generator is None or generator_seed != options.seed):
                    generator, generator_seed = make_generator(options.seed), options.seed
                chosen = Chooser(options)(position, self._history(), generator)
                if chosen is None:
                    self._restore_generator(before)
                    return UNK_TOKEN
                index = chosen
            try:
                with inference(self._model):
                    position.feed(index)
                    log_probs = position.log_probs().to("cpu", copy=True).unsqueeze(0)
                    state = position.state()
            except BaseException:
                self._restore_generator(before)
                raise
            self._undo.append(before)  # past UNDO_LIMIT, the oldest snapshot drops off
            self._ids.append(index)
            self._log_probs, self._state = log_probs, state
            self._generator, self._generator_seed = generator, generator_seed
            return self._vocab.itos[index]

    def _restore_generator(self, snapshot: _Snapshot) -> None:
        self._generator, self._generator_seed = snapshot.generator, snapshot.generator_seed
        if snapshot.generator is not None and snapshot.generator_state is not None:
            snapshot.generator.set_state(snapshot.generator_state)

    def _lookup(self, word: str) -> int:
        if word in self._vocab:
            return self._vocab.index(word)
        cleaned = tokenize(word)
        if len(cleaned) == 1 and cleaned[0] in self._vocab:
            return self._vocab.index(cleaned[0])
        raise InputError(f"{word!r} is not in the model's vocabulary, so the model cannot be given it; pick another")

    def undo(self) -> None:
        """Go back one word, restoring the previous state, log-probs and random stream exactly.

        Raises InputError when there is nothing to undo (check :attr:`can_undo`): no word since
        the prime, or only words older than the last :data:`UNDO_LIMIT` steps.
        """
        with self._lock:
            if not self._undo:
                if self._ids:
                    raise InputError(
                        f"nothing more to undo: only the last {UNDO_LIMIT} steps are kept; reset goes back to the prime"
                    )
                raise InputError("nothing to undo: no word has been added since the prime (or the last reset)")
            snapshot = self._undo.pop()
            self._ids.pop()
            self._log_probs, self._state = snapshot.log_probs, snapshot.state
            self._restore_generator(snapshot)

    def reset(self) -> None:
        """Back to just after the prime (no model call), forgetting the undo stack and random stream."""
        with self._lock:
            self._restart()

    # ---- whole continuations from the prime ----

    def regenerate(self, length: int, options: SamplingOptions | None = None) -> Generation:
        """A whole ``length``-word continuation of the prime, leaving the step position untouched.

        Starts from the cached post-prime state, so only ``length - 1`` single-word model calls
        are made (``beam_width`` rows each for beam search). With a fixed seed the same options
        give the same text; across temperatures one seed shows one continuation moving from
        greedy (0.01) towards random (2.0).
        """
        with self._lock:
            return continue_primed(self._model, self._vocab, self._start, length, options or SamplingOptions())
