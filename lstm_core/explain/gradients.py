"""Why gates: how the gradient of a word's loss shrinks on its way back through the words before it.

Training a recurrent model moves each weight by the gradient of the loss, and the part of the
gradient that teaches the model to use word ``t`` for a prediction ``d`` words later has to flow
back from that prediction to the state after word ``t``. Through a plain RNN every word back
multiplies it by ``W_hh^T diag(1 - h^2)``; when those factors are below 1 it shrinks
geometrically (it *vanishes*) and the RNN cannot learn what happened more than a few words ago.
An LSTM's memory cell is added to, ``c_t = f_t c_{t-1} + i_t g_t``, so along ``c`` the gradient
is multiplied only by the forget gate ``f``, which training can hold near 1: it carries.

:func:`gradient_through_time` measures this on a trained model and a text: the size (L2 norm,
over every layer) of the gradient of the last word's loss with respect to the state after each
earlier word, from autograd through the model's own step, and for an LSTM the same along its
memory cell. :func:`gradient_sentence` reads the result in one sentence.

Shapes: ``T`` words of the text, ``L`` layers, ``H`` units.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from lstm_core.config import CELL_NAMES
from lstm_core.errors import InputError
from lstm_core.model.network import LSTMLanguageModel

MAX_GRADIENT_WORDS = 200
"""At most this many words are read back from the last one: one step and its backward pass each."""

SENTENCE_WORDS_BACK = 10
"""How far back :func:`gradient_sentence` compares the models, when the text is that long."""

SENTENCE_REACH = 2
"""Words either side of that distance that :func:`around` averages over."""

SAME_ABOVE = 0.8
"""Two gradients whose ratio is above this are "about the same" in the sentence."""

FAR_FROM = 3 * SENTENCE_WORDS_BACK
"""With two models or more and a text that reaches this far back, the sentence reads the farthest words
too: near the last word a gate's first steps can cost more than a plain RNN's, and only the slopes
farther back show which gradient vanishes."""


@dataclass(frozen=True)
class GradientTrace:
    """The gradient of the last word's loss at each earlier state of one model, by distance.

    ``hidden[d]`` is ``||dL/dh||`` at the state that had read all words but the last ``d + 1``
    (``d = 0``: the state that predicts the last word), ``(T - 1,)`` float64; ``cell[d]`` the same
    for an LSTM's memory ``c`` (None for the other cells). ``loss`` is the last word's loss in nats.
    """

    kind: str
    hidden: Tensor
    cell: Tensor | None
    loss: float

    @property
    def words_back(self) -> int:
        """The farthest distance measured: ``T - 2``."""
        return self.hidden.numel() - 1

    def relative(self, path: str = "hidden") -> Tensor:
        """``hidden`` or ``cell`` divided by ``hidden[0]``: how much of the gradient at the last state is left."""
        values = self.hidden if path == "hidden" else self.cell
        if values is None:
            raise InputError(f"a {CELL_NAMES[self.kind]} has no memory cell")
        return values / self.hidden[0].clamp_min(torch.finfo(torch.float64).tiny)


def gradient_through_time(model: LSTMLanguageModel, ids: Sequence[int] | Tensor) -> GradientTrace:
    """``ids (T,)``, ``T >= 2``: the gradient of ``-log p(ids[-1] | ids[:-1])`` at the state after each earlier word.

    The text is read from the zero state, one word at a time through the model's own
    :meth:`~lstm_core.model.network.LSTMLanguageModel.step` in eval mode (no dropout), keeping every
    state; one backward pass (``torch.autograd.grad``, which leaves the model's own ``.grad`` alone:
    a server shares the model) then gives ``dL/dh_t`` and, for an LSTM, ``dL/dc_t`` for every
    ``t``. Each is the gradient with the other half of the state held fixed, as backpropagation
    through time delivers it. At most :data:`MAX_GRADIENT_WORDS` words: a longer text is refused.
    """
    ids = torch.as_tensor(ids).long().view(-1)
    if ids.numel() < 2:
        raise InputError(f"the gradient through time needs at least two words, got {ids.numel()}")
    if ids.numel() > MAX_GRADIENT_WORDS + 1:
        raise InputError(f"at most {MAX_GRADIENT_WORDS + 1:,} words are read; got {ids.numel():,}")
    if int(ids.min()) < 0 or int(ids.max()) >= model.vocab_size:
        raise InputError(f"word ids must lie in [0, {model.vocab_size})")
    ids = ids.to(model.device)
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            h, c = model.init_state(1)
            h.requires_grad_()  # the states depend on this leaf whether or not the weights need gradients
            c.requires_grad_()
            states = []
            for word in ids[:-1]:
                _, (h, c) = model.step(word.view(1), (h, c))
                states.append((h, c))
            # In eval mode the step's output is its last layer's h: read it from the state, so that
            # the gradient at the last state (distance 0) is the one the output layer sends back.
            loss = -model.log_probs(h[-1])[0, ids[-1]]
            wanted = [h for h, _ in states] + ([c for _, c in states] if model.cell == "lstm" else [])
            grads = torch.autograd.grad(loss, wanted, allow_unused=True)
    finally:
        model.train(was_training)
    norms = [0.0 if g is None else float(g.detach().double().norm()) for g in grads]
    steps = len(states)
    by_distance = torch.tensor(norms[:steps][::-1], dtype=torch.float64)
    cell = torch.tensor(norms[steps:][::-1], dtype=torch.float64) if model.cell == "lstm" else None
    return GradientTrace(model.cell, by_distance, cell, float(loss.detach()))


def share(ratio: float) -> str:
    """A ratio in words before a noun: ``1/1,200 of`` below one half (two significant figures), ``0.7 of``
    up to 1, ``3.2 times`` above."""
    if not math.isfinite(ratio) or ratio <= 0:
        return "none of"
    if ratio < 0.5:
        inverse = 1 / ratio
        digits = max(0, math.floor(math.log10(inverse)) - 1)
        rounded = round(inverse / 10**digits) * 10**digits
        return f"1/{rounded:,.0f} of"
    if ratio <= 1:
        return f"{ratio:.1f} of"
    return f"{ratio:.1f} times"


def around(values: Tensor, distance: int, reach: int = SENTENCE_REACH) -> float:
    """The geometric mean of ``values`` from ``distance - reach`` to ``distance + reach`` (those that exist,
    from 1 on, and are above 0): one text's gradient wobbles from word to word, its trend does not."""
    window = values[max(1, distance - reach) : distance + reach + 1]
    window = window[window > 0]
    return float(window.log().mean().exp()) if window.numel() else 0.0


def gradient_sentence(traces: Mapping[str, GradientTrace], words_back: int = SENTENCE_WORDS_BACK) -> str:
    """What the chart says: about ``words_back`` words back (fewer if the text is shorter), how large each
    model's gradient is against its size at the last word, and the weakest against the strongest; with
    two models or more and a text reaching :data:`FAR_FROM` words back, the same at its farthest words.

    ``traces`` maps each model's label (``"LSTM"``, ``"plain RNN (your run)"``) to its
    :class:`GradientTrace`; every number in the sentence is computed from them: each model's
    :meth:`GradientTrace.relative` taken :func:`around` the distance.
    """
    if not traces:
        raise InputError("no model to read the gradient of")
    reaches = min(trace.words_back for trace in traces.values())
    distance = min(words_back, reaches)
    if distance < 1:
        return "The text is too short to see the gradient travel back: give it at least three words."
    left = {label: around(trace.relative(), distance) for label, trace in traces.items()}
    labels = list(left)
    sentence = (
        f"About {distance} word{'s' if distance > 1 else ''} back, the gradient of the last word's loss is "
        f"{share(left[labels[0]])} its size at the last word for the {labels[0]}"
    )
    if len(labels) == 1:
        only = traces[labels[0]]
        if only.cell is not None:
            along = share(around(only.relative("cell"), distance)).removesuffix(" of")
            sentence += f" ({along} along its memory cell)"
        return sentence + "."
    sentence += _and_the_others(left) + _weakest_against_strongest(left) + "."
    far = reaches - SENTENCE_REACH  # so that the words around it are all in the text
    if reaches < FAR_FROM or far <= distance:
        return sentence
    left = {label: around(trace.relative(), far) for label, trace in traces.items()}
    return (
        f"{sentence} About {far} words back, it is {share(left[labels[0]]).removesuffix(' of')} for the {labels[0]}"
        f"{_and_the_others(left)}{_weakest_against_strongest(left)}."
    )


def _and_the_others(left: Mapping[str, float]) -> str:
    """``" and 1/33 for the plain RNN"``: the shares of every label but the first."""
    others = [f"{share(value).removesuffix(' of')} for the {label}" for label, value in list(left.items())[1:]]
    if not others:
        return ""
    return (", " + ", ".join(others[:-1]) if others[:-1] else "") + " and " + others[-1]


def _weakest_against_strongest(left: Mapping[str, float]) -> str:
    """``": the plain RNN's is 1/200 of the LSTM's"``, ``": about the same"``, or nothing."""
    weakest, strongest = min(left, key=left.__getitem__), max(left, key=left.__getitem__)
    if len(left) < 2 or left[strongest] <= 0:
        return ""
    ratio = left[weakest] / left[strongest]
    return ": about the same" if ratio > SAME_ABOVE else f": the {weakest}'s is {share(ratio)} the {strongest}'s"
