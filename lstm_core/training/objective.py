"""What training minimises and with what: the loss plus the activation penalties, and the optimizer."""

from __future__ import annotations

import torch
from torch import Tensor

from lstm_core.config import Config
from lstm_core.model.network import LSTMLanguageModel, State


class Objective(torch.nn.Module):
    """The model and its training objective as one module: ``(inputs, targets, state) -> (objective,
    loss, state)``, the objective being the loss plus the activation penalties the config asks for.

    DistributedDataParallel must see the output layer used inside the forward it wraps (it
    learns there which parameters will get gradients); with one process it is just these calls.
    """

    def __init__(self, model: LSTMLanguageModel, activation_reg: float = 0.0, temporal_reg: float = 0.0) -> None:
        super().__init__()
        self.model = model
        self.activation_reg = activation_reg
        self.temporal_reg = temporal_reg

    def forward(self, inputs: Tensor, targets: Tensor, state: State | None) -> tuple[Tensor, Tensor, State]:
        """The objective to minimise (the loss plus any activation penalties), the loss, and the new state."""
        raw, hidden, new_state = self.model.features(inputs, state)  # (B, T, H) each
        loss = self.model.loss(hidden, targets)
        objective = loss
        if self.activation_reg > 0:  # Merity et al.'s AR: small outputs
            objective = objective + self.activation_reg * hidden.float().pow(2).mean()
        if self.temporal_reg > 0:  # and TAR: outputs that change slowly from word to word
            objective = objective + self.temporal_reg * (raw[:, 1:] - raw[:, :-1]).float().pow(2).mean()
        return objective, loss, new_state


def make_optimizer(config: Config, model: LSTMLanguageModel) -> torch.optim.Optimizer:
    """The config's optimizer over ``model``'s parameters.

    On the CPU and on CUDA it is PyTorch's fused implementation: one kernel for all of a step's
    arithmetic instead of one pass over the weights per operation (Adam's step on a 1 x 512 model
    took 3 ms instead of 15 on the CPU). The update is the same formula, so only rounding differs.
    """
    params = model.parameters()
    fused = True if model.device.type in ("cpu", "cuda") else None  # None: PyTorch's own choice
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.learning_rate, weight_decay=config.weight_decay, fused=fused)
    cls = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    return cls(params, lr=config.learning_rate, weight_decay=config.weight_decay, fused=fused)
