"""The training loop: truncated BPTT over contiguous streams, validation, checkpoints, events.

The trainer never prints. It reports through one callback that receives :data:`Event` objects
(a step, an evaluation, prime-text samples, a checkpoint, the end), which the CLI turns into a
progress bar and the app into live charts. It can be stopped from another thread, resumes a run
exactly from a checkpoint, and is deterministic on the CPU for a given config and seed.

The same trainer runs as one rank of several processes (torchrun) when it is given a
:class:`~lstm_core.training.distributed.DistributedContext`; see :mod:`lstm_core.training.distributed` for how the
ranks share the batch. Then rank 0 alone reports events and writes checkpoints, the reported
losses and validation losses are those of the whole batch, and all ranks end at the same step.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from lstm_core.config import Config, ConfigError
from lstm_core.data.batching import batchify, num_windows, windows
from lstm_core.data.dataset import Dataset
from lstm_core.errors import InputError
from lstm_core.evaluation.scoring import evaluate, evaluation_rows, perplexity
from lstm_core.model.checkpoint import Checkpoint, copy_weights, save_checkpoint
from lstm_core.model.network import LSTMLanguageModel, State, choose_cutoffs, detach_state
from lstm_core.runs.folder import prune_snapshots, snapshot_path
from lstm_core.system.runtime import autocast, resolve_device, resolve_precision, set_seed
from lstm_core.training.averaging import WeightAverage
from lstm_core.training.distributed import DistributedContext, rank_seed

CUDA_SYNC_EVERY = 20
"""On a GPU the trainer reads the loss back to the host every this many steps, not every step: each
read waits for the GPU to finish its queue. On the CPU it reads every step (there is nothing to wait for)."""
# Settings that may change when a run is resumed; everything else must match the checkpoint.
RESUMABLE_CHANGES = frozenset(
    {"epochs", "train_minutes", "eval_every", "save_every", "prime_texts", "sample_length", "device", "precision"}
)


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite. Checkpoints already on disk are left as they were."""


# ---- events --------------------------------------------------------------------------------


@dataclass(frozen=True)
class StepEvent:
    epoch: int
    step: int
    total_steps: int
    """The steps the run will take: its epochs', or, with a time budget (``train_minutes``), the
    steps the time left holds at this session's pace so far, if fewer."""
    loss: float
    learning_rate: float
    tokens_per_s: float
    elapsed_s: float
    eta_s: float
    kind: Literal["step"] = "step"


@dataclass(frozen=True)
class EvalEvent:
    epoch: int
    step: int
    val_loss: float
    perplexity: float
    best: bool
    elapsed_s: float = 0.0
    kind: Literal["eval"] = "eval"


@dataclass(frozen=True)
class SampleEvent:
    step: int
    samples: dict[str, str]
    kind: Literal["sample"] = "sample"


@dataclass(frozen=True)
class CheckpointEvent:
    step: int
    path: str
    best: bool
    kind: Literal["checkpoint"] = "checkpoint"


EndReason = Literal["finished", "stopped", "time_limit", "idle", "interrupted"]
"""Why a run ended: all epochs (or its ``train_minutes``) done; a stop was asked for (``stopped``: by
the user, ``idle``: nobody watched it, ``interrupted``: the process was told to end, e.g. a server
shutting down); or its training time reached the limit."""
StopReason = Literal["stopped", "idle", "interrupted"]
_STOP_PRECEDENCE: tuple[StopReason, ...] = ("interrupted", "stopped", "idle")
"""When ranks were asked to stop for different reasons at once, the first of these is the run's."""


@dataclass(frozen=True)
class EndEvent:
    step: int
    reason: EndReason
    elapsed_s: float
    val_loss: float | None
    perplexity: float | None
    kind: Literal["end"] = "end"


Event = StepEvent | EvalEvent | SampleEvent | CheckpointEvent | EndEvent
Callback = Callable[[Event], None]
EVENT_TYPES: dict[str, type] = {
    "step": StepEvent,
    "eval": EvalEvent,
    "sample": SampleEvent,
    "checkpoint": CheckpointEvent,
    "end": EndEvent,
}


def event_from_dict(data: dict[str, Any]) -> Event | None:
    """An event from its plain form (a line of a run's ``events.jsonl``), or None if it is not one.

    Fields the event type does not know are ignored, so a newer writer's extra fields do not
    break an older reader.
    """
    cls = EVENT_TYPES.get(data.get("kind", ""))
    if cls is None:
        return None
    names = {f.name for f in dataclasses.fields(cls)}
    try:
        return cls(**{name: value for name, value in data.items() if name in names})
    except TypeError:  # a required field is missing
        return None


@dataclass
class TrainResult:
    reason: EndReason
    steps: int
    elapsed_s: float
    val_loss: float | None
    perplexity: float | None
    best_val_loss: float | None
    checkpoint: Checkpoint = field(repr=False)


# ---- helpers -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _PendingStep:
    """A step whose loss (and gradient norm) are still tensors on the device, not yet read back."""

    step: int
    epoch: int
    loss: Tensor
    norm: Tensor | None
    learning_rate: float


@dataclass(frozen=True)
class _TrainingState:
    """What a resumable checkpoint holds beyond weights and optimizer: see ``Trainer._gather_training_state``."""

    carry: tuple[Tensor, Tensor] | None
    rng_state: Tensor
    rank_rng_states: list[Tensor] | None


def _ignore(event: Event) -> None:
    pass


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


def _optimizer(config: Config, model: LSTMLanguageModel) -> torch.optim.Optimizer:
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


class _Objective(torch.nn.Module):
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


# ---- the trainer ---------------------------------------------------------------------------


class Trainer:
    """Trains one model on one dataset; :meth:`fit` runs until done, stopped or out of time.

    ``out_dir`` (optional) receives ``last.pt`` (everything needed to resume), ``best.pt``
    (the weights with the lowest validation loss so far) and, at every evaluation, a float16
    snapshot of the model in ``snapshots/`` (a bounded number of them: :mod:`lstm_core.runs.folder`).
    Without it nothing is written and :meth:`checkpoint` gives the run as an in-memory
    :class:`Checkpoint`.

    ``distributed`` makes this trainer one rank of a run on several processes. Every rank gets
    the same config, dataset, ``out_dir``, time limit and checkpoint to resume; the device is
    the context's (the config's ``device`` is not used then). Only rank 0 calls ``callback``
    and writes to ``out_dir``; the other ranks take part in the same collectives at the same
    steps, so every rank must call :meth:`fit` (and :meth:`checkpoint`, which gathers from all).

    ``clock`` (seconds; ``time.perf_counter`` by default) is what the time limit, the config's time
    budget (``train_minutes``) and the reported times read.
    """

    def __init__(
        self,
        config: Config,
        dataset: Dataset,
        *,
        out_dir: Path | str | None = None,
        callback: Callback | None = None,
        time_limit_s: float | None = None,
        resume: Checkpoint | None = None,
        distributed: DistributedContext | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        if resume is not None:
            config = self._resumed_config(resume.config, config)
            if dataset.vocab != resume.vocab:
                raise ConfigError(
                    "this text gives a different vocabulary from the checkpoint's: resume with the same "
                    "corpus and min_word_freq the run started with"
                )
        self.config = config
        self.dataset = dataset
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.world = (
            distributed if distributed is not None else DistributedContext.single(resolve_device(config.device))
        )
        # Events describe the whole run, so one rank reports them.
        self.callback = (callback or _ignore) if self.world.is_main else _ignore
        self.time_limit_s = time_limit_s
        self._now = clock
        self.device = self.world.device
        self.dtype = resolve_precision(config.precision, self.device)
        self._stop = threading.Event()
        self._stop_reason: StopReason = "stopped"
        self._lock = threading.Lock()
        self._sync_every = CUDA_SYNC_EVERY if self.device.type == "cuda" else 1

        streams = batchify(dataset.train, config.batch_size, config.training_seq_len, "the training text")
        streams = streams[self.world.training_rows(config.batch_size)]  # (B / ranks, n): this rank's share
        # On a GPU the whole id stream (a few MB) is copied there once, through pinned memory,
        # rather than one window per step.
        if self.device.type == "cuda":
            streams = streams.pin_memory().to(self.device, non_blocking=True)
        self.train_streams = streams
        if dataset.valid.numel() < 2:
            raise InputError("the validation text needs at least 2 words; use a larger text or valid_fraction")
        self.steps_per_epoch = num_windows(self.train_streams, config.training_seq_len)
        self.total_steps = self.steps_per_epoch * config.epochs

        set_seed(config.seed)
        cutoffs = resume.cutoffs if resume is not None else choose_cutoffs(dataset.vocab.counts)
        self.model = LSTMLanguageModel(len(dataset.vocab), config, cutoffs).to(self.device)
        if self.world.rank > 0:
            torch.manual_seed(rank_seed(config.seed, self.world.rank))  # its own dropout masks
        self.optimizer = _optimizer(config, self.model)
        self.average = (
            WeightAverage(self.model, config.weight_average, config.ema_decay)
            if config.weight_average != "off"
            else None
        )
        self.step = 0
        self.epoch = 0
        self.window = 0  # index of the next window within the epoch
        self.elapsed_s = 0.0
        self.best_val_loss: float | None = None
        self.last_val_loss: float | None = None
        self._budget_s = config.train_minutes * 60 if config.train_minutes > 0 else None
        self._run_clock = 0.0  # the run's training time at the last look at the clock (all ranks agree on it)
        self.history: dict[str, list[dict[str, Any]]] = {"steps": [], "evals": [], "samples": []}
        self._carry: State | None = None
        self._pending: list[_PendingStep] = []
        if resume is not None:
            self._restore(resume)
        self._run_clock = self.elapsed_s
        # Built after the restore: DDP starts every rank from rank 0's weights.
        self._objective = self.world.wrap(
            _Objective(self.model, config.activation_reg, config.temporal_reg),
            find_unused_parameters=config.output_layer == "adaptive",
        )

    # ---- public API ----

    def request_stop(self, reason: StopReason = "stopped") -> None:
        """Ask the run to end after the current step (safe to call from any thread)."""
        self._stop_reason = reason
        self._stop.set()

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    @property
    def finished(self) -> bool:
        return self.step >= self.total_steps or self._budget_used()

    def _budget_used(self) -> bool:
        return self._budget_s is not None and self._run_clock >= self._budget_s

    def _time_progress(self) -> float | None:
        """The share of a time budget (``train_minutes``) used so far; None for a run by epochs."""
        return None if self._budget_s is None else min(1.0, self._run_clock / self._budget_s)

    def snapshot(self) -> LSTMLanguageModel:
        """A CPU copy of the model as it is now (its averaged weights, once averaging has begun),
        in eval mode; safe while :meth:`fit` runs."""
        with self._lock:
            model = copy.deepcopy(self.model)
            if self.average is not None and self.average.active:
                model.load_state_dict(self.average.state_dict())
        return model.cpu().eval()

    @property
    def average_start_step(self) -> int | None:
        """The weights after every (0-based) step from this one on are averaged; None without averaging,
        or with a time budget, where averaging starts at ``average_start`` of the time."""
        if self.average is None or self._budget_s is not None:
            return None
        return int(self.config.average_start * self.total_steps)

    def _averaging_due(self) -> bool:
        if self.average is None:
            return False
        progress = self._time_progress()
        if progress is not None:
            return progress >= self.config.average_start
        return self.step >= self.average_start_step  # type: ignore[operator]

    def checkpoint(self, training_state: bool = True) -> Checkpoint:
        """The run as a :class:`Checkpoint` (with optimizer and carried state unless told not to).

        With several ranks and ``training_state``, every rank must call this together: the
        carried LSTM state and the random states are gathered from all of them.
        """
        return self._checkpoint(self._gather_training_state() if training_state else None)

    def _gather_training_state(self) -> _TrainingState:
        """The carried LSTM state of the whole batch and each rank's random state (a collective).

        The carry is stored as one process would hold it, ``(L, B, H)`` with every rank's rows in
        order, so a checkpoint resumes on any number of ranks. The random states of all ranks
        are kept too; ``rng_state`` is rank 0's, as a single process would save it.
        """
        if self.world.size == 1:
            with self._lock:
                carry = None if self._carry is None else (self._carry[0].cpu(), self._carry[1].cpu())
                return _TrainingState(carry, torch.get_rng_state(), None)
        rng_state = torch.get_rng_state()
        carry = None
        if self._carry is not None:  # None on every rank at once: at the start of an epoch
            h, c = (torch.cat(self.world.gather(t), dim=1).cpu() for t in self._carry)  # (L, B, H)
            carry = (h, c)
        states = [t.cpu() for t in self.world.gather(rng_state.to(self.device))]
        return _TrainingState(carry, rng_state, states)

    def _checkpoint(self, training: _TrainingState | None) -> Checkpoint:
        """The run now. Once weights are averaged, ``weights`` holds the average (the model to
        sample, evaluate or export) and, with the training state, ``training_weights`` the raw
        weights that training goes on from."""
        averaged = self.average is not None and self.average.active
        with self._lock:
            checkpoint = Checkpoint(
                config=self.config,
                vocab=self.dataset.vocab,
                weights=copy_weights(self.average.state_dict() if averaged else self.model.state_dict()),  # type: ignore[union-attr]
                training_weights=copy_weights(self.model.state_dict()) if averaged and training is not None else None,
                cutoffs=list(self.model.cutoffs),
                optimizer=copy.deepcopy(self.optimizer.state_dict()) if training is not None else None,
                progress={
                    "step": self.step,
                    "epoch": self.epoch,
                    "window": self.window,
                    "total_steps": self.total_steps,
                    "elapsed_s": self.elapsed_s,
                    "best_val_loss": self.best_val_loss,
                    "last_val_loss": self.last_val_loss,
                    "averaged_steps": self.average.count if self.average is not None else 0,
                },
                history=copy.deepcopy(self.history),
                carry=training.carry if training is not None else None,
                rng_state=training.rng_state if training is not None else None,
                rank_rng_states=training.rank_rng_states if training is not None else None,
                dataset={
                    "name": self.dataset.name,
                    "train_tokens": self.dataset.train.numel(),
                    "valid_tokens": self.dataset.valid.numel(),
                },
            )
        return checkpoint

    def fit(self) -> TrainResult:
        """Train until all epochs are done (or the config's ``train_minutes``), a stop is requested,
        or the time limit passes.

        The time limit and the time budget count the run's whole training time, across resumes: a
        run resumed with its time already used up ends at once, without a step.
        """
        config = self.config
        seq_len = config.training_seq_len
        self._session_start = self._now()
        self._session_steps = 0
        self._session_tokens = 0
        self._base_elapsed = self.elapsed_s
        reason: EndReason = "finished"
        if self.time_limit_s is not None and self._base_elapsed > 0 and self.time_limit_s <= self._base_elapsed:
            reason = "time_limit"
        self.model.train()
        budget_used = self._budget_used()
        while self.epoch < config.epochs and reason == "finished" and not budget_used:
            state = self._carry if self.window > 0 else None
            for inputs, targets in windows(self.train_streams, seq_len, start=self.window):
                inputs, targets = inputs.to(self.device), targets.to(self.device)  # no copy when already there
                learning_rate = learning_rate_at(
                    config, self.step, self.steps_per_epoch, self.total_steps, self._time_progress()
                )
                loss, norm, state = self._train_step(inputs, targets, state, learning_rate)
                self._pending.append(_PendingStep(self.step + 1, self.epoch, loss, norm, learning_rate))
                self.step += 1
                self.window += 1
                self._carry = state
                self._session_tokens += targets.numel() * self.world.size  # the whole batch's words
                end_of_epoch = self.window >= self.steps_per_epoch
                # Every eval_every steps, else at each epoch's end; and at the run's end (below). Not
                # at every epoch's end as well: a GPU goes through these plays in seconds, and each
                # evaluation writes last.pt and best.pt.
                evaluate_now = self.step % config.eval_every == 0 if config.eval_every else end_of_epoch
                save_now = self.out_dir is not None and (
                    evaluate_now or bool(config.save_every and self.step % config.save_every == 0)
                )
                if end_of_epoch:
                    self.epoch += 1
                    self.window = 0
                    self._carry = None
                report_now = len(self._pending) >= self._sync_every or evaluate_now or save_now
                # One process looks at its stop flag and clock every step. Several agree on them only
                # where they read their losses back anyway (every step on the CPU, every
                # CUDA_SYNC_EVERY on a GPU): the same steps on every rank, so all end at the same one.
                if report_now or self.world.size == 1:
                    if report_now:
                        self._report_steps()  # the callbacks may ask for a stop
                    stop, out_of_time = self._agree_to_end()
                    budget_used = self._budget_used()
                    if stop is not None or out_of_time or budget_used:
                        self._report_steps()
                    if stop is not None:
                        reason = stop
                    elif out_of_time:
                        reason = "time_limit"
                if evaluate_now:
                    self._evaluate_and_sample()
                if save_now:
                    self._save_last()
                if reason != "finished" or end_of_epoch or budget_used:
                    break
        self._report_steps()
        evals = self.history["evals"]
        if self.step > 0 and (not evals or evals[-1]["step"] != self.step):
            self._evaluate_and_sample()  # a run ended between evaluations still reports where it stands
        self.elapsed_s = self._clock()  # before the last save: a resume's time cap counts all of it
        if self.out_dir is not None and self.step > 0:
            self._save_last()
        last = perplexity(self.last_val_loss) if self.last_val_loss is not None else None
        self.callback(EndEvent(self.step, reason, self.elapsed_s, self.last_val_loss, last))
        return TrainResult(
            reason, self.step, self.elapsed_s, self.last_val_loss, last, self.best_val_loss, self.checkpoint()
        )

    # ---- internals ----

    def _clock(self) -> float:
        """The run's whole training time so far: earlier sessions plus this one."""
        return self._base_elapsed + self._now() - self._session_start

    @property
    def _writes_files(self) -> bool:
        return self.out_dir is not None and self.world.is_main

    def _agree_to_end(self) -> tuple[StopReason | None, bool]:
        """Whether the run ends now: (the stop reason, or None; whether its time is up).

        With several ranks this is a collective: a stop asked of any rank (a signal reaches
        each) stops them all, and rank 0's clock alone decides the time limit, so every rank
        leaves the loop at the same step.
        """
        clock = self._clock()
        out_of_time = self.world.is_main and self.time_limit_s is not None and clock >= self.time_limit_s
        if self.world.size == 1:
            self._run_clock = clock
            return (self._stop_reason if self._stop.is_set() else None), out_of_time
        # (one count per stop reason, rank 0's "out of time", rank 0's clock): summed over the ranks
        flags = torch.zeros(len(_STOP_PRECEDENCE) + 2, dtype=torch.float64, device=self.device)
        if self._stop.is_set():
            flags[_STOP_PRECEDENCE.index(self._stop_reason)] = 1
        flags[-2] = float(out_of_time)
        if self.world.is_main:
            flags[-1] = clock  # rank 0's clock is the run's: the time budget's schedule must be the same on all
        asked = self.world.sum(flags).tolist()
        stop = next((reason for reason, count in zip(_STOP_PRECEDENCE, asked, strict=False) if count), None)
        if stop is not None:
            self.request_stop(stop)
        self._run_clock = asked[-1]
        return stop, bool(asked[-2])

    def _train_step(
        self, inputs: Tensor, targets: Tensor, state: State | None, learning_rate: float
    ) -> tuple[Tensor, Tensor | None, State]:
        """One optimizer step. Returns the loss and gradient norm as tensors, still on the device."""
        with autocast(self.device, self.dtype):
            objective, loss, new_state = self._objective(inputs, targets, state)
        self.optimizer.zero_grad(set_to_none=True)
        objective.backward()  # with several ranks, DDP averages the gradients over them here
        norm = None
        if self.config.grad_clip > 0:
            norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        with self._lock:
            for group in self.optimizer.param_groups:
                group["lr"] = learning_rate
            self.optimizer.step()
            if self._averaging_due():
                self.average.update()  # type: ignore[union-attr]
        return loss.detach(), norm, detach_state(new_state)

    def _report_steps(self) -> None:
        """Read the pending steps' losses back to the host (one sync), check them, record and report them."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        # Each rank's loss is the mean over its share of the batch; their mean is the batch's.
        losses = self.world.mean(torch.stack([p.loss.float() for p in pending])).tolist()
        norms = [p.norm for p in pending if p.norm is not None]
        norm_values = torch.stack(norms).tolist() if len(norms) == len(pending) else [0.0] * len(pending)
        for item, loss, norm in zip(pending, losses, norm_values, strict=True):
            if not math.isfinite(loss):
                self._diverged(f"the loss became {loss}", item.step)
            if not math.isfinite(norm):
                self._diverged(f"the gradient norm became {norm}", item.step)
        now = self._now() - self._session_start
        self.elapsed_s = self._base_elapsed + now
        for item, loss in zip(pending, losses, strict=True):
            self._session_steps += 1
            record = {"step": item.step, "epoch": item.epoch, "loss": loss, "lr": item.learning_rate}
            self.history["steps"].append({**record, "elapsed_s": self.elapsed_s})
            eta = self._eta(item.step, now)
            total = self.total_steps
            if self._budget_s is not None and now > 0:  # the steps the time left holds at this pace
                total = min(total, item.step + round(eta * self._session_steps / now))
            self.callback(
                StepEvent(
                    epoch=item.epoch,
                    step=item.step,
                    total_steps=total,
                    loss=loss,
                    learning_rate=item.learning_rate,
                    tokens_per_s=self._session_tokens / now if now > 0 else 0.0,
                    elapsed_s=self.elapsed_s,
                    eta_s=eta,
                )
            )

    def _eta(self, step: int, session_s: float) -> float:
        """Seconds left: the steps left at this session's pace, or less where a time budget ends first."""
        by_steps = (self.total_steps - step) * session_s / self._session_steps
        if self._budget_s is None:
            return by_steps
        return max(0.0, min(by_steps, self._budget_s - self.elapsed_s))

    def _diverged(self, what: str, step: int) -> None:
        saved = f" The last checkpoint in {self.out_dir} was left as it was." if self.out_dir is not None else ""
        raise TrainingDiverged(
            f"{what} at step {step}, so training stopped. Try a lower learning rate "
            f"(now {self.config.learning_rate:g}) or a smaller grad_clip.{saved}"
        )

    def _validation_loss(self) -> float:
        """The mean loss per word on the validation text; with several ranks, each scores a share.

        :func:`evaluate` cuts the text into ``rows`` contiguous rows of ``length`` words
        (:func:`evaluation_rows`); each rank scores a run of whole rows, and the sums of losses and word
        counts are added up over the ranks. So every rank gets the single-process validation loss
        over the same rows and windows, up to the order of the float sums.
        """
        ids, seq_len = self.dataset.valid, self.config.training_seq_len
        if self.world.size == 1:
            return evaluate(self.model, ids, seq_len, dtype=self.dtype)[0]
        rows = evaluation_rows(ids.numel(), seq_len)
        length = ids.numel() // rows
        first, last = self.world.share(rows)  # a rank may have no row of a short text
        totals = torch.zeros(2, dtype=torch.float64, device=self.device)  # (sum of losses, words)
        if last > first:
            loss, count = evaluate(
                self.model, ids[first * length : last * length], seq_len, batch_size=last - first, dtype=self.dtype
            )
            totals += torch.tensor([loss * count, count], dtype=torch.float64, device=self.device)
        total, count = self.world.sum(totals).tolist()
        return total / count

    def _evaluate_and_sample(self) -> None:
        """Validate, keep ``best.pt`` and sample, all with the averaged weights once there are some."""
        averaged = self.average.applied(self._lock) if self.average is not None else contextlib.nullcontext()
        with averaged:
            self._evaluate_and_sample_now()

    def _evaluate_and_sample_now(self) -> None:
        val_loss = self._validation_loss()
        best = self.best_val_loss is None or val_loss < self.best_val_loss
        self.last_val_loss = val_loss
        if best:
            self.best_val_loss = val_loss
        elapsed = self.elapsed_s
        value = perplexity(val_loss)
        record = {"step": self.step, "epoch": self.epoch, "val_loss": val_loss, "perplexity": value}
        self.history["evals"].append({**record, "elapsed_s": elapsed})
        self.callback(EvalEvent(self.epoch, self.step, val_loss, value, best, elapsed))
        if best and self._writes_files:
            path = save_checkpoint(self.checkpoint(training_state=False), self.out_dir / "best.pt")  # type: ignore[operator]
            self.callback(CheckpointEvent(self.step, str(path), best=True))
        if self._writes_files:
            self._save_snapshot()
        if not self.world.is_main:
            return  # samples are for the reports
        samples = self._samples()
        self.history["samples"].append({"step": self.step, "samples": samples})
        self.callback(SampleEvent(self.step, samples))

    def _samples(self) -> dict[str, str]:
        from lstm_core.sampling.decoding import generate
        from lstm_core.sampling.options import SamplingOptions

        samples = {}
        for prime in self.config.prime_texts:
            try:
                result = generate(self.model, self.dataset.vocab, prime, self.config.sample_length, SamplingOptions())
                samples[prime] = result.text
            except ValueError as error:  # e.g. a prime with no words after cleaning
                samples[prime] = f"({error})"
        return samples

    def _save_snapshot(self) -> None:
        """Keep the model as it is at this evaluation (float16, model only) in the run's ``snapshots/``,
        so a page can write with it as it was then; older snapshots are thinned to a bounded count
        (:func:`lstm_core.runs.folder.thin_snapshots`)."""
        snapshot = self.checkpoint(training_state=False).without_training_state(half=True)
        save_checkpoint(snapshot, snapshot_path(self.out_dir, self.step))  # type: ignore[arg-type]
        prune_snapshots(self.out_dir)  # type: ignore[arg-type]

    def _save_last(self) -> None:
        training = self._gather_training_state()  # every rank takes part; rank 0 writes
        if self._writes_files:
            path = save_checkpoint(self._checkpoint(training), self.out_dir / "last.pt")  # type: ignore[operator]
            self.callback(CheckpointEvent(self.step, str(path), best=False))

    @staticmethod
    def _resumed_config(saved: Config, requested: Config | None) -> Config:
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

    def _restore(self, checkpoint: Checkpoint) -> None:
        # An averaging run's checkpoint holds the average as its weights and the raw ones beside.
        averaged_steps = int(checkpoint.progress.get("averaged_steps", 0))
        if checkpoint.training_weights is not None:
            self.model.load_state_dict(checkpoint.training_weights)
            if self.average is not None and averaged_steps:
                self.average.load(checkpoint.weights, averaged_steps)
        else:
            self.model.load_state_dict(checkpoint.weights)
        if checkpoint.optimizer is None:
            raise ConfigError("this checkpoint holds no optimizer state (a model-only export), so it cannot be resumed")
        self.optimizer.load_state_dict(checkpoint.optimizer)
        progress = checkpoint.progress
        self.step = int(progress.get("step", 0))
        self.epoch = int(progress.get("epoch", 0))
        self.window = int(progress.get("window", 0))
        self.elapsed_s = float(progress.get("elapsed_s", 0.0))
        self.best_val_loss = progress.get("best_val_loss")
        self.last_val_loss = progress.get("last_val_loss")
        self.history = {key: list(checkpoint.history.get(key, [])) for key in ("steps", "evals", "samples")}
        if checkpoint.carry is not None and self.window > 0:
            rows = self.world.training_rows(self.config.batch_size)  # the carry holds the whole batch
            self._carry = (
                checkpoint.carry[0][:, rows].contiguous().to(self.device),
                checkpoint.carry[1][:, rows].contiguous().to(self.device),
            )
        # Each rank continues its own random stream when the run was saved by as many ranks. Else
        # rank 0 takes the run's (rank 0's) state and the others a fresh stream: a run resumed on
        # another number of ranks draws other dropout masks than an uninterrupted one would.
        states = checkpoint.rank_rng_states
        if states is not None and len(states) == self.world.size:
            torch.set_rng_state(states[self.world.rank])
        elif self.world.rank > 0:
            torch.manual_seed(rank_seed(self.config.seed, self.world.rank, self.step))
        elif checkpoint.rng_state is not None:
            torch.set_rng_state(checkpoint.rng_state)
