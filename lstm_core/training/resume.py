"""A run as a checkpoint and back: what a checkpoint holds, how a new trainer takes it back, what may change.

A resumed run continues exactly where it stopped: the same weights (raw and averaged), the same
optimizer moments, the LSTM state carried into the next window and each rank's random stream.
:func:`gather_training_state` collects the last two from a running trainer (from every rank at
once), :func:`run_checkpoint` puts it all in one :class:`Checkpoint`, and the ``restore_*``
functions put it back into a new trainer.
"""

from __future__ import annotations

import copy
import threading
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from lstm_core.config import Config, ConfigError
from lstm_core.data.dataset import Dataset
from lstm_core.model.checkpoint import Checkpoint, copy_weights
from lstm_core.model.network import LSTMLanguageModel, State
from lstm_core.training.averaging import WeightAverage
from lstm_core.training.distributed import DistributedContext, rank_seed

RESUMABLE_CHANGES = frozenset(
    {"epochs", "train_minutes", "eval_every", "save_every", "prime_texts", "sample_length", "device", "precision"}
)
"""Settings that may change when a run is resumed; everything else must match the checkpoint."""


@dataclass(frozen=True)
class TrainingState:
    """What a resumable checkpoint holds beyond weights and optimizer: see :func:`gather_training_state`."""

    carry: tuple[Tensor, Tensor] | None
    rng_state: Tensor
    rank_rng_states: list[Tensor] | None


def resumed_config(saved: Config, requested: Config | None) -> Config:
    """The config a resumed run trains with: the checkpoint's, with the :data:`RESUMABLE_CHANGES` asked for.

    Any other change is refused with a :class:`ConfigError` naming it: the weights and the optimizer
    state only make sense for the model and the data they were trained with.
    """
    if requested is None or requested == saved:
        return saved
    changed = {
        name: value
        for name, value in requested.to_dict().items()
        if value != saved.to_dict()[name] and name in RESUMABLE_CHANGES
    }
    refused = sorted(
        name
        for name, value in requested.to_dict().items()
        if value != saved.to_dict()[name] and name not in RESUMABLE_CHANGES
    )
    if refused:
        allowed = ", ".join(sorted(RESUMABLE_CHANGES))
        raise ConfigError(f"cannot change {', '.join(refused)} when resuming; only {allowed} may change")
    return saved.replace(**changed)


def gather_training_state(world: DistributedContext, carry: State | None, lock: threading.Lock) -> TrainingState:
    """The carried LSTM state of the whole batch and each rank's random state (a collective).

    The carry is stored as one process would hold it, ``(L, B, H)`` with every rank's rows in
    order, so a checkpoint resumes on any number of ranks. The random states of all ranks
    are kept too; ``rng_state`` is rank 0's, as a single process would save it. ``lock`` is the
    trainer's: with one process the carry is read under it, as another thread may ask mid-step.
    """
    if world.size == 1:
        with lock:
            single = None if carry is None else (carry[0].cpu(), carry[1].cpu())
            return TrainingState(single, torch.get_rng_state(), None)
    rng_state = torch.get_rng_state()
    whole = None
    if carry is not None:  # None on every rank at once: at the start of an epoch
        h, c = (torch.cat(world.gather(t), dim=1).cpu() for t in carry)  # (L, B, H)
        whole = (h, c)
    states = [t.cpu() for t in world.gather(rng_state.to(world.device))]
    return TrainingState(whole, rng_state, states)


def run_checkpoint(
    config: Config,
    dataset: Dataset,
    model: LSTMLanguageModel,
    average: WeightAverage | None,
    optimizer: torch.optim.Optimizer,
    progress: dict[str, Any],
    history: dict[str, list[dict[str, Any]]],
    training: TrainingState | None,
) -> Checkpoint:
    """A run as a :class:`Checkpoint`, every part copied (training may go on at once); resumable given ``training``.

    Once weights are averaged, ``weights`` holds the average (the model to sample, evaluate or
    export) and, with the training state, ``training_weights`` the raw weights that training goes
    on from (:func:`restore_weights` reads them so). Without ``training`` it holds no optimizer
    state either: the model alone, with its history.
    """
    averaged = average is not None and average.active
    return Checkpoint(
        config=config,
        vocab=dataset.vocab,
        weights=copy_weights(average.state_dict() if averaged else model.state_dict()),  # type: ignore[union-attr]
        training_weights=copy_weights(model.state_dict()) if averaged and training is not None else None,
        cutoffs=list(model.cutoffs),
        optimizer=copy.deepcopy(optimizer.state_dict()) if training is not None else None,
        progress=progress,
        history=copy.deepcopy(history),
        carry=training.carry if training is not None else None,
        rng_state=training.rng_state if training is not None else None,
        rank_rng_states=training.rank_rng_states if training is not None else None,
        dataset={"name": dataset.name, "train_tokens": dataset.train.numel(), "valid_tokens": dataset.valid.numel()},
    )


def restore_weights(
    checkpoint: Checkpoint, model: torch.nn.Module, average: WeightAverage | None, optimizer: torch.optim.Optimizer
) -> None:
    """Load a resumable checkpoint's weights, weight average and optimizer state into a new trainer's.

    An averaging run's checkpoint holds the average as its weights and the raw ones beside
    (``training_weights``): training goes on from the raw ones. A model-only export has no
    optimizer state and cannot be resumed (:class:`ConfigError`).
    """
    averaged_steps = int(checkpoint.progress.get("averaged_steps", 0))
    if checkpoint.training_weights is not None:
        model.load_state_dict(checkpoint.training_weights)
        if average is not None and averaged_steps:
            average.load(checkpoint.weights, averaged_steps)
    else:
        model.load_state_dict(checkpoint.weights)
    if checkpoint.optimizer is None:
        raise ConfigError("this checkpoint holds no optimizer state (a model-only export), so it cannot be resumed")
    optimizer.load_state_dict(checkpoint.optimizer)


def restored_carry(checkpoint: Checkpoint, rows: slice, device: torch.device) -> State | None:
    """This rank's rows of the LSTM state carried into the next window, ``(L, B / ranks, H)`` each, on
    ``device``; None when the checkpoint carries none (it was saved at the start of an epoch)."""
    if checkpoint.carry is None:
        return None
    return (
        checkpoint.carry[0][:, rows].contiguous().to(device),
        checkpoint.carry[1][:, rows].contiguous().to(device),
    )


def restore_random_state(checkpoint: Checkpoint, world: DistributedContext, seed: int, step: int) -> None:
    """Put back this rank's random stream, so a resumed run draws the dropout masks it would have drawn.

    Each rank continues its own stream when the run was saved by as many ranks. Else rank 0 takes
    the run's (rank 0's) state and the others a fresh stream: a run resumed on another number of
    ranks draws other dropout masks than an uninterrupted one would.
    """
    states = checkpoint.rank_rng_states
    if states is not None and len(states) == world.size:
        torch.set_rng_state(states[world.rank])
    elif world.rank > 0:
        torch.manual_seed(rank_seed(seed, world.rank, step))
    elif checkpoint.rng_state is not None:
        torch.set_rng_state(checkpoint.rng_state)
