"""The three recurrent cells a model can be built with, and the few places where they differ.

PyTorch's equations, per layer and word (``x`` the word's vector or the layer below's output,
``h`` the layer's previous output; each weight matrix has one block of ``H`` rows per gate, in
the order listed)::

    lstm  i, f, g, o = sigmoid, sigmoid, tanh, sigmoid of (W_ih x + b_ih + W_hh h + b_hh)
          c' = f * c + i * g                     the memory cell: added to, not multiplied through
          h' = o * tanh(c')
    gru   r, z = sigmoid(W_ih x + b_ih + W_hh h + b_hh) (their two blocks)
          n  = tanh(W_in x + b_in + r * (W_hn h + b_hn))
          h' = (1 - z) * n + z * h               the output is the memory
    rnn   h' = tanh(W_ih x + b_ih + W_hh h + b_hh)   no gate: every step multiplies through W_hh

Every cell's state is ``(h, c)``, each ``(L, B, H)``, so that samplers, the undo stack, resumed
runs and the fast path hold one shape: the GRU and the plain RNN have no memory cell, and their
``c`` is zeros that they never read. A model's recurrent module is named after its cell
(``lstm.weight_hh_l0``, ``gru.weight_hh_l0``, ``rnn.weight_hh_l0``), so a checkpoint's weights say
which cell they are, and every checkpoint saved before the choice existed (an LSTM's) loads as it was.

Shapes: ``B`` rows, ``E`` input size, ``H`` units, ``L`` layers, ``T`` words.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from lstm_core.config import Cell

GATE_BLOCKS: dict[str, int] = {"lstm": 4, "gru": 3, "rnn": 1}
"""Row blocks of ``H`` in each layer's ``weight_ih`` / ``weight_hh``: one per gate or candidate."""

WEIGHT_NAMES = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
"""A layer's parameters as PyTorch names them (``weight_ih_l0`` ...), in the order its kernels take them."""


def recurrent_module(cell: Cell, input_size: int, hidden_size: int, num_layers: int, dropout: float) -> nn.RNNBase:
    """PyTorch's module for ``cell``: ``num_layers`` layers, batch first, ``dropout`` between layers.

    The plain RNN is the tanh one (``nn.RNN``'s default): the textbook network whose gradient
    vanishes through time.
    """
    module = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[cell]
    return module(input_size, hidden_size, num_layers=num_layers, dropout=dropout, batch_first=True)


def init_biases(cell: Cell, module: nn.RNNBase, hidden_size: int) -> None:
    """Biases zero, except the gate that keeps the old state, which starts open.

    For the LSTM the forget gate (block 1 of ``i, f, g, o``), for the GRU the update gate ``z``
    (block 1 of ``r, z, n``: ``z`` near 1 keeps ``h``): a summed bias of 1 (0.5 in each of the
    two bias vectors) lets memories last from the first steps on. The plain RNN has no gate.
    """
    for name, parameter in module.named_parameters():
        if name.startswith("bias"):
            nn.init.zeros_(parameter)
            if cell in ("lstm", "gru"):
                parameter.data[hidden_size : 2 * hidden_size] = 0.5


def layer_weights(module: nn.RNNBase, layer: int) -> list[Tensor]:
    """``[W_ih, W_hh, b_ih, b_hh]`` of one layer: ``W_ih (kH, E or H)``, ``W_hh (kH, H)`` (k: :data:`GATE_BLOCKS`)."""
    return [getattr(module, f"{name}_l{layer}") for name in WEIGHT_NAMES]


def zero_cell(h: Tensor) -> Tensor:
    """The ``c`` of a cell without memory: zeros shaped like ``h``."""
    return torch.zeros_like(h)


def step_layer(cell: Cell, x: Tensor, h: Tensor, c: Tensor, weights: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
    """One word through one layer with PyTorch's cell kernels: ``x (B, E)``, ``h, c (B, H)`` -> new ``h, c``
    (``c`` zeros for the cells without one, whatever was given)."""
    if cell == "lstm":
        return torch.lstm_cell(x, (h, c), *weights)
    kernel = torch.gru_cell if cell == "gru" else torch.rnn_tanh_cell
    new_h = kernel(x, h, *weights)
    return new_h, zero_cell(new_h)


def run_layers(
    cell: Cell,
    x: Tensor,
    state: tuple[Tensor, Tensor],
    weights: Sequence[Tensor],
    num_layers: int,
    dropout: float,
    training: bool,
) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    """``x (B, T, E)`` through every layer with the given weights (``weights`` is :func:`layer_weights`
    of each layer, one list): the call the cell's ``nn`` module's ``forward`` makes, so that weight
    drop can put masked recurrent weights in place of the module's own. Returns ``(B, T, H)`` and ``(h, c)``."""
    with warnings.catch_warnings():
        # cuDNN says it copies weights that are not in one buffer: the dropped ones are new each window.
        warnings.filterwarnings("ignore", message="RNN module weights are not part of single contiguous")
        if cell == "lstm":
            output, h, c = torch.lstm(x, state, list(weights), True, num_layers, dropout, training, False, True)
            return output, (h, c)
        kernel = torch.gru if cell == "gru" else torch.rnn_tanh
        output, h = kernel(x, state[0], list(weights), True, num_layers, dropout, training, False, True)
    return output, (h, zero_cell(h))


def run_module(
    module: nn.RNNBase, cell: Cell, x: Tensor, state: tuple[Tensor, Tensor] | None
) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    """``x (B, T, E)`` through the module's own kernel (oneDNN or cuDNN) -> ``(B, T, H)`` and ``(h, c)``."""
    if cell == "lstm":
        return module(x, state)
    output, h = module(x, None if state is None else state[0])
    return output, (h, zero_cell(h))
