"""The training loop: truncated BPTT over contiguous streams, validation, checkpoints, events.

The trainer never prints. It reports through one callback that receives :data:`Event` objects
(a step, an evaluation, prime-text samples, a checkpoint, the end: :mod:`lstm_core.training.events`),
which the CLI turns into a progress bar and the app into live charts. It can be stopped from another
thread, resumes a run exactly from a checkpoint (:mod:`lstm_core.training.resume`), and is
deterministic on the CPU for a given config and seed. What it minimises, its learning rate, its
clock and what it measures at an evaluation are the modules beside this one (``training/__init__``).

The same trainer runs as one rank of several processes (torchrun) when it is given a
:class:`~lstm_core.training.distributed.DistributedContext`; see :mod:`lstm_core.training.distributed` for how the
ranks share the batch. Then rank 0 alone reports events and writes checkpoints, the reported
losses and validation losses are those of the whole batch, and all ranks end at the same step.
"""

from __future__ import annotations

import contextlib
import copy
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from lstm_core.config import Config, ConfigError
from lstm_core.data.batching import batchify, num_windows, windows
from lstm_core.data.dataset import Dataset
from lstm_core.errors import InputError
from lstm_core.evaluation.scoring import perplexity
from lstm_core.model.checkpoint import Checkpoint, save_checkpoint
from lstm_core.model.network import LSTMLanguageModel, State, choose_cutoffs, detach_state
from lstm_core.runs.folder import prune_snapshots, snapshot_path
from lstm_core.system.runtime import autocast, resolve_device, resolve_precision, set_seed
from lstm_core.training.averaging import WeightAverage
from lstm_core.training.clock import RunClock
from lstm_core.training.distributed import DistributedContext, rank_seed
from lstm_core.training.events import (
    Callback,
    CheckpointEvent,
    EndEvent,
    EndReason,
    EvalEvent,
    Event,
    SampleEvent,
    StepEvent,
    StopReason,
)
from lstm_core.training.objective import Objective, make_optimizer
from lstm_core.training.resume import (
    TrainingState,
    gather_training_state,
    restore_random_state,
    restore_weights,
    restored_carry,
    resumed_config,
    run_checkpoint,
)
from lstm_core.training.schedule import learning_rate_at
from lstm_core.training.validation import prime_samples, validation_loss

CUDA_SYNC_EVERY = 20
"""On a GPU the trainer reads the loss back to the host every this many steps, not every step: each
read waits for the GPU to finish its queue. On the CPU it reads every step (there is nothing to wait for)."""


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite. Checkpoints already on disk are left as they were."""


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


def _ignore(event: Event) -> None:
    pass


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
            config = resumed_config(resume.config, config)
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
        self.optimizer = make_optimizer(config, self.model)
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
        self.history: dict[str, list[dict[str, Any]]] = {"steps": [], "evals": [], "samples": []}
        self._carry: State | None = None
        self._pending: list[_PendingStep] = []
        if resume is not None:
            self._restore(resume)
        budget_s = config.train_minutes * 60 if config.train_minutes > 0 else None
        self.run_clock = RunClock(clock, time_limit_s, budget_s, self.elapsed_s)
        # Built after the restore: DDP starts every rank from rank 0's weights.
        self._objective = self.world.wrap(
            Objective(self.model, config.activation_reg, config.temporal_reg),
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
        return self.step >= self.total_steps or self.run_clock.budget_used

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
        if self.average is None or self.run_clock.budget_s is not None:
            return None
        return int(self.config.average_start * self.total_steps)

    def _averaging_due(self) -> bool:
        if self.average is None:
            return False
        progress = self.run_clock.progress()
        if progress is not None:
            return progress >= self.config.average_start
        return self.step >= self.average_start_step  # type: ignore[operator]

    def checkpoint(self, training_state: bool = True) -> Checkpoint:
        """The run as a :class:`Checkpoint` (with optimizer and carried state unless told not to).

        With several ranks and ``training_state``, every rank must call this together: the
        carried LSTM state and the random states are gathered from all of them.
        """
        return self._checkpoint(self._gather_training_state() if training_state else None)

    def _gather_training_state(self) -> TrainingState:
        """The training state of the whole run: a collective, see :func:`gather_training_state`."""
        return gather_training_state(self.world, self._carry, self._lock)

    def _checkpoint(self, training: TrainingState | None) -> Checkpoint:
        """The run now (:func:`run_checkpoint`): resumable given ``training``."""
        with self._lock:
            progress = {
                "step": self.step,
                "epoch": self.epoch,
                "window": self.window,
                "total_steps": self.total_steps,
                "elapsed_s": self.elapsed_s,
                "best_val_loss": self.best_val_loss,
                "last_val_loss": self.last_val_loss,
                "averaged_steps": self.average.count if self.average is not None else 0,
            }
            return run_checkpoint(
                self.config, self.dataset, self.model, self.average, self.optimizer, progress, self.history, training
            )

    def fit(self) -> TrainResult:
        """Train until all epochs are done (or the config's ``train_minutes``), a stop is requested,
        or the time limit passes.

        The time limit and the time budget count the run's whole training time, across resumes: a
        run resumed with its time already used up ends at once, without a step.
        """
        config = self.config
        seq_len = config.training_seq_len
        self.run_clock.start(self.elapsed_s)
        reason: EndReason = "time_limit" if self.run_clock.limit_used_before else "finished"
        self.model.train()
        budget_used = self.run_clock.budget_used
        while self.epoch < config.epochs and reason == "finished" and not budget_used:
            state = self._carry if self.window > 0 else None
            for inputs, targets in windows(self.train_streams, seq_len, start=self.window):
                inputs, targets = inputs.to(self.device), targets.to(self.device)  # no copy when already there
                learning_rate = learning_rate_at(
                    config, self.step, self.steps_per_epoch, self.total_steps, self.run_clock.progress()
                )
                loss, norm, state = self._train_step(inputs, targets, state, learning_rate)
                self._pending.append(_PendingStep(self.step + 1, self.epoch, loss, norm, learning_rate))
                self.step += 1
                self.window += 1
                self._carry = state
                self.run_clock.session_tokens += targets.numel() * self.world.size  # the whole batch's words
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
                    budget_used = self.run_clock.budget_used
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
        self.elapsed_s = self.run_clock.total_s()  # before the last save: a resume's time cap counts all of it
        if self.out_dir is not None and self.step > 0:
            self._save_last()
        last = perplexity(self.last_val_loss) if self.last_val_loss is not None else None
        self.callback(EndEvent(self.step, reason, self.elapsed_s, self.last_val_loss, last))
        return TrainResult(
            reason, self.step, self.elapsed_s, self.last_val_loss, last, self.best_val_loss, self.checkpoint()
        )

    # ---- internals ----

    @property
    def _writes_files(self) -> bool:
        return self.out_dir is not None and self.world.is_main

    def _agree_to_end(self) -> tuple[StopReason | None, bool]:
        """Whether the run ends now: (the stop reason, or None; whether its time is up). With several
        ranks a collective, so that all leave the loop at the same step (:meth:`DistributedContext.agree_to_end`)."""
        clock = self.run_clock.total_s()
        out_of_time = self.world.is_main and self.run_clock.limit_reached(clock)
        asked = self._stop_reason if self._stop.is_set() else None
        stop, out_of_time, self.run_clock.seen_s = self.world.agree_to_end(asked, out_of_time, clock)
        if stop is not None and self.world.size > 1:
            self.request_stop(stop)  # a stop asked of another rank
        return stop, out_of_time

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
        clock = self.run_clock
        now = clock.session_s()
        self.elapsed_s = clock.before_s + now
        for item, loss in zip(pending, losses, strict=True):
            clock.session_steps += 1
            record = {"step": item.step, "epoch": item.epoch, "loss": loss, "lr": item.learning_rate}
            self.history["steps"].append({**record, "elapsed_s": self.elapsed_s})
            eta = clock.eta(self.total_steps - item.step, now, self.elapsed_s)
            self.callback(
                StepEvent(
                    epoch=item.epoch,
                    step=item.step,
                    total_steps=clock.expected_steps(self.total_steps, item.step, eta, now),
                    loss=loss,
                    learning_rate=item.learning_rate,
                    tokens_per_s=clock.tokens_per_s(now),
                    elapsed_s=self.elapsed_s,
                    eta_s=eta,
                )
            )

    def _diverged(self, what: str, step: int) -> None:
        saved = f" The last checkpoint in {self.out_dir} was left as it was." if self.out_dir is not None else ""
        raise TrainingDiverged(
            f"{what} at step {step}, so training stopped. Try a lower learning rate "
            f"(now {self.config.learning_rate:g}) or a smaller grad_clip.{saved}"
        )

    def _evaluate_and_sample(self) -> None:
        """Validate, keep ``best.pt`` and sample, all with the averaged weights once there are some."""
        averaged = self.average.applied(self._lock) if self.average is not None else contextlib.nullcontext()
        with averaged:
            self._evaluate_and_sample_now()

    def _evaluate_and_sample_now(self) -> None:
        val_loss = validation_loss(self.model, self.dataset.valid, self.config.training_seq_len, self.dtype, self.world)
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
        samples = prime_samples(self.model, self.dataset.vocab, self.config.prime_texts, self.config.sample_length)
        self.history["samples"].append({"step": self.step, "samples": samples})
        self.callback(SampleEvent(self.step, samples))

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

    def _restore(self, checkpoint: Checkpoint) -> None:
        restore_weights(checkpoint, self.model, self.average, self.optimizer)
        progress = checkpoint.progress
        self.step = int(progress.get("step", 0))
        self.epoch = int(progress.get("epoch", 0))
        self.window = int(progress.get("window", 0))
        self.elapsed_s = float(progress.get("elapsed_s", 0.0))
        self.best_val_loss = progress.get("best_val_loss")
        self.last_val_loss = progress.get("last_val_loss")
        self.history = {key: list(checkpoint.history.get(key, [])) for key in ("steps", "evals", "samples")}
        if self.window > 0:  # mid-epoch: the carry holds the whole batch, of which this rank takes its rows
            self._carry = restored_carry(checkpoint, self.world.training_rows(self.config.batch_size), self.device)
        restore_random_state(checkpoint, self.world, self.config.seed, self.step)
