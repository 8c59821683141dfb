"""Command line: ``python -m lstm_core train | evaluate | generate | export | plays``.

Every :class:`~lstm_core.config.Config` field is a ``train`` flag (``--rnn-size 256``) and every
:class:`~lstm_core.sampling.options.SamplingOptions` field a ``generate`` flag (``--top-p 0.9``), built
from the dataclasses (:func:`add_dataclass_flags`) so the CLI can never drift from them. Bad input ends with one line on
stderr and exit code 2; a run that fails (e.g. a diverging loss) exits with 1.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import shutil
import signal
import sys
import time
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from lstm_core.config import PRESET_HELP, PRESETS, Config
from lstm_core.errors import InputError
from lstm_core.fields import describe_field, describe_fields
from lstm_core.model.checkpoint import load_checkpoint, save_checkpoint
from lstm_core.sampling.decoding import MAX_LENGTH
from lstm_core.sampling.options import SamplingOptions
from lstm_core.text.corpus import DEFAULT_GUTENBERG_URL, bundled_plays, list_plays, load_corpus, text_from_file
from lstm_core.training.distributed import DEFAULT_TIMEOUT_MINUTES

EXIT_USAGE = 2
EXIT_FAILED = 1


class UsageError(Exception):
    """Bad flags or input: reported in one line, exit code 2."""


# ---- flags generated from the settings dataclasses -------------------------------------------


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_dataclass_flags(group: argparse._ActionsContainer, cls: type, show_defaults: bool = False) -> None:
    """One flag per field of the settings dataclass ``cls`` (``rnn_size`` -> ``--rnn-size``).

    Types and help come from the field (:func:`~lstm_core.fields.describe_fields`): ``bool`` is
    ``--x / --no-x``, a ``Literal`` gives the choices, a tuple takes one or more values. Every
    flag defaults to None, so :func:`given_flags` can tell what the user set from what they left;
    ``show_defaults`` adds the dataclass's default to the help (not for ``Config``, whose
    defaults come from the chosen preset).
    """
    for info in describe_fields(cls):
        shown = show_defaults and info.default is not None
        help_text = f"{info.help} (default: {info.default})" if shown else info.help
        kwargs: dict[str, Any] = {"dest": info.name, "default": None, "help": help_text}
        if info.type is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif info.choices:
            kwargs["choices"] = info.choices
        elif info.type is tuple:
            kwargs["nargs"] = "+"
            kwargs["metavar"] = "TEXT"
        else:
            kwargs["type"] = info.type
            kwargs["metavar"] = info.type.__name__.upper()
        group.add_argument(_flag(info.name), **kwargs)


def given_flags(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The fields of ``cls`` whose flags the user gave, with their values."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if getattr(args, f.name) is not None}


def config_from_args(args: argparse.Namespace, base: Config | None = None) -> Config:
    """The preset (or ``base``) with every config flag the user gave applied on top."""
    config = base if base is not None else PRESETS[args.preset]
    changes = given_flags(args, Config)
    return config.replace(**changes) if changes else config


def sampling_options_from_args(args: argparse.Namespace, warn: TextIO | None = None) -> SamplingOptions:
    """The :class:`SamplingOptions` the ``generate`` flags ask for.

    Without ``--method``, a sampling flag (``--temperature``, ``--top-k``, ``--top-p``,
    ``--min-p``: the fields that apply to ``sample`` only) means sampling, and ``--temperature 0``
    means greedy, as in most tools. A flag that does not apply to the method given (sampling
    flags with ``--method greedy``, beam flags without ``--method beam``) is left out, with a
    one-line warning on ``warn`` (stderr), rather than silently doing nothing.
    """
    given = given_flags(args, SamplingOptions)
    applies_to: dict[str, tuple[str, ...]] = {
        info.name: info.extra.get("applies_to") or () for info in describe_fields(SamplingOptions)
    }
    if "method" not in given:
        sampling = [name for name in given if applies_to[name] == ("sample",)]
        if given.get("temperature") == 0:
            given["method"] = "greedy"
            del given["temperature"]
        elif sampling:
            given["method"] = "sample"
    method = given.get("method", describe_field(SamplingOptions, "method").default)
    ignored = [name for name in given if applies_to[name] and method not in applies_to[name]]
    if ignored:
        flags = ", ".join(_flag(name) for name in ignored)
        wanted = " or ".join(sorted({m for name in ignored for m in applies_to[name]}))
        print(
            f"warning: {flags} ignored with --method {method} (only --method {wanted} uses them)",
            file=warn if warn is not None else sys.stderr,
        )
        given = {name: value for name, value in given.items() if name not in ignored}
    try:
        return SamplingOptions(**given)
    except InputError as error:
        raise UsageError(str(error)) from None


def _names(value: str | None) -> list[str] | None:
    return [name.strip() for name in value.split(",") if name.strip()] if value else None


# ---- output ------------------------------------------------------------------------------


class ProgressPrinter:
    """Turns trainer events into a tqdm progress bar, plus a line for each evaluation and sample.

    The bar shows only on a terminal; evaluations and samples are printed either way (to a log
    file too), and ``quiet`` keeps only the evaluations.
    """

    def __init__(self, stream: TextIO | None = None, quiet: bool = False) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.quiet = quiet
        self._bar: Any = None

    def _line(self, text: str) -> None:
        from tqdm import tqdm

        tqdm.write(text, file=self.stream)

    def __call__(self, event: Any) -> None:
        if event.kind == "step" and not self.quiet:
            if self._bar is None:
                from tqdm import tqdm

                self._bar = tqdm(
                    total=event.total_steps,
                    initial=event.step - 1,
                    unit="step",
                    file=self.stream,
                    disable=None,  # no bar where the output is not a terminal
                    dynamic_ncols=True,
                )
            self._bar.update(event.step - self._bar.n)
            self._bar.set_postfix_str(
                f"epoch {event.epoch + 1} loss {event.loss:.3f} {event.tokens_per_s / 1000:.1f}k words/s", refresh=False
            )
        elif event.kind == "eval":
            mark = " (best)" if event.best else ""
            self._line(
                f"step {event.step}: validation loss {event.val_loss:.4f}, perplexity {event.perplexity:.1f}{mark}"
            )
        elif event.kind == "sample" and not self.quiet:
            for text in event.samples.values():
                self._line(f"    {text}")
        elif event.kind == "end":
            self.close()
            from tqdm import tqdm

            elapsed = tqdm.format_interval(event.elapsed_s)
            self._line(f"{event.reason.replace('_', ' ')} after {event.step} steps in {elapsed}")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


# ---- training --------------------------------------------------------------------------------

_SOURCE_FLAGS = ("corpus", "plays", "holdout_plays", "text_file", "train_file", "valid_file", "dataset")


def _source_given(args: argparse.Namespace) -> bool:
    return any(getattr(args, name) is not None for name in _SOURCE_FLAGS)


def _dataset_for_training(args: argparse.Namespace, config: Config) -> Any:
    from lstm_core.data.dataset import Dataset, prepare, prepare_holdout, prepare_pair

    if args.dataset:
        if any(getattr(args, name) is not None for name in _SOURCE_FLAGS if name != "dataset"):
            raise UsageError("--dataset is a prepared text: it does not go with the other text flags")
        return Dataset.load(args.dataset)
    min_freq = config.min_word_freq
    corpus_source = args.corpus or "plays"
    if args.train_file or args.valid_file:
        if not (args.train_file and args.valid_file):
            raise UsageError("--train-file and --valid-file go together")
        train, valid = text_from_file(args.train_file), text_from_file(args.valid_file)
        return prepare_pair(train.text, valid.text, min_freq, name=f"{train.name} (valid: {valid.name})")
    if args.holdout_plays:
        if corpus_source != "plays":
            raise UsageError("--holdout-plays works with --corpus plays")
        held_out = _names(args.holdout_plays) or []
        chosen = _names(args.plays) or list(list_plays())
        training = [name for name in chosen if name not in held_out]
        if not training:
            raise UsageError("every chosen play is held out: nothing is left to train on")
        train, test = bundled_plays(training), bundled_plays(held_out)
        name = f"{train.name}, held out: {', '.join(held_out)}"
        return prepare_holdout(train.text, test.text, min_freq, config.valid_fraction, name=name)
    corpus = load_corpus(
        corpus_source,
        plays=_names(args.plays),
        path=args.text_file,
        url=args.gutenberg_url,
        cache_dir=args.cache_dir,
        progress=_download_progress,
    )
    return prepare(corpus.text, min_freq, config.split_fractions, name=corpus.name)


def _download_progress(done: int, total: int | None) -> None:
    if total:
        sys.stderr.write(f"\rdownloading: {done / 1e6:.1f} of {total / 1e6:.1f} MB")
        if done >= total:
            sys.stderr.write("\n")
    else:
        sys.stderr.write(f"\rdownloading: {done / 1e6:.1f} MB")
    sys.stderr.flush()


def _set_threads(threads: int | None) -> None:
    if threads is not None:
        if threads < 1:
            raise UsageError(f"--threads must be 1 or more, got {threads}")
        import torch

        torch.set_num_threads(threads)


def _positive(value: float | None, flag: str) -> None:
    if value is not None and not (math.isfinite(value) and value > 0):
        raise UsageError(f"{flag} must be a positive number, got {value:g}")


def _default_run_folder() -> Path:
    """``runs/run-<date>-<time>-<random>``: unique even for runs started in the same second."""
    import secrets

    return Path("runs") / f"run-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"


def _check_new_run_folder(out: Path, overwrite: bool) -> None:
    """Refuse, before any work, an --out that cannot hold a new run."""
    from lstm_core.runs import folder as runs

    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; give a folder for the run's checkpoints")
    if out.is_dir() and runs.is_run(out):
        if not overwrite:
            raise UsageError(
                f"{out} already holds a run; continue it with --resume {out}, or replace it with --overwrite"
            )
        for name in runs.RUN_FILES:
            (out / name).unlink(missing_ok=True)
        shutil.rmtree(out / runs.SNAPSHOTS_DIR, ignore_errors=True)  # the old run's models at its evaluations
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise UsageError(f"cannot write the run's files to {out}: {error.strerror or error}") from None


def _resume_source(resume: str) -> tuple[Path, Path | None]:
    """``--resume`` names a run folder or a checkpoint: (its run folder, the checkpoint or None)."""
    from lstm_core.runs import folder as runs

    path = Path(resume)
    if path.is_dir():
        last = path / runs.LAST_CHECKPOINT
        if last.is_file():
            return path, last
        if (path / runs.RUN_FILE).is_file():
            return path, None  # created but never trained: it starts from step 0
        raise UsageError(f"{path} holds no run to resume (no {runs.LAST_CHECKPOINT} or {runs.RUN_FILE})")
    if path.is_file():
        return path.parent, path
    raise UsageError(f"--resume {resume}: no such run folder or checkpoint")


def _admit(config: Config, dataset: Any, memory_limit: int | None, world: Any = None) -> None:
    """Refuse a run whose memory estimate passes the limit (or this machine), before anything is built.

    With several processes (``world``), the batch must divide among them and each rank's device
    must make sense; the estimate is then for one process with its share of the batch, and
    against this machine's memory it counts every process torchrun starts here.
    """
    from lstm_core.data.batching import batchify
    from lstm_core.model.memory import check_memory, estimate_memory, memory_advice
    from lstm_core.system.resources import available_resources
    from lstm_core.training.distributed import check_batch_split, rank_device

    batchify(dataset.train, config.batch_size, config.training_seq_len, "the training text")  # enough words?
    processes, here = 1, 1
    if world is not None and world.size > 1:
        check_batch_split(config.batch_size, world.size)
        rank_device(config.device, world.local_rank)
        processes, here = world.size, _local_processes(world.size)
    tokens = dataset.train.numel() + dataset.valid.numel() + dataset.test.numel()
    share = config.replace(batch_size=config.batch_size // processes) if processes > 1 else config
    estimate = estimate_memory(share, dataset.vocab.counts, tokens)
    if memory_limit is not None:
        problem = check_memory(estimate, memory_limit, "the limit given by --memory-limit-mb")
    else:
        machine = available_resources().memory_bytes  # the container's limit where it has one
        problem = check_memory(estimate, machine // here if machine and here > 1 else machine, _machine_share(here))
    if problem:
        raise UsageError(f"{problem} {memory_advice(config)}.")


def _local_processes(size: int) -> int:
    """How many processes torchrun starts on this machine (LOCAL_WORLD_SIZE), at most ``size``."""
    import os

    try:
        return max(1, min(size, int(os.environ.get("LOCAL_WORLD_SIZE", size))))
    except ValueError:
        return size


def _machine_share(processes: int) -> str:
    return "this machine's memory" if processes == 1 else f"this machine's memory shared by {processes} processes"


@dataclasses.dataclass(frozen=True)
class _Setup:
    """What a training process needs from the command line: the run's settings, data and folder."""

    config: Config
    dataset: Any
    out: Path
    resume: Any  # Checkpoint | None


def _prepare_training(args: argparse.Namespace, memory_limit: int | None, world: Any = None) -> _Setup:
    """Read the flags, the text or the resumed run, and create or check the run folder."""
    from lstm_core.data.dataset import Dataset
    from lstm_core.runs import folder as runs

    resume = None
    if args.resume:
        if args.overwrite:
            raise UsageError("--resume continues a run; --overwrite starts one afresh: choose one")
        run_dir, checkpoint_path = _resume_source(args.resume)
        resume = load_checkpoint(checkpoint_path) if checkpoint_path is not None else None
        record = runs.read_json(run_dir / runs.RUN_FILE)
        if resume is not None:
            base = resume.config
        elif record is not None:
            base = Config.from_dict(record.get("config", {}))
        else:
            raise UsageError(f"{run_dir} has no {runs.RUN_FILE} to start the run from")
        config = config_from_args(args, base)
        saved_data = run_dir / runs.DATASET_DIR
        if _source_given(args) or not (saved_data / "meta.json").is_file():
            dataset = _dataset_for_training(args, config)  # a checkpoint from before runs kept their data
        else:
            dataset = Dataset.load(saved_data)
        out = Path(args.out) if args.out else run_dir
        if out != run_dir:
            _check_new_run_folder(out, overwrite=False)
        _admit(config, dataset, memory_limit, world)
        if not (out / runs.RUN_FILE).is_file():
            runs.create_run(out, config, dataset)
    else:
        base = Config.from_dict(_read_config_file(args.config)) if args.config else PRESETS[args.preset]
        config = config_from_args(args, base)
        out = Path(args.out) if args.out else _default_run_folder()
        _check_new_run_folder(out, args.overwrite)
        dataset = _dataset_for_training(args, config)
        _admit(config, dataset, memory_limit, world)
        runs.create_run(out, config, dataset)
    if resume is None and not (out / runs.BASELINES_FILE).is_file():
        _write_baselines(out, dataset)  # once, when the run starts from step 0 (not on resume)
    return _Setup(config, dataset, out, resume)


def _write_baselines(out: Path, dataset: Any) -> None:
    """The baselines' validation perplexities on the run's own data, for the Train page's chart and
    its sentence on where the run stands. On all the plays it takes 0.5 to 1 s and about 140 MB
    for a moment (the 5-gram's counts), so it is done once, before the model is built; a
    validation text too short to score gets none (the trainer then says why it cannot train)."""
    from lstm_core.evaluation.baselines import baseline_perplexities
    from lstm_core.runs import folder as runs

    try:
        baselines = baseline_perplexities(dataset)
    except InputError:
        return
    runs.write_baselines(out, baselines)


def cmd_train(args: argparse.Namespace) -> int:
    from lstm_core.training.distributed import torchrun_ranks

    _set_threads(args.threads)
    if args.nice is not None:
        if not 0 <= args.nice <= 19:
            raise UsageError(f"--nice must be between 0 and 19, got {args.nice}")
        os.nice(args.nice)
    for value, flag in ((args.max_minutes, "--max-minutes"), (args.memory_limit_mb, "--memory-limit-mb")):
        _positive(value, flag)
    _positive(args.stop_when_idle, "--stop-when-idle")
    _positive(args.dist_timeout_minutes, "--dist-timeout-minutes")
    memory_limit = int(args.memory_limit_mb * 1_000_000) if args.memory_limit_mb else None
    if torchrun_ranks() is not None:
        return _train_distributed(args, memory_limit)
    return _train(args, _prepare_training(args, memory_limit), memory_limit)


# ---- several processes (torchrun) ---------------------------------------------------------------

_SETUP_FORMAT = "lstm-playhouse-distributed-setup"


def _train_distributed(args: argparse.Namespace, memory_limit: int | None) -> int:
    """One rank of a run that torchrun started on several processes.

    Rank 0 alone reads the flags' text or the resumed run and owns the run folder, exactly as a
    single process does; it then sends the others the config, the prepared data and the
    checkpoint to resume (plain data and tensors, read back with ``weights_only``), so they open
    no file and need no copy of the text, on this machine or another. If rank 0 cannot prepare
    the run, it says why in one line and the others end quietly (exit code 2).
    """
    from lstm_core.training import distributed as distributed

    world = distributed.start(args.dist_timeout_minutes * 60)
    code = EXIT_FAILED
    try:
        if world.is_main:
            try:
                setup = _prepare_training(args, memory_limit, world)
            except BaseException:
                with contextlib.suppress(Exception):  # the reason rank 0 stopped matters more
                    world.broadcast_bytes(_setup_bytes(None))
                raise
            world.broadcast_bytes(_setup_bytes(setup))
        else:
            received = _setup_from_bytes(world.broadcast_bytes(None))
            if received is None:
                return EXIT_USAGE  # rank 0 has said why
            setup = received
        try:
            world = world.on_device(setup.config.device)
            code = _train(args, setup, memory_limit, world)
        except (UsageError, InputError) as error:
            if world.is_main:
                raise
            raise UsageError(f"rank {world.rank}: {error}") from None
    finally:
        if code == 0:
            world.close()  # after a failure the group may be broken, and leaving it could wait on a lost rank
    return code


def _setup_bytes(setup: _Setup | None) -> bytes:
    """``setup`` as the bytes of a ``torch.save`` of plain data and tensors (None: rank 0 failed)."""
    import io

    import torch

    plain: dict[str, Any] = {"format": _SETUP_FORMAT, "failed": setup is None}
    if setup is not None:
        dataset = setup.dataset
        plain.update(
            config=setup.config.to_dict(),
            out=str(setup.out),
            dataset={
                "name": dataset.name,
                "vocab": dataset.vocab.to_dict(),
                "train": dataset.train,
                "valid": dataset.valid,
                "test": dataset.test,
            },
            resume=None
            if setup.resume is None
            else torch.frombuffer(bytearray(setup.resume.to_bytes()), dtype=torch.uint8),
        )
    buffer = io.BytesIO()
    torch.save(plain, buffer)
    return buffer.getvalue()


def _setup_from_bytes(data: bytes) -> _Setup | None:
    """:func:`_setup_bytes` undone; None when rank 0 could not prepare the run."""
    import io

    import torch

    from lstm_core.data.dataset import Dataset
    from lstm_core.text.vocab import Vocab

    plain = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    if not isinstance(plain, dict) or plain.get("format") != _SETUP_FORMAT:
        raise RuntimeError("rank 0 sent something other than the run's setup")
    if plain["failed"]:
        return None
    data_plain = plain["dataset"]
    dataset = Dataset(
        Vocab.from_dict(data_plain["vocab"]),
        data_plain["train"],
        data_plain["valid"],
        data_plain["test"],
        data_plain["name"],
    )
    resume = plain["resume"]
    checkpoint = None if resume is None else load_checkpoint(resume.numpy().tobytes(), name="rank 0's checkpoint")
    return _Setup(Config.from_dict(plain["config"]), dataset, Path(plain["out"]), checkpoint)


class _Silent:
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


# ---- the training process ---------------------------------------------------------------------


def _train(args: argparse.Namespace, setup: _Setup, memory_limit: int | None, world: Any = None) -> int:
    """Train the prepared run, report it, and turn how it ended into an exit code.

    With several processes (``world``), rank 0 does all the reporting: the run folder's status
    and events, the progress and the summary. The other ranks print only their own errors,
    marked with their rank.
    """
    from lstm_core.runs import folder as runs
    from lstm_core.runs.recording import RunRecorder
    from lstm_core.system.runtime import MemoryWatchdog
    from lstm_core.training.distributed import is_lost_rank_error
    from lstm_core.training.trainer import Trainer, TrainingDiverged

    config, dataset, out, resume = setup.config, setup.dataset, setup.out, setup.resume
    main_rank = world is None or world.is_main
    processes = world.size if world is not None else 1
    marker = "" if main_rank else f"rank {world.rank}: "

    def say(text: str) -> None:
        if main_rank:
            print(text, file=sys.stderr)

    def fail(text: str) -> None:
        print(f"{marker}error: {text}", file=sys.stderr)

    trainer: Trainer | None = None
    printer: Any = ProgressPrinter(quiet=args.quiet) if main_rank else _Silent()
    say(dataset.summary())
    recorder: Any = _Silent()
    if main_rank:
        recorder = RunRecorder(
            out,
            lambda reason: trainer.request_stop(reason),  # type: ignore[union-attr, arg-type]
            idle_s=args.stop_when_idle * 60 if args.stop_when_idle else None,
        )
        recorder.begin(step=resume.step if resume is not None else 0, processes=processes)
    if memory_limit is not None:

        def over_limit(resident: int) -> None:
            what = f"used {resident / 1e6:,.0f} MB, over its limit of {memory_limit / 1e6:,.0f} MB"
            recorder.end("out_of_memory", f"the training process {what}")
            if not main_rank:
                fail(f"this process {what}")

        def near_limit(resident: int) -> None:
            what = (
                f"memory reached {resident / 1e6:,.0f} MB of its {memory_limit / 1e6:,.0f} MB limit, so freed memory "
                "now goes back to the system at once (slower steps, less memory)"
            )
            recorder.update(message=what)
            print(f"{marker}note: {what}", file=sys.stderr)

        watchdog = MemoryWatchdog(memory_limit, over_limit, exit_code=runs.EXIT_OUT_OF_MEMORY, on_pressure=near_limit)
        watchdog.limit_address_space()
        watchdog.start()

    def report(event: Any) -> None:
        recorder(event)
        printer(event)

    try:
        trainer = Trainer(
            config,
            dataset,
            out_dir=out,
            callback=report,
            time_limit_s=args.max_minutes * 60 if args.max_minutes else None,
            resume=resume,
            distributed=world,
        )
    except (MemoryError, RuntimeError) as error:
        if not _out_of_memory(error):
            raise
        recorder.end("out_of_memory", f"the model could not be allocated ({_first_line(error)})")
        raise UsageError(f"the model could not be allocated: {_first_line(error)}") from None
    recorder.update(step=trainer.step, total_steps=trainer.total_steps, elapsed_s=trainer.elapsed_s)
    precision = f" with {str(trainer.dtype).removeprefix('torch.')}" if trainer.dtype else ""
    if config.precision == "bf16" and trainer.dtype is None:
        say(f"note: bf16 is not supported on {trainer.device}; training in fp32")
    where = f"on {trainer.device}"
    if processes > 1:
        share = config.batch_size // processes
        where = (
            f"on {processes} processes ({world.backend}; rank 0 on {trainer.device}), {share} of the batch's rows each"
        )
    saved_by = len(resume.rank_rng_states or [None]) if resume is not None else processes
    if saved_by != processes and config.draws_masks:
        say(
            f"note: the run was saved by {saved_by} process(es) and goes on with {processes}: dropout draws other "
            "masks than the uninterrupted run would have"
        )
    minutes = trainer.config.train_minutes
    budget = f" or {minutes:g} minutes, whichever ends first" if minutes else ""
    say(
        f"model: {trainer.model.num_parameters():,} parameters {where}{precision}; "
        f"{trainer.total_steps:,} steps ({trainer.steps_per_epoch:,} per epoch){budget}; run folder {out}"
    )

    def on_interrupt(signum: int, frame: types.FrameType | None) -> None:
        if processes > 1:
            say("\nstopping every process after this step and saving")
        else:
            say("\nstopping after this step and saving (press Ctrl-C again to abort)")
        trainer.request_stop()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def on_terminate(signum: int, frame: types.FrameType | None) -> None:
        trainer.request_stop("interrupted")
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

    previous = signal.signal(signal.SIGINT, on_interrupt), signal.signal(signal.SIGTERM, on_terminate)
    try:
        result = trainer.fit()
    except TrainingDiverged as error:
        recorder.end("diverged", str(error))
        say(f"error: {error}")  # every rank diverges at the same step: one says so
        return EXIT_FAILED
    except (MemoryError, RuntimeError) as error:
        if world is not None and processes > 1 and is_lost_rank_error(error):
            message = world.lost_rank_message(error)
            recorder.end("failed", message)
            fail(message)
            return EXIT_FAILED
        if not _out_of_memory(error):
            recorder.end("failed", f"{type(error).__name__}: {_first_line(error)}")
            raise
        recorder.end("out_of_memory", f"training ran out of memory ({_first_line(error)})")
        fail(f"training ran out of memory: {_first_line(error)}")
        return EXIT_FAILED
    except KeyboardInterrupt:
        recorder.end("interrupted", "aborted")
        raise
    except BaseException as error:
        recorder.end("failed", f"{type(error).__name__}: {_first_line(error)}")
        raise
    finally:
        printer.close()
        signal.signal(signal.SIGINT, previous[0])
        signal.signal(signal.SIGTERM, previous[1])
    recorder.end(result.reason)
    if not main_rank:
        return 0
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
    print(json.dumps(summary, indent=2) if args.json else f"saved {out / 'last.pt'} (best: {out / 'best.pt'})")
    return 0


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def _out_of_memory(error: BaseException) -> bool:
    text = str(error).lower()
    return isinstance(error, MemoryError) or "can't allocate" in text or "out of memory" in text


def _read_config_file(path: str) -> dict[str, Any]:
    """A config saved as JSON: ``Config.to_dict()``'s fields, or a run's ``run.json`` (its ``config``)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"--config {path}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UsageError(f"--config {path} is not readable JSON: {error}") from None
    if isinstance(data, dict) and isinstance(data.get("config"), dict):
        data = data["config"]
    if not isinstance(data, dict):
        raise UsageError(f"--config {path} must hold a JSON object of settings")
    return data


def cmd_evaluate(args: argparse.Namespace) -> int:
    import torch

    from lstm_core.evaluation.scoring import evaluate, perplexity
    from lstm_core.text.cleaning import tokenize

    _set_threads(args.threads)
    checkpoint = load_checkpoint(args.checkpoint)
    if bool(args.text_file) == bool(args.plays):
        raise UsageError("give exactly one of --text-file or --plays")
    corpus = text_from_file(args.text_file) if args.text_file else bundled_plays(_names(args.plays))
    tokens = tokenize(corpus.text)
    vocab = checkpoint.vocab
    ids = torch.tensor(vocab.encode(tokens), dtype=torch.long)
    if ids.numel() < 2:
        raise UsageError(f"{corpus.name} has fewer than 2 words after cleaning; nothing to evaluate")
    model = checkpoint.build_model()
    loss, count = evaluate(model, ids, checkpoint.config.training_seq_len)
    coverage = vocab.coverage(tokens)
    result = {
        "checkpoint": str(args.checkpoint),
        "text": corpus.name,
        "words": coverage.tokens,
        "scored": count,
        "unknown_share": round(coverage.unknown_share, 4),
        "loss": loss,
        "perplexity": perplexity(loss),
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"{corpus.name}: {coverage.tokens:,} words ({coverage.unknown_share:.1%} unknown to the model), "
            f"loss {loss:.4f}, perplexity {perplexity(loss):.2f}"
        )
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from lstm_core.sampling.decoding import generate

    _set_threads(args.threads)
    options = sampling_options_from_args(args)
    checkpoint = load_checkpoint(args.checkpoint)
    model = checkpoint.build_model()
    primes = args.prime or list(checkpoint.config.prime_texts)
    results = []
    for prime in primes:
        generation = generate(model, checkpoint.vocab, prime, args.length, options)
        results.append(generation)
        if not args.json:
            unknown = (
                f"   [not in the vocabulary: {', '.join(generation.unknown_words)}]" if generation.unknown_words else ""
            )
            print(generation.text + unknown)
    if args.json:
        payload = [
            {"prime": p, "text": g.text, "continuation": g.words, "unknown_words": g.unknown_words}
            for p, g in zip(primes, results, strict=True)
        ]
        print(json.dumps(payload, indent=2))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    checkpoint = load_checkpoint(args.checkpoint)
    out = Path(args.out)
    if out.is_dir():
        raise UsageError(f"--out {out} is a folder; give the file name to write, e.g. {out / 'model.pt'}")
    if out.resolve() == Path(args.checkpoint).resolve():
        raise UsageError("--out must differ from --checkpoint (the export never overwrites its source)")
    try:
        save_checkpoint(checkpoint.without_training_state(half=args.half), out)
    except OSError as error:
        raise UsageError(f"cannot write {out}: {error.strerror or error}") from None
    print(f"wrote {out}: {out.stat().st_size / 1e6:.1f} MB, model only{' (float16 weights)' if args.half else ''}")
    return 0


def cmd_plays(args: argparse.Namespace) -> int:
    for name in list_plays():
        print(name)
    return 0


# ---- parser --------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lstm_core",
        description="Train a word-level LSTM language model on Shakespeare, evaluate it, and make it write.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser("train", help="train a model (or resume one)", description="Train a model.")
    source = train.add_argument_group("text to train on")
    source.add_argument(
        "--corpus", choices=("plays", "gutenberg", "file"), help="where the text comes from (default: plays)"
    )
    source.add_argument("--plays", metavar="NAMES", help="comma-separated bundled plays (default: all; see 'plays')")
    source.add_argument(
        "--holdout-plays",
        metavar="NAMES",
        help="never train on these plays (test them later with 'evaluate --plays'); validation then comes "
        "from the end of the other plays",
    )
    source.add_argument("--text-file", metavar="PATH", help="the text file for --corpus file")
    source.add_argument("--train-file", metavar="PATH", help="raw training text (with --valid-file)")
    source.add_argument("--valid-file", metavar="PATH", help="raw validation text (with --train-file)")
    source.add_argument("--gutenberg-url", default=DEFAULT_GUTENBERG_URL, help="where to download the Complete Works")
    source.add_argument("--cache-dir", metavar="DIR", help="download cache (default: ~/.cache/lstm-playhouse)")
    source.add_argument(
        "--dataset",
        metavar="DIR",
        help="a prepared text: a run's dataset folder (how the app hands a run its data)",
    )
    run = train.add_argument_group("the run")
    presets = ", ".join(f"{name} ({text})" for name, text in PRESET_HELP.items())
    run.add_argument("--preset", choices=tuple(PRESETS), default="default", help=presets)
    run.add_argument("--config", metavar="FILE", help="settings from a JSON file (a config, or a run's run.json)")
    run.add_argument(
        "--out", metavar="DIR", help="the run folder (default: runs/run-<date>-<time>-<random>, or the resumed run's)"
    )
    run.add_argument("--overwrite", action="store_true", help="replace the run already in --out")
    run.add_argument(
        "--resume",
        metavar="RUN",
        help="continue a run: its folder (or a checkpoint); it trains on its own saved data and settings",
    )
    run.add_argument(
        "--max-minutes",
        type=float,
        metavar="M",
        help="stop cleanly (and save) once the run has trained this long in all, resumes included",
    )
    run.add_argument("--threads", type=int, metavar="N", help="CPU threads for PyTorch (default: PyTorch's choice)")
    run.add_argument(
        "--memory-limit-mb",
        type=float,
        metavar="MB",
        help="refuse settings estimated to need more, and end the run if it uses more (default: this machine's memory)",
    )
    run.add_argument(
        "--nice",
        type=int,
        metavar="N",
        help="lower this process's CPU priority by N (1-19), so that other work on the machine comes first",
    )
    run.add_argument(
        "--stop-when-idle",
        type=float,
        metavar="M",
        help="stop (and save) when the run folder's heartbeat file is older than M minutes (the app touches it)",
    )
    run.add_argument(
        "--dist-timeout-minutes",
        type=float,
        default=DEFAULT_TIMEOUT_MINUTES,
        metavar="M",
        help="under torchrun: how long a process waits for the others at a synchronisation point before "
        f"the run fails (default {DEFAULT_TIMEOUT_MINUTES:g})",
    )
    run.add_argument("--quiet", action="store_true", help="no progress bar or samples, only evaluations")
    run.add_argument("--json", action="store_true", help="print the final summary as JSON")
    add_dataclass_flags(train.add_argument_group("model and training settings (default: the chosen preset's)"), Config)
    train.set_defaults(func=cmd_train)

    evaluate = commands.add_parser("evaluate", help="perplexity of a model on a text")
    evaluate.add_argument("--checkpoint", required=True, metavar="PATH")
    evaluate.add_argument("--text-file", metavar="PATH", help="a text file to score")
    evaluate.add_argument("--plays", metavar="NAMES", help="or comma-separated bundled plays to score")
    evaluate.add_argument("--threads", type=int, metavar="N")
    evaluate.add_argument("--json", action="store_true", help="machine-readable output")
    evaluate.set_defaults(func=cmd_evaluate)

    generate = commands.add_parser("generate", help="continue prime texts")
    generate.add_argument("--checkpoint", required=True, metavar="PATH")
    generate.add_argument(
        "--prime", action="append", metavar="TEXT", help="text to continue (repeatable; default: the config's)"
    )
    generate.add_argument(
        "-n", "--length", type=int, default=20, help=f"words to generate (default 20, at most {MAX_LENGTH:,})"
    )
    choosing = generate.add_argument_group(
        "how to choose each word (a sampling flag without --method means --method sample; --temperature 0 is greedy)"
    )
    add_dataclass_flags(choosing, SamplingOptions, show_defaults=True)
    generate.add_argument("--threads", type=int, metavar="N")
    generate.add_argument("--json", action="store_true", help="machine-readable output")
    generate.set_defaults(func=cmd_generate)

    export = commands.add_parser("export", help="write a small model-only copy of a checkpoint, for sharing")
    export.add_argument("--checkpoint", required=True, metavar="PATH")
    export.add_argument("--out", required=True, metavar="PATH")
    export.add_argument("--half", action="store_true", help="store the weights in float16 (half the size)")
    export.set_defaults(func=cmd_export)

    plays = commands.add_parser("plays", help="list the bundled plays")
    plays.set_defaults(func=cmd_plays)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. Bad input (:class:`UsageError`, or an :class:`InputError` from the core)
    ends with one line and exit code 2; any other exception is a bug and keeps its traceback."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (UsageError, InputError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("\naborted", file=sys.stderr)
        return 130
