"""One training process's part of a run: train the prepared run, report it, and end with an exit code.

:class:`TrainingRun` owns what surrounds the trainer in a process of its own: the run folder's
recorder (status and events, which the app reads), the progress printer, the memory watchdog,
the signal handlers (Ctrl-C and SIGTERM stop cleanly, saving first) and the turning of how the
run ended into an exit code. Under torchrun, rank 0 does all the reporting; the other ranks
print only their own errors, marked with their rank.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lstm_core.cli.flags import EXIT_FAILED, UsageError
from lstm_core.cli.progress import ProgressPrinter
from lstm_core.runs import folder as runs
from lstm_core.runs.recording import RunRecorder

if TYPE_CHECKING:
    from lstm_core.runs.setup import RunSetup
    from lstm_core.training.distributed import DistributedContext
    from lstm_core.training.trainer import Trainer, TrainResult


@dataclass(frozen=True)
class ProcessOptions:
    """How the process runs: output (``quiet``, ``json``) and its limits (``--max-minutes``,
    ``--stop-when-idle`` in minutes, ``--memory-limit-mb`` as bytes)."""

    quiet: bool = False
    json: bool = False
    max_minutes: float | None = None
    stop_when_idle: float | None = None
    memory_limit: int | None = None


class Silent:
    """Stands in for the run recorder and the progress printer on ranks other than 0: they do
    not report, and must not touch the run folder."""

    def __call__(self, event: Any) -> None:
        pass

    def begin(self, **fields: Any) -> None:
        pass

    def update(self, **fields: Any) -> None:
        pass

    def end(self, state: str, message: str = "") -> None:
        pass

    def close(self) -> None:
        pass


def first_line(error: BaseException) -> str:
    """An error's first line (its type's name when it has no message)."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` says an allocation failed (PyTorch's messages, CPU and CUDA)."""
    text = str(error).lower()
    return isinstance(error, MemoryError) or "can't allocate" in text or "out of memory" in text


class TrainingRun:
    """Trains ``setup`` in this process (one rank of ``world`` under torchrun) and reports it."""

    def __init__(self, setup: RunSetup, options: ProcessOptions, world: DistributedContext | None = None) -> None:
        self.setup = setup
        self.options = options
        self.world = world
        self.main_rank = world is None or world.is_main
        self.processes = world.size if world is not None else 1
        self.marker = "" if world is None or world.is_main else f"rank {world.rank}: "
        self.trainer: Trainer | None = None
        self.printer: Any = ProgressPrinter(quiet=options.quiet) if self.main_rank else Silent()
        self.recorder: Any = Silent()

    # ---- output ----

    def say(self, text: str) -> None:
        """A line on stderr from rank 0 only (what every rank would say alike)."""
        if self.main_rank:
            print(text, file=sys.stderr)

    def fail(self, text: str) -> None:
        """This process's own error on stderr, marked with its rank under torchrun."""
        print(f"{self.marker}error: {text}", file=sys.stderr)

    def report(self, event: Any) -> None:
        """The trainer's one callback: every event to the run folder and to the terminal."""
        self.recorder(event)
        self.printer(event)

    # ---- the steps of a run ----

    def run(self) -> int:
        """Train the run to its end; 0 when it ended as planned (or was stopped), else 1."""
        self.say(self.setup.dataset.summary())
        self.start_recording()
        self.guard_memory()
        trainer = self.build_trainer()
        self.describe(trainer)
        result = self.fit(trainer)
        if result is None:
            return EXIT_FAILED
        self.recorder.end(result.reason)
        if self.main_rank:
            self.print_summary(result)
        return 0

    def start_recording(self) -> None:
        """On rank 0: the run folder's recorder, which also stops the trainer when the folder asks
        (its stop file, or no page touching its heartbeat for ``stop_when_idle`` minutes)."""
        if not self.main_rank:
            return
        idle = self.options.stop_when_idle
        self.recorder = RunRecorder(self.setup.out, self._request_stop, idle_s=idle * 60 if idle else None)
        resume = self.setup.resume
        self.recorder.begin(step=resume.step if resume is not None else 0, processes=self.processes)
        self.recorder.keep_alive()

    def _request_stop(self, reason: str) -> None:
        if self.trainer is not None:
            self.trainer.request_stop(reason)  # type: ignore[arg-type]

    def guard_memory(self) -> None:
        """With a memory limit: a watchdog that ends the process over it (recording why) and
        returns freed memory to the system once it comes near, plus an address-space limit."""
        limit = self.options.memory_limit
        if limit is None:
            return
        from lstm_core.system.runtime import MemoryWatchdog

        def over_limit(resident: int) -> None:
            what = f"used {resident / 1e6:,.0f} MB, over its limit of {limit / 1e6:,.0f} MB"
            self.recorder.end("out_of_memory", f"the training process {what}")
            if not self.main_rank:
                self.fail(f"this process {what}")

        def near_limit(resident: int) -> None:
            what = (
                f"memory reached {resident / 1e6:,.0f} MB of its {limit / 1e6:,.0f} MB limit, so freed memory "
                "now goes back to the system at once (slower steps, less memory)"
            )
            self.recorder.update(message=what)
            print(f"{self.marker}note: {what}", file=sys.stderr)

        watchdog = MemoryWatchdog(limit, over_limit, exit_code=runs.EXIT_OUT_OF_MEMORY, on_pressure=near_limit)
        watchdog.limit_address_space()
        watchdog.start()

    def build_trainer(self) -> Trainer:
        """The trainer, its model built (or restored); a model that cannot be allocated is bad input."""
        from lstm_core.training.trainer import Trainer

        setup, minutes = self.setup, self.options.max_minutes
        try:
            self.trainer = Trainer(
                setup.config,
                setup.dataset,
                out_dir=setup.out,
                callback=self.report,
                time_limit_s=minutes * 60 if minutes else None,
                resume=setup.resume,
                distributed=self.world,
            )
        except (MemoryError, RuntimeError) as error:
            if not out_of_memory(error):
                raise
            self.recorder.end("out_of_memory", f"the model could not be allocated ({first_line(error)})")
            raise UsageError(f"the model could not be allocated: {first_line(error)}") from None
        trainer = self.trainer
        self.recorder.update(step=trainer.step, total_steps=trainer.total_steps, elapsed_s=trainer.elapsed_s)
        return trainer

    def describe(self, trainer: Trainer) -> None:
        """What will train, where and for how long, with a note where it differs from what was asked."""
        config, resume, processes = self.setup.config, self.setup.resume, self.processes
        precision = f" with {str(trainer.dtype).removeprefix('torch.')}" if trainer.dtype else ""
        if config.precision == "bf16" and trainer.dtype is None:
            self.say(f"note: bf16 is not supported on {trainer.device}; training in fp32")
        where = f"on {trainer.device}"
        if self.world is not None and processes > 1:
            share = config.batch_size // processes
            where = (
                f"on {processes} processes ({self.world.backend}; rank 0 on {trainer.device}), "
                f"{share} of the batch's rows each"
            )
        saved_by = len(resume.rank_rng_states or [None]) if resume is not None else processes
        if saved_by != processes and config.draws_masks:
            self.say(
                f"note: the run was saved by {saved_by} process(es) and goes on with {processes}: dropout draws "
                "other masks than the uninterrupted run would have"
            )
        minutes = trainer.config.train_minutes
        budget = f" or {minutes:g} minutes, whichever ends first" if minutes else ""
        self.say(
            f"model: {trainer.model.num_parameters():,} parameters {where}{precision}; "
            f"{trainer.total_steps:,} steps ({trainer.steps_per_epoch:,} per epoch){budget}; "
            f"run folder {self.setup.out}"
        )

    @contextlib.contextmanager
    def stopping_on_signals(self, trainer: Trainer) -> Iterator[None]:
        """Ctrl-C stops after the step and saves (a second one aborts); SIGTERM (a server
        stopping) does the same, recorded as interrupted. The previous handlers come back after."""

        def on_interrupt(signum: int, frame: types.FrameType | None) -> None:
            if self.processes > 1:
                self.say("\nstopping every process after this step and saving")
            else:
                self.say("\nstopping after this step and saving (press Ctrl-C again to abort)")
            trainer.request_stop()
            signal.signal(signal.SIGINT, signal.default_int_handler)

        def on_terminate(signum: int, frame: types.FrameType | None) -> None:
            trainer.request_stop("interrupted")
            signal.signal(signal.SIGTERM, signal.SIG_DFL)

        previous = signal.signal(signal.SIGINT, on_interrupt), signal.signal(signal.SIGTERM, on_terminate)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous[0])
            signal.signal(signal.SIGTERM, previous[1])

    def fit(self, trainer: Trainer) -> TrainResult | None:
        """Train; None when the run failed in a way already said and recorded (diverged, out of
        memory, a lost rank). Any other error is recorded and goes on up."""
        from lstm_core.training.distributed import is_lost_rank_error
        from lstm_core.training.trainer import TrainingDiverged

        with self.stopping_on_signals(trainer):
            try:
                return trainer.fit()
            except TrainingDiverged as error:
                self.recorder.end("diverged", str(error))
                self.say(f"error: {error}")  # every rank diverges at the same step: one says so
                return None
            except (MemoryError, RuntimeError) as error:
                if self.world is not None and self.processes > 1 and is_lost_rank_error(error):
                    message = self.world.lost_rank_message(error)
                    self.recorder.end("failed", message)
                    self.fail(message)
                    return None
                if not out_of_memory(error):
                    self.recorder.end("failed", f"{type(error).__name__}: {first_line(error)}")
                    raise
                self.recorder.end("out_of_memory", f"training ran out of memory ({first_line(error)})")
                self.fail(f"training ran out of memory: {first_line(error)}")
                return None
            except KeyboardInterrupt:
                self.recorder.end("interrupted", "aborted")
                raise
            except BaseException as error:
                self.recorder.end("failed", f"{type(error).__name__}: {first_line(error)}")
                raise
            finally:
                self.printer.close()

    def print_summary(self, result: TrainResult) -> None:
        """How the run ended and where its checkpoints are: one line, or JSON with ``--json``."""
        out = self.setup.out
        summary = {
            "reason": result.reason,
            "steps": result.steps,
            "elapsed_s": round(result.elapsed_s, 1),
            "val_loss": result.val_loss,
            "perplexity": result.perplexity,
            "best_val_loss": result.best_val_loss,
            "checkpoint": str(out / runs.LAST_CHECKPOINT),
            "best_checkpoint": str(out / runs.BEST_CHECKPOINT),
        }
        print(
            json.dumps(summary, indent=2) if self.options.json else f"saved {out / 'last.pt'} (best: {out / 'best.pt'})"
        )
