"""Weight averaging: the mean of the weights over the last part of a run, validated and saved as the model.

Late in a run the optimizer keeps moving the weights around a minimum rather than into it: each
step's weights are a noisy point near it. Their average lies nearer the middle and predicts better
than any one of them (Polyak averaging; the averaged SGD of Merity et al.'s AWD-LSTM and the
stochastic weight averaging of Izmailov et al. are the same idea). Training itself goes on with
the raw weights; the average is what the trainer validates, keeps as ``best.pt`` and writes as
the model of ``last.pt``, beside the raw weights a resume continues from.

Two kinds (``Config.weight_average``):

* ``uniform``: every step's weights after ``average_start`` count the same,
  ``avg_n = avg_{n-1} + (w_n - avg_{n-1}) / n``;
* ``ema``: an exponential moving average, ``avg_n = decay * avg_{n-1} + (1 - decay) * w_n``,
  started from the weights at ``average_start``.

The average is one float32 copy of the parameters (tied weights once), on their device.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Literal

import torch
from torch import Tensor, nn


class WeightAverage:
    """A running average of ``model``'s parameters, updated after optimizer steps.

    ``count`` is how many steps' weights it holds; 0 means none yet (it is not active).
    """

    def __init__(self, model: nn.Module, kind: Literal["uniform", "ema"], decay: float = 0.999) -> None:
        self.model = model
        self.kind = kind
        self.decay = decay
        self.parameters = list(model.named_parameters())  # a tied matrix once, under its first name
        self.average: list[Tensor] = []
        self.count = 0

    @property
    def active(self) -> bool:
        return self.count > 0

    @torch.no_grad()
    def update(self) -> None:
        """Take the model's current weights into the average (call after each optimizer step)."""
        if self.count == 0:
            self.average = [parameter.detach().clone() for _, parameter in self.parameters]
        else:
            weight = 1.0 / (self.count + 1) if self.kind == "uniform" else 1.0 - self.decay
            for average, (_, parameter) in zip(self.average, self.parameters, strict=True):
                average.lerp_(parameter.detach(), weight)
        self.count += 1

    def state_dict(self) -> dict[str, Tensor]:
        """The model's ``state_dict`` with the averaged tensors in place of its parameters.

        Every name of a tied matrix maps to the same averaged tensor, so a checkpoint still
        stores it once and a model built from it is still tied.
        """
        by_parameter = {id(p): average for (_, p), average in zip(self.parameters, self.average, strict=True)}
        averaged = {name: by_parameter[id(p)] for name, p in self.model.named_parameters(remove_duplicate=False)}
        return {name: averaged.get(name, tensor) for name, tensor in self.model.state_dict().items()}

    def load(self, weights: Mapping[str, Tensor], count: int) -> None:
        """Continue from a saved average (a checkpoint's ``weights``) of ``count`` steps."""
        self.average = [
            weights[name].detach().to(parameter.device, parameter.dtype, copy=True)
            for name, parameter in self.parameters
        ]
        self.count = count

    @contextlib.contextmanager
    def applied(self, lock: contextlib.AbstractContextManager | None = None) -> Iterator[None]:
        """The averaged weights in the model for the block, the raw ones back after (a no-op while inactive).

        ``lock`` is held while the weights are exchanged (not during the block), so that another
        thread copying the model never sees half of each.
        """
        if not self.active:
            yield
            return
        guard = lock if lock is not None else contextlib.nullcontext()
        with guard, torch.no_grad():
            raw = [parameter.detach().clone() for _, parameter in self.parameters]
            for average, (_, parameter) in zip(self.average, self.parameters, strict=True):
                parameter.copy_(average)
        try:
            yield
        finally:
            with guard, torch.no_grad():
                for saved, (_, parameter) in zip(raw, self.parameters, strict=True):
                    parameter.copy_(saved)
