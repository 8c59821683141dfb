"""The decoding loops: greedy, sampled and beam-search continuations of a prime, and :func:`generate`.

Each step feeds one word to the model, turns its log-probs ``(B, V)`` into the next choice through
the :class:`~lstm_core.sampling.processors.ProcessorList` the options build, and appends the
choice to the row's :class:`~lstm_core.sampling.history.History`::

    prime ids (1, T) --model--> log-probs (1, V) --processors--> greedy: argmax
                                                                 sample: one draw, seeded generator
                                                                 beam:   running sums, best beam_width

Shapes: ``V`` vocabulary size, ``B`` rows (one per beam; 1 for greedy and sampling).

Greedy and sampled texts move a :class:`Position` along one word at a time and choose each word
with a :class:`Chooser`. For an :class:`~lstm_core.model.network.LSTMLanguageModel` in float32 on the
CPU the position is a :class:`~lstm_core.model.cursor.Cursor` (the fast path: fused gates, buffers
reused, the adaptive softmax's tails computed only when they can hold the choice), and the
chooser takes the processor list's exact :class:`~lstm_core.sampling.shortcut.Shortcut` when it
has one, or runs the processors on the cursor's full log-probs when it has not (a repetition
penalty). Any other :class:`~lstm_core.model.network.LanguageModel` -- or the same model in half
precision or on a GPU -- gets a :class:`ModelPosition`, moved by the model's own ``step`` and
``log_probs`` through :func:`advance`, and the processors. The prime always goes through the
model's forward pass.

A step-by-step run (:class:`~lstm_core.sampling.step.StepGenerator`) and a one-shot run with the
same seed produce the same text: they move the same kind of position from the same state, choose
with the same chooser and draw from the random stream in the same order.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from lstm_core.errors import InputError
from lstm_core.model.cursor import Cursor
from lstm_core.model.fast import FastLM, fast_path
from lstm_core.model.network import LanguageModel, State, check_vocab_size, inference
from lstm_core.sampling.history import History
from lstm_core.sampling.options import SamplingOptions
from lstm_core.sampling.processors import ProcessorList
from lstm_core.sampling.rules import descending_order, draw_index, is_whole_number
from lstm_core.sampling.shortcut import Shortcut
from lstm_core.text.cleaning import tokenize
from lstm_core.text.vocab import Vocab

MAX_LENGTH = 1000
"""The most words one text may have after its prime (a cap for a shared server)."""

_NEG_INF = float("-inf")


def make_generator(seed: int | None) -> torch.Generator:
    """A CPU generator seeded with ``seed``, or nondeterministically when it is None."""
    generator = torch.Generator()
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    return generator


def sample_index(log_probs: Tensor, generator: torch.Generator) -> int:
    """Draw one word id from a ``(V,)`` or ``(1, V)`` log-distribution with ``generator``.

    Where the plain path consumes randomness: exactly one uniform number per call, turned into a
    word through the cumulative distribution summed in float64, so the rounding stays far below
    any probability that matters (the rule: :func:`~lstm_core.sampling.rules.draw_index`, which
    the fast path's draw follows too). A word of probability 0 is never drawn.
    """
    return draw_index(log_probs.reshape(-1).double().exp(), generator)


@dataclass(frozen=True)
class Generation:
    """A prime (after the model's own cleaning) and the words generated after it."""

    prime_words: list[str]
    unknown_words: list[str]
    """Prime words not in the vocabulary (fed to the model as ``<unk>``), each once, in order."""
    words: list[str]
    stopped_at_unknown: bool = False
    """True when ``unknown='stop'`` ended the text early because ``<unk>`` would have come next."""

    @property
    def text(self) -> str:
        return " ".join([*self.prime_words, *self.words])

    @property
    def continuation(self) -> str:
        return " ".join(self.words)


# ---- the model -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Primed:
    """A prime fed to the model: its words, ids, and the next-word log-probs ``(1, V)`` and state after it."""

    prime_words: list[str]
    unknown_words: list[str]
    prime_ids: list[int]
    log_probs: Tensor
    state: State


def advance(model: LanguageModel, ids: Tensor, state: State | None, lm: FastLM | None = None) -> tuple[Tensor, State]:
    """Feed ``ids (B, T)`` from ``state``: the next-word log-probs ``(B, V)`` (on the CPU) and the new state.

    Single words go through the model's ``step`` (the cheap LSTM-cell kernel), or through
    ``lm``'s, the model's :class:`~lstm_core.model.fast.FastLM` (fused gates, and a head whose
    weights are not concatenated afresh at every call); longer primes through the model's
    forward pass. Call it inside :func:`~lstm_core.model.network.inference`.
    """
    ids = ids.to(model.device)
    if ids.size(1) == 1:
        hidden, state = (model if lm is None else lm).step(ids[:, 0], state)
    else:
        output, state = model(ids, state)
        hidden = output[:, -1]
    return (model if lm is None else lm).log_probs(hidden).cpu(), state


class Position(Protocol):
    """One text's place in a model: the next word's log-probs, the LSTM state, and a way one word on.

    A :class:`~lstm_core.model.cursor.Cursor` is one (the fast path); :class:`ModelPosition` is any
    :class:`~lstm_core.model.network.LanguageModel`'s.
    """

    def log_probs(self) -> Tensor:
        """The next word's log-probs ``(V,)`` (read them, do not change them)."""
        ...

    def state(self) -> State:
        """``(h, c)``, each ``(L, 1, H)``."""
        ...

    def feed(self, word_id: int) -> None:
        """Move on by ``word_id``: the model reads it, and the log-probs are the next word's."""
        ...


class ModelPosition:
    """A :class:`Position` in any language model: its ``step`` and ``log_probs`` through :func:`advance`.

    Feed it inside :func:`~lstm_core.model.network.inference`.
    """

    def __init__(self, model: LanguageModel, log_probs: Tensor, state: State) -> None:
        self._model = model
        self._log_probs = log_probs  # (1, V), on the CPU
        self._state = state

    def log_probs(self) -> Tensor:
        return self._log_probs[0]

    def state(self) -> State:
        return self._state

    def feed(self, word_id: int) -> None:
        self._log_probs, self._state = advance(self._model, torch.tensor([[word_id]]), self._state)


def open_position(model: LanguageModel, lm: FastLM | None, log_probs: Tensor, state: State) -> Position:
    """The position at ``state`` whose next-word log-probs are ``log_probs (1, V)``: a cursor of ``lm`` if given.

    A cursor computes its log-probs from ``state`` itself (lazily, and bit for bit what
    :func:`prime_model` and a :class:`~lstm_core.sampling.step.StepGenerator` store for it).
    """
    return ModelPosition(model, log_probs, state) if lm is None else lm.cursor(state)


def read_prime(vocab: Vocab, prime: str) -> tuple[list[str], list[int]]:
    """``prime`` cleaned as the training text was cleaned, and its ids (unknown words as ``<unk>``).

    Refuses a prime with no words after cleaning: a text needs a word to follow.
    """
    words = tokenize(prime)
    if not words:
        raise InputError(f"the prime {prime!r} has no words after cleaning; give it at least one word")
    return words, vocab.encode(words)


def prime_model(model: LanguageModel, vocab: Vocab, prime: str) -> Primed:
    """Clean ``prime`` as the training text was cleaned and feed it once; unknown words go in as ``<unk>``.

    The prime goes through the model's forward pass. On the fast path the next word's log-probs
    are the cursor's at the state after it, so what a UI shows is what the choice is made from.
    """
    check_vocab_size(model, len(vocab))
    words, ids = read_prime(vocab, prime)
    with inference(model):
        lm = fast_path(model)
        if lm is None:
            log_probs, state = advance(model, torch.tensor([ids]), None)
        else:
            _, state = model(torch.tensor([ids], device=model.device))
            log_probs = lm.cursor(state).log_probs().to("cpu", copy=True).unsqueeze(0)
    return Primed(words, vocab.unknown_words(words), ids, log_probs, state)


def check_length(length: int) -> None:
    """Refuse a length that is not a whole number of words in ``[0, MAX_LENGTH]``."""
    if not is_whole_number(length) or not 0 <= length <= MAX_LENGTH:
        raise InputError(
            f"length must be a whole number of words from 0 to {MAX_LENGTH:,}, got {length!r} "
            f"(for a longer text, continue the last words of this one as a new prime)"
        )


# ---- choosing words --------------------------------------------------------------------------


class Chooser:
    """How each next word of one text is chosen under ``options``.

    The :class:`~lstm_core.sampling.processors.ProcessorList` the options build defines the
    choice: greedy takes the argmax of its output, sampling one draw from it. At a
    :class:`~lstm_core.model.cursor.Cursor` the list's exact
    :class:`~lstm_core.sampling.shortcut.Shortcut` makes the same choice without the full
    distribution when the list has one; otherwise the processors run on the position's log-probs.
    """

    def __init__(self, options: SamplingOptions) -> None:
        self.method = options.method
        self.processors = ProcessorList.from_options(options)
        self.stop_ids = self.processors.stop_ids
        self.shortcut = Shortcut.of(self.processors, options.method)

    def __call__(self, position: Position, history: History, generator: torch.Generator | None) -> int | None:
        """The next word id at ``position``, or None where a stop word (``<unk>``) is chosen.

        ``sample`` consumes exactly one draw from ``generator``; ``greedy`` consumes none.
        """
        if self.shortcut is not None and isinstance(position, Cursor):
            index = self.shortcut.choose(position, history, generator)
        else:
            scores = self.processors(position.log_probs().unsqueeze(0).cpu(), [history])[0]
            if self.method == "sample":
                assert generator is not None, "internal error: sampling needs a random generator"
                index = sample_index(scores, generator)
            else:
                index = int(scores.argmax())
        return None if index in self.stop_ids else index


def _sample_continuation(
    model: LanguageModel, lm: FastLM | None, primed: Primed, length: int, options: SamplingOptions
) -> tuple[list[int], bool]:
    """Greedy or sampled continuation from the primed state: (ids, stopped at a stop word)."""
    position = open_position(model, lm, primed.log_probs, primed.state)
    return _continue_position(position, primed.prime_ids, length, options)


def _continue_position(
    position: Position, prime_ids: list[int], length: int, options: SamplingOptions
) -> tuple[list[int], bool]:
    """Greedy or sampled words from ``position`` on: (ids, stopped at a stop word)."""
    choose = Chooser(options)
    generator = make_generator(options.seed) if options.method == "sample" else None
    history = History(prime_ids)
    out: list[int] = []
    for step in range(length):
        index = choose(position, history, generator)
        if index is None:
            return out, True
        out.append(index)
        history.append(index)
        if step + 1 < length:  # the last word's successors are never needed
            position.feed(index)
    return out, False


def beam_score(total_log_prob: float, length: int, length_penalty: float) -> float:
    """A hypothesis's comparison score: ``sum(log p) / length ** length_penalty`` (plain sum at 0)."""
    if length == 0 or length_penalty == 0:
        return total_log_prob
    return total_log_prob / length**length_penalty


def _beam_continuation(
    model: LanguageModel, lm: FastLM | None, primed: Primed, length: int, options: SamplingOptions
) -> tuple[list[int], bool]:
    """Keep the ``beam_width`` best continuations; return the best one's ids and whether it ended at a stop word.

    Each step scores every ``beam x word`` extension by its beam's running sum plus the word's
    log-prob after the word rules (each beam has its own history), in float64, and keeps the best
    ``beam_width`` (ties to the lower beam, then word). With ``unknown='stop'``, ``<unk>`` acts as
    an end-of-text token: an extension by it ranked within the best ``beam_width`` is set aside as
    finished (its score includes ``log p(<unk>)`` and its length counts it), the live beams are
    refilled from the next best extensions (up to ``2 * beam_width`` are looked at), and the
    search ends early once ``beam_width`` hypotheses have finished -- then only finished ones
    compete. Otherwise finished and live hypotheses are compared by :func:`beam_score`. With
    width 1 this is greedy (to float rounding on the fast path, whose beams are rows of
    :meth:`~lstm_core.model.fast.FastLM.step`, not a cursor).
    """
    width = options.beam_width
    processors = ProcessorList.from_options(options)
    stop_ids = processors.stop_ids
    log_probs, state = primed.log_probs, primed.state
    vocab_size = log_probs.size(-1)
    sequences: list[list[int]] = [[]]
    histories = [History(primed.prime_ids)]
    scores = torch.zeros(1, dtype=torch.float64)  # (B,) running sums of log-probs
    finished: list[tuple[float, list[int]]] = []
    ended_early = False
    for position in range(length):
        totals = (scores[:, None] + processors(log_probs, histories).double()).view(-1)  # (B * V,)
        live: list[tuple[int, int, float]] = []  # (beam row, word, total)
        for rank, flat in enumerate(descending_order(totals, 2 * width).tolist()):
            total = float(totals[flat])
            if total == _NEG_INF:
                break
            row, word = divmod(flat, vocab_size)
            if word in stop_ids:
                if rank < width:
                    finished.append((total, sequences[row]))
                continue
            live.append((row, word, total))
            if len(live) == width:
                break
        if len(finished) >= width or not live:
            ended_early = True
            break
        rows = [row for row, _, _ in live]
        words = [word for _, word, _ in live]
        sequences = [[*sequences[row], word] for row, word, _ in live]
        histories = [histories[row].copy().append(word) for row, word, _ in live]
        scores = torch.tensor([total for _, _, total in live], dtype=torch.float64)
        if position + 1 < length:
            state = (state[0][:, rows], state[1][:, rows])
            log_probs, state = advance(model, torch.tensor(words).view(-1, 1), state, lm)
    penalty = options.length_penalty
    hypotheses = [(beam_score(total, len(ids) + 1, penalty), ids, True) for total, ids in finished]
    if not ended_early or not hypotheses:
        hypotheses += [
            (beam_score(float(total), len(ids), penalty), ids, False)
            for total, ids in zip(scores.tolist(), sequences, strict=True)
        ]
    _, best_ids, stopped = max(hypotheses, key=lambda hypothesis: hypothesis[0])
    return best_ids, stopped


def continue_primed(
    model: LanguageModel, vocab: Vocab, primed: Primed, length: int, options: SamplingOptions
) -> Generation:
    """A ``length``-word continuation from an already primed state (only single-word model calls)."""
    check_length(length)
    with inference(model):
        continue_ = _beam_continuation if options.method == "beam" else _sample_continuation
        ids, stopped = continue_(model, fast_path(model), primed, length, options)
    return Generation(list(primed.prime_words), list(primed.unknown_words), vocab.decode(ids), stopped)


# ---- one-shot generation ---------------------------------------------------------------------


def generate(
    model: LanguageModel, vocab: Vocab, prime: str, length: int, options: SamplingOptions | None = None
) -> Generation:
    """Continue ``prime`` by ``length`` words (fewer if ``unknown='stop'`` meets ``<unk>``).

    ``length`` is at most :data:`MAX_LENGTH`. Unknown prime words are fed as ``<unk>`` and
    reported. Runs without autograd, in eval mode, on the model's device; the model's train/eval
    mode is restored afterwards.
    """
    check_length(length)
    return continue_primed(model, vocab, prime_model(model, vocab, prime), length, options or SamplingOptions())


def beam_search(
    model: LanguageModel, vocab: Vocab, prime: str, length: int, options: SamplingOptions | None = None
) -> Generation:
    """:func:`generate` with ``method='beam'``, whatever ``options.method`` says.

    Width, word rules and length penalty come from ``options``; the search itself is described in
    :func:`_beam_continuation`.
    """
    options = dataclasses.replace(options or SamplingOptions(), method="beam")
    return generate(model, vocab, prime, length, options)


# ---- any model that gives the next word's distribution -----------------------------------------


class NextWordModel(Protocol):
    """A model with no state but the words so far, such as an n-gram model
    (:class:`~lstm_core.evaluation.ngram.KneserNey`): the next word's log-probs ``(V,)`` for a context."""

    def next_log_probs(self, context_ids: Sequence[int]) -> Tensor: ...


class _ContextPosition:
    """A :class:`Position` in a :class:`NextWordModel`: the words so far are its whole state."""

    def __init__(self, model: NextWordModel, ids: list[int]) -> None:
        self._model = model
        self._ids = list(ids)
        self._log_probs: Tensor | None = None

    def log_probs(self) -> Tensor:
        if self._log_probs is None:
            self._log_probs = self._model.next_log_probs(self._ids)
        return self._log_probs

    def state(self) -> State:
        raise NotImplementedError("a next-word model has no LSTM state")

    def feed(self, word_id: int) -> None:
        self._ids.append(word_id)
        self._log_probs = None


def generate_next_word(
    model: NextWordModel, vocab: Vocab, prime: str, length: int, options: SamplingOptions | None = None
) -> Generation:
    """:func:`generate` for a :class:`NextWordModel`: the same cleaning of the prime, processors,
    stop rule and random draws, so an n-gram model's text can be set beside the LSTM's with the
    same settings and seed. Beam search needs a model's state and is refused."""
    options = options or SamplingOptions()
    if options.method == "beam":
        raise InputError("beam search works with the LSTM only; choose greedy or sampling for this model")
    check_length(length)
    words, ids = read_prime(vocab, prime)
    out, stopped = _continue_position(_ContextPosition(model, ids), ids, length, options)
    return Generation(words, vocab.unknown_words(words), vocab.decode(out), stopped)
