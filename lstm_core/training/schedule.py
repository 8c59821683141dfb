"""The learning rate at each step: a pure function of the step, so a resumed run needs no scheduler state."""

from __future__ import annotations

import math

from lstm_core.config import Config


def learning_rate_at(
    config: Config, step: int, steps_per_epoch: int, total_steps: int, progress: float | None = None
) -> float:
    """The learning rate for (0-based) ``step``: a pure function, so resuming needs no scheduler state.

    The cosine schedule follows ``progress`` (the share of the run done) where given, which a run
    with a time budget (``train_minutes``) measures in time; else ``step / total_steps``.
    """
    if config.lr_schedule == "exponential":
        return config.learning_rate * config.lr_decay ** (step // max(1, steps_per_epoch))
    if config.lr_schedule == "cosine":
        if progress is None:
            progress = step / max(1, total_steps)
        progress = min(1.0, progress)
        return config.learning_rate * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress)))
    return config.learning_rate
