"""Inside the model: every gate and memory for every word, and what of it a page can draw.

The recipe's equations, with PyTorch's gate order (``i, f, g, o``: the four row blocks of
``weight_ih_l{k}`` and ``weight_hh_l{k}``, each ``H`` rows)::

    i_t = sigmoid(W_ii x_t + b_ii + W_hi h_{t-1} + b_hi)    input gate: how much new memory to write
    f_t = sigmoid(W_if x_t + b_if + W_hf h_{t-1} + b_hf)    forget gate: how much old memory to keep
    g_t = tanh(W_ig x_t + b_ig + W_hg h_{t-1} + b_hg)       candidate memory
    o_t = sigmoid(W_io x_t + b_io + W_ho h_{t-1} + b_ho)    output gate: how much memory to show
    c_t = f_t * c_{t-1} + i_t * g_t                         the new memory (cell state)
    h_t = o_t * tanh(c_t)                                   the new output (hidden state)

A GRU's (blocks ``r, z, n``) and a plain RNN's::

    r_t = sigmoid(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)          reset gate: how much of h_{t-1} the candidate reads
    z_t = sigmoid(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)          update gate: how much of h_{t-1} to keep
    n_t = tanh(W_in x_t + b_in + r_t * (W_hn h_{t-1} + b_hn))     candidate
    h_t = (1 - z_t) * n_t + z_t * h_{t-1}                         the new output, which is the memory

    h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)             the plain RNN: no gate, no separate memory

:func:`trace` runs exactly these, word by word and layer by layer, on the model's own weights,
and keeps every quantity; tests check that its ``h`` and ``c`` equal the model's ``nn.LSTM``
(and its ``h`` the ``nn.GRU``'s or ``nn.RNN``'s), so what the page draws is what the model
computes. This module also cuts a trace down to what a page can draw (:func:`pick_units`,
:func:`word_window`, :func:`bin_means`). Reading a trace for meaning is
:mod:`lstm_core.explain.units` (which units follow a feature of the text, which are on across a
selected span); the word vectors are :mod:`lstm_core.explain.embeddings`.

Shapes: ``T`` words of one text, ``H`` units per layer (rnn_size), ``L`` layers, ``E`` embedding
size, ``V`` vocabulary size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from lstm_core.config import Cell
from lstm_core.errors import InputError
from lstm_core.model.cells import layer_weights
from lstm_core.model.network import LSTMLanguageModel, State

QUANTITIES: dict[str, str] = {
    "input_gate": "input gate i",
    "forget_gate": "forget gate f",
    "candidate": "candidate memory g",
    "output_gate": "output gate o",
    "cell": "memory c",
    "hidden": "output h",
}
"""The quantities an LSTM's :class:`LayerTrace` holds for every word and unit, with their names for a page."""

CELL_QUANTITIES: dict[str, dict[str, str]] = {
    "lstm": QUANTITIES,
    "gru": {
        "reset_gate": "reset gate r",
        "update_gate": "update gate z",
        "new_gate": "candidate n",
        "hidden": "output h",
    },
    "rnn": {"hidden": "output h"},
}
"""Each cell's quantities (:data:`QUANTITIES` for the LSTM): the GRU has no memory cell apart from
its output, the plain RNN no gate either. A name means the same in every cell that has it."""

QUANTITY_NAMES: dict[str, str] = {name: label for names in CELL_QUANTITIES.values() for name, label in names.items()}
"""Every cell's quantities together, with their names for a page."""

MAX_HEATMAP_WORDS = 400
"""At most this many words (columns) on one heatmap: more and a browser takes seconds to draw it."""

MAX_HEATMAP_UNITS = 128
"""At most this many units (rows) on one heatmap, for the same reason."""


# ---- the traced forward pass ---------------------------------------------------------------------


@dataclass(frozen=True)
class LayerTrace:
    """Everything one layer computed for each word of a text.

    ``preactivations`` (what each sigmoid or tanh reads) and ``gates`` (what it gives) are
    ``(T, kH)`` in PyTorch's block order: ``i, f, g, o`` for the LSTM, ``r, z, n`` for the GRU,
    one block (``h`` itself) for the plain RNN; the properties below are ``(T, H)`` views into
    ``gates``. ``cell`` (the LSTM's memory; None for the other cells) and ``hidden`` are
    ``(T, H)``: row ``t`` is the state after reading word ``t``.
    """

    preactivations: Tensor
    gates: Tensor
    cell: Tensor | None
    hidden: Tensor
    kind: Cell = "lstm"

    @property
    def size(self) -> int:
        return self.hidden.size(1)

    @property
    def quantities(self) -> dict[str, str]:
        """This cell's quantities and their names (:data:`CELL_QUANTITIES`)."""
        return CELL_QUANTITIES[self.kind]

    @property
    def reset_gate(self) -> Tensor:
        return self.gates[:, : self.size]

    @property
    def update_gate(self) -> Tensor:
        return self.gates[:, self.size : 2 * self.size]

    @property
    def new_gate(self) -> Tensor:
        """The GRU's candidate ``n`` (PyTorch calls it the new gate): the same block as an LSTM's ``g``."""
        return self.candidate

    @property
    def input_gate(self) -> Tensor:
        return self.gates[:, : self.size]

    @property
    def forget_gate(self) -> Tensor:
        return self.gates[:, self.size : 2 * self.size]

    @property
    def candidate(self) -> Tensor:
        return self.gates[:, 2 * self.size : 3 * self.size]

    @property
    def output_gate(self) -> Tensor:
        return self.gates[:, 3 * self.size :]

    def values(self, quantity: str) -> Tensor:
        """One of this cell's :attr:`quantities` by name, ``(T, H)``."""
        if quantity not in self.quantities:
            raise InputError(
                f"unknown quantity {quantity!r} for this {self.kind.upper()}; "
                f"choose one of {', '.join(self.quantities)}"
            )
        return getattr(self, quantity)


@dataclass(frozen=True)
class Trace:
    """A traced forward pass over one text: ``ids (T,)`` and one :class:`LayerTrace` per layer.

    ``log_probs (T, V)`` is the model's next-word distribution after each word (float32), present
    when :func:`trace` was asked for it; row ``t`` predicts word ``t + 1``.
    """

    ids: Tensor
    layers: tuple[LayerTrace, ...]
    log_probs: Tensor | None = None

    @property
    def output(self) -> Tensor:
        """The last layer's ``h`` for every word, ``(T, H)``: what the output layer reads."""
        return self.layers[-1].hidden

    @property
    def final_state(self) -> State:
        """``(h, c)`` after the last word, each ``(L, 1, H)``, as the model's forward returns it."""
        h = torch.stack([layer.hidden[-1] for layer in self.layers]).unsqueeze(1)
        cells = [torch.zeros_like(layer.hidden[-1]) if layer.cell is None else layer.cell[-1] for layer in self.layers]
        return h, torch.stack(cells).unsqueeze(1)

    def next_word_log_probs(self) -> Tensor:
        """``log p(word t+1 | words 0..t)`` for each word that has a predecessor, ``(T - 1,)``."""
        if self.log_probs is None:
            raise InputError("this trace was made without log-probabilities; call trace(..., log_probs=True)")
        return self.log_probs[:-1].gather(1, self.ids[1:, None]).squeeze(1)


def _as_ids(ids: Tensor | Sequence[int], vocab_size: int) -> Tensor:
    ids = torch.as_tensor(ids)
    if ids.dim() != 1:
        raise InputError(f"trace one text at a time: ids must be 1-D (T,), got shape {tuple(ids.shape)}")
    if ids.numel() == 0:
        raise InputError("there are no words to trace")
    if ids.dtype.is_floating_point or ids.dtype == torch.bool:
        raise InputError(f"word ids must be integers, got {ids.dtype}")
    low, high = int(ids.min()), int(ids.max())
    if low < 0 or high >= vocab_size:
        raise InputError(f"word ids must lie in [0, {vocab_size}); got values from {low} to {high}")
    return ids.long()


def _trace_layer(x: Tensor, weights: Sequence[Tensor], h: Tensor, c: Tensor) -> LayerTrace:
    """One layer over ``x (T, E_in)`` from the state ``h, c (H,)``, keeping every quantity.

    The input half of every pre-activation, ``W_ih x_t + b_ih + b_hh`` for all ``T`` words, is
    one matrix product; only the recurrent half ``W_hh h_{t-1}`` needs the loop, and each step
    writes straight into the output rows (``out=``), so a step is seven small kernel calls: about
    0.09 ms for ``H = 512`` on one CPU thread (``bench/bench_inspection.py``).
    """
    weight_ih, weight_hh, bias_ih, bias_hh = (w.float() for w in weights)
    size = weight_hh.size(1)
    steps = x.size(0)
    preactivations = torch.addmm(bias_ih + bias_hh, x, weight_ih.t())  # (T, 4H), input half
    gates = torch.empty_like(preactivations)  # (T, 4H)
    cell = x.new_empty(steps, size)  # (T, H)
    hidden = x.new_empty(steps, size)  # (T, H)
    i, f, g, o = (slice(k * size, (k + 1) * size) for k in range(4))
    for t in range(steps):
        pre = preactivations[t].addmv_(weight_hh, h)  # (4H,): the recurrent half added in place
        gate = gates[t]
        torch.sigmoid(pre, out=gate)  # i, f and o; g's block is overwritten next
        torch.tanh(pre[g], out=gate[g])
        c = torch.addcmul(gate[f] * c, gate[i], gate[g], out=cell[t])  # c_t = f c_{t-1} + i g
        h = torch.mul(gate[o], torch.tanh(c), out=hidden[t])  # h_t = o tanh(c_t)
    return LayerTrace(preactivations=preactivations, gates=gates, cell=cell, hidden=hidden)


def _trace_gru_layer(x: Tensor, weights: Sequence[Tensor], h: Tensor) -> LayerTrace:
    """A GRU layer over ``x (T, E_in)`` from ``h (H,)``; gates ``r, z, n`` as :func:`_trace_layer` keeps an LSTM's.

    ``r`` multiplies only the recurrent part of ``n``'s pre-activation, so each step adds the two
    parts itself: ``W_ih x_t + b_ih`` for all words is one product, ``W_hh h_{t-1} + b_hh`` one per word.
    """
    weight_ih, weight_hh, bias_ih, bias_hh = (w.float() for w in weights)
    size = weight_hh.size(1)
    steps = x.size(0)
    from_input = torch.addmm(bias_ih, x, weight_ih.t())  # (T, 3H)
    preactivations = torch.empty_like(from_input)
    gates = torch.empty_like(from_input)
    hidden = x.new_empty(steps, size)
    gate_rows, candidate = slice(0, 2 * size), slice(2 * size, 3 * size)
    for t in range(steps):
        from_hidden = torch.addmv(bias_hh, weight_hh, h)  # (3H,)
        pre, gate = preactivations[t], gates[t]
        torch.add(from_input[t, gate_rows], from_hidden[gate_rows], out=pre[gate_rows])
        torch.sigmoid(pre[gate_rows], out=gate[gate_rows])  # r, z
        reset, update = gate[:size], gate[size : 2 * size]
        torch.addcmul(from_input[t, candidate], reset, from_hidden[candidate], out=pre[candidate])
        n = torch.tanh(pre[candidate], out=gate[candidate])
        h = torch.lerp(n, h, update, out=hidden[t])  # h_t = (1 - z) n + z h_{t-1}
    return LayerTrace(preactivations=preactivations, gates=gates, cell=None, hidden=hidden, kind="gru")


def _trace_rnn_layer(x: Tensor, weights: Sequence[Tensor], h: Tensor) -> LayerTrace:
    """A plain tanh RNN layer over ``x (T, E_in)`` from ``h (H,)``: its one block is ``h`` itself."""
    weight_ih, weight_hh, bias_ih, bias_hh = (w.float() for w in weights)
    preactivations = torch.addmm(bias_ih + bias_hh, x, weight_ih.t())  # (T, H), input half
    hidden = torch.empty_like(preactivations)
    for t in range(x.size(0)):
        h = torch.tanh(preactivations[t].addmv_(weight_hh, h), out=hidden[t])
    return LayerTrace(preactivations=preactivations, gates=hidden, cell=None, hidden=hidden, kind="rnn")


def trace(
    model: LSTMLanguageModel,
    ids: Tensor | Sequence[int],
    state: State | None = None,
    log_probs: bool = False,
) -> Trace:
    """Run ``model`` over one text and keep every gate, memory and output of every layer.

    ``ids (T,)`` are the text's word ids (one text, batch 1); ``state`` is an optional ``(h, c)``,
    each ``(L, 1, H)``, to start from (zeros otherwise). The pass runs in eval mode (no dropout:
    what a visitor sees is what generation uses) without autograd, in float32 whatever the
    parameters' dtype, on the model's device, and leaves the model in the mode it found it in.
    Its ``h`` and ``c`` equal ``model(ids[None])`` to float tolerance (a GRU's or an RNN's ``c`` is
    None: it has no memory cell).

    ``log_probs=True`` also keeps the next-word distribution after every word, ``(T, V)``: about
    ``4 T V`` bytes (15 MB for 500 words of a 7,500-word vocabulary), and for a 1 x 512 model it
    about doubles the time (the full distribution is a ``(T, H) x (H, V)`` product with either
    output layer).
    """
    ids = _as_ids(ids, model.vocab_size).to(model.device)
    layers, size = model.num_layers, model.rnn_size
    if state is not None:
        expected = (layers, 1, size)
        if tuple(state[0].shape) != expected or tuple(state[1].shape) != expected:
            raise InputError(
                f"the starting state must be (h, c), each of shape {expected}; "
                f"got {tuple(state[0].shape)} and {tuple(state[1].shape)}"
            )
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            h0, c0 = model.init_state(1) if state is None else (state[0].to(model.device), state[1].to(model.device))
            x = model.embedding(ids).float()  # (T, E)
            traced = []
            for layer in range(layers):
                weights = layer_weights(model.recurrent, layer)
                h_start = h0[layer, 0].float()
                if model.cell == "gru":
                    layer_trace = _trace_gru_layer(x, weights, h_start)
                elif model.cell == "rnn":
                    layer_trace = _trace_rnn_layer(x, weights, h_start)
                else:
                    layer_trace = _trace_layer(x, weights, h_start, c0[layer, 0].float())
                traced.append(layer_trace)
                x = layer_trace.hidden  # the next layer reads this one's h (no dropout in eval)
            distribution = model.log_probs(x) if log_probs else None
    finally:
        model.train(was_training)
    return Trace(ids=ids, layers=tuple(traced), log_probs=distribution)


# ---- checks shared by the readers of a trace ----------------------------------------------------


def check_activations(values: Tensor) -> Tensor:
    """``values`` if it is a ``(T, H)`` table of activations with at least one word and one unit."""
    if values.dim() != 2:
        raise InputError(f"activations must be (words, units), got shape {tuple(values.shape)}")
    if values.size(0) == 0 or values.size(1) == 0:
        raise InputError("there are no activations to search (no words or no units)")
    return values


def check_count(k: int) -> None:
    """Refuse a count of units or words to return that is not a whole number of at least 1."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise InputError(f"the number of units to return must be a whole number of at least 1, got {k!r}")


# ---- cutting a trace down to what a page can draw -----------------------------------------------


def pick_units(values: Tensor, max_units: int = MAX_HEATMAP_UNITS, keep: Sequence[int] = ()) -> list[int]:
    """Which units (rows) to draw for ``values (T, H)``: the ones in ``keep`` first, then the most variable.

    A 512-unit layer does not fit a readable heatmap, and most units of a layer barely move over
    one text; those that vary most (largest standard deviation over the words) show the most.
    Returns at most ``max_units`` distinct unit indices (default :data:`MAX_HEATMAP_UNITS`):
    ``keep`` in its order, duplicates dropped, then the rest by decreasing variability.
    """
    values = check_activations(values)
    check_count(max_units)
    units = values.size(1)
    chosen: list[int] = []
    for unit in keep:
        if isinstance(unit, bool) or not isinstance(unit, int) or not 0 <= unit < units:
            raise InputError(f"units are numbered 0 to {units - 1}, got {unit!r}")
        if unit not in chosen:
            chosen.append(unit)
    if len(chosen) >= max_units:
        return chosen[:max_units]
    spread = values.detach().double().cpu().std(0, correction=0)  # (H,)
    taken = set(chosen)
    for unit in torch.argsort(spread, descending=True, stable=True).tolist():
        if len(chosen) == max_units:
            break
        if unit not in taken:
            chosen.append(unit)
    return chosen


def word_window(num_words: int, max_words: int = MAX_HEATMAP_WORDS, focus: int | None = None) -> range:
    """The words (columns) to draw of a text of ``num_words``: at most ``max_words`` in a row.

    A heatmap's columns are labelled with the words, and skipping words would make a sentence
    unreadable, so a long text is shown through a contiguous window (default at most
    :data:`MAX_HEATMAP_WORDS`) centred on ``focus`` where possible, else from the start. Use
    :func:`bin_means` for an overview of the whole text.
    """
    check_count(max_words)
    if isinstance(num_words, bool) or not isinstance(num_words, int) or num_words < 0:
        raise InputError(f"the number of words must be a whole number of 0 or more, got {num_words!r}")
    if num_words <= max_words:
        return range(num_words)
    if focus is None:
        return range(max_words)
    if not 0 <= focus < num_words:
        raise InputError(f"the word to centre on must lie in [0, {num_words}), got {focus}")
    start = min(max(0, focus - max_words // 2), num_words - max_words)
    return range(start, start + max_words)


def bin_means(values: Tensor, max_rows: int = MAX_HEATMAP_WORDS) -> Tensor:
    """An overview of a long text: ``values (T, ...)`` averaged over runs of consecutive words -> ``(R, ...)``.

    With ``T <= max_rows`` the values come back as they are; otherwise words are grouped into
    ``R = ceil(T / ceil(T / max_rows)) <= max_rows`` runs of equal length (the last may be
    shorter) and each run is replaced by its mean. Row ``r`` covers words
    ``r * b .. (r + 1) * b - 1`` with ``b = ceil(T / max_rows)``.
    """
    check_count(max_rows)
    if values.dim() == 0 or values.size(0) == 0:
        raise InputError("there are no values to summarise")
    steps = values.size(0)
    if steps <= max_rows:
        return values
    width = -(-steps // max_rows)  # words per run, rounded up
    rows = -(-steps // width)
    padded = values.new_zeros(rows * width, *values.shape[1:], dtype=torch.float32)
    padded[:steps] = values
    sums = padded.view(rows, width, *values.shape[1:]).sum(1)
    counts = torch.full((rows,), float(width))
    counts[-1] = steps - (rows - 1) * width
    return sums / counts.view(rows, *([1] * (values.dim() - 1))).to(sums.device)
