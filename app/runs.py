"""Training runs in background threads, so a page never waits for the trainer.

A :class:`TrainingRun` wraps the core :class:`~lstm_core.trainer.Trainer` in a daemon thread and
collects its events into plain lists the pages read (and chart) on each rerun. Nothing here
imports Streamlit: the pages own the UI, this module owns the threads.

Hosted-demo safety:

* :class:`RunLimits` caps how many runs train at once in the server process, how long one may
  run, and how big its model may be.
* A run stops itself when its page stops calling :meth:`TrainingRun.touch` for
  ``idle_minutes`` (the visitor closed the tab), so no thread outlives its session for long.
"""

from __future__ import annotations

import os
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from lstm_core.checkpoint import Checkpoint
from lstm_core.config import Config
from lstm_core.data import Dataset
from lstm_core.model import LSTMLanguageModel
from lstm_core.trainer import Event, Trainer

Status = Literal["running", "finished", "stopped", "time_limit", "abandoned", "failed"]


def _setting(name: str, default: float, secrets: Callable[[str], Any] | None = None) -> float:
    """A number from the environment (``LSTM_PLAYHOUSE_<NAME>``), else the secrets, else the default."""
    key = f"LSTM_PLAYHOUSE_{name.upper()}"
    raw: Any = os.environ.get(key)
    if raw is None and secrets is not None:
        raw = secrets(key)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise ValueError(f"{key} must be a number, got {raw!r}") from None
    if value <= 0:
        raise ValueError(f"{key} must be positive, got {raw!r}")
    return value


@dataclass(frozen=True)
class RunLimits:
    """Caps for a shared server. Each can be set by an environment variable (see the README)."""

    max_runs: int = 2
    max_minutes: float = 30.0
    max_parameters: int = 20_000_000
    idle_minutes: float = 5.0
    threads: int = 1

    @classmethod
    def from_environment(cls, secrets: Callable[[str], Any] | None = None) -> RunLimits:
        """The caps from the environment or secrets; threads default to the cores shared by the runs.

        With ``max_runs`` runs at once, each gets ``cores // max_runs`` threads (at least one), so
        that the runs never ask for more threads than there are cores (threads fighting over cores
        make small steps many times slower).
        """
        defaults = cls()
        max_runs = int(_setting("max_runs", defaults.max_runs, secrets))
        fair_share = max(1, (os.cpu_count() or 1) // max_runs)
        return cls(
            max_runs=max_runs,
            max_minutes=_setting("max_minutes", defaults.max_minutes, secrets),
            max_parameters=int(_setting("max_parameters", defaults.max_parameters, secrets)),
            idle_minutes=_setting("idle_minutes", defaults.idle_minutes, secrets),
            threads=int(_setting("threads", fair_share, secrets)),
        )


class CapacityError(RuntimeError):
    """The server is already training as many models as it allows."""


class _Registry:
    """The runs training right now in this server process (all visitors together)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active: set[int] = set()

    def acquire(self, run_id: int, limit: int) -> None:
        with self._lock:
            if len(self._active) >= limit:
                raise CapacityError(
                    f"this server already trains {len(self._active)} model(s) at once, its limit; "
                    "please try again in a few minutes (or run the app on your own machine: see the README)"
                )
            self._active.add(run_id)

    def release(self, run_id: int) -> None:
        with self._lock:
            self._active.discard(run_id)

    @property
    def active(self) -> int:
        with self._lock:
            return len(self._active)


REGISTRY = _Registry()


class TrainingRun:
    """One visitor's training run, in a background thread.

    The event lists only grow, and are read by the page thread while the worker appends to them;
    :meth:`events` copies under the lock.
    """

    _next_id = 0
    _id_lock = threading.Lock()

    def __init__(
        self,
        config: Config,
        dataset: Dataset,
        limits: RunLimits,
        resume: Checkpoint | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        with TrainingRun._id_lock:
            TrainingRun._next_id += 1
            self.id = TrainingRun._next_id
        self.limits = limits
        self.clock = clock
        self._lock = threading.Lock()
        self._events: list[Event] = []
        self.status: Status = "running"
        self.error: str | None = None
        self.result_checkpoint: Checkpoint | None = None
        self._last_seen = clock()
        self.trainer = Trainer(
            config, dataset, callback=self._on_event, time_limit_s=limits.max_minutes * 60, resume=resume
        )
        parameters = self.trainer.model.num_parameters()
        if parameters > limits.max_parameters:
            raise ValueError(
                f"this model has {parameters:,} parameters; this server allows at most {limits.max_parameters:,}. "
                "Choose a smaller rnn_size, embedding_size or fewer layers (or a larger min_word_freq)."
            )
        self._thread = threading.Thread(target=self._work, name=f"training-run-{self.id}", daemon=True)

    # ---- control (page thread) ----

    def start(self) -> None:
        REGISTRY.acquire(self.id, self.limits.max_runs)
        self._thread.start()

    def stop(self) -> None:
        self.trainer.request_stop()

    def touch(self) -> None:
        """The visitor's page is still open: keep training."""
        self._last_seen = self.clock()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self.status == "running"

    def events(self) -> list[Event]:
        with self._lock:
            return list(self._events)

    def snapshot(self) -> LSTMLanguageModel:
        return self.trainer.snapshot()

    @property
    def config(self) -> Config:
        return self.trainer.config

    # ---- worker thread ----

    def _on_event(self, event: Event) -> None:
        with self._lock:
            self._events.append(event)
        if self.clock() - self._last_seen > self.limits.idle_minutes * 60:
            self.status = "abandoned"  # set before the stop, so the end event doesn't overwrite it
            self.trainer.request_stop()

    def _work(self) -> None:
        import torch

        torch.set_num_threads(self.limits.threads)
        try:
            result = self.trainer.fit()
            self.result_checkpoint = result.checkpoint
            if self.status != "abandoned":
                self.status = result.reason
        except Exception as error:  # shown to the visitor; the thread must not die silently
            self.error = str(error) or type(error).__name__
            self.details = traceback.format_exc()
            self.status = "failed"
        finally:
            REGISTRY.release(self.id)
