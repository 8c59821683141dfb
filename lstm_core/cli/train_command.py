"""``train``: train a model in a run folder, or continue one; alone, or as one rank under torchrun.

The steps, each in its own place::

    flags -> settings and text (here)            -> admitted? (lstm_core.runs.admission)
          -> the run folder begun (lstm_core.runs.setup)
          -> under torchrun: rank 0's setup sent to the others (lstm_core.training.handshake)
          -> trained and reported (lstm_core.cli.training_run)

Nothing is built and no folder written until the run is admitted: enough words for the batch, a
batch that divides among torchrun's processes, and a memory estimate within ``--memory-limit-mb``
(or this machine's memory).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lstm_core.cli.flags import (
    EXIT_FAILED,
    EXIT_USAGE,
    UsageError,
    add_dataclass_flags,
    check_positive,
    config_from_args,
    names,
    set_threads,
)
from lstm_core.cli.training_run import ProcessOptions, TrainingRun
from lstm_core.config import PRESET_HELP, PRESETS, Config
from lstm_core.errors import InputError
from lstm_core.runs import setup as run_setup
from lstm_core.runs.admission import AdmissionLimits, TokenCounts, admission_problems
from lstm_core.runs.setup import RunSetup
from lstm_core.text.corpus import DEFAULT_GUTENBERG_URL, bundled_plays, list_plays, load_corpus, text_from_file
from lstm_core.training.distributed import DEFAULT_TIMEOUT_MINUTES

if TYPE_CHECKING:
    from lstm_core.data.dataset import Dataset
    from lstm_core.training.distributed import DistributedContext

MEMORY_LIMIT_FLAG = "the limit given by --memory-limit-mb"
"""How a refusal names ``--memory-limit-mb``."""


def add_parser(commands: argparse._SubParsersAction) -> None:
    """The ``train`` command: where the text comes from, the run's flags, and one flag per
    :class:`~lstm_core.config.Config` field (defaults: the chosen preset's)."""
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
    run_flags = train.add_argument_group("the run")
    presets = ", ".join(f"{name} ({text})" for name, text in PRESET_HELP.items())
    run_flags.add_argument("--preset", choices=tuple(PRESETS), default="default", help=presets)
    run_flags.add_argument("--config", metavar="FILE", help="settings from a JSON file (a config, or a run's run.json)")
    run_flags.add_argument(
        "--out", metavar="DIR", help="the run folder (default: runs/run-<date>-<time>-<random>, or the resumed run's)"
    )
    run_flags.add_argument("--overwrite", action="store_true", help="replace the run already in --out")
    run_flags.add_argument(
        "--resume",
        metavar="RUN",
        help="continue a run: its folder (or a checkpoint); it trains on its own saved data and settings",
    )
    run_flags.add_argument(
        "--max-minutes",
        type=float,
        metavar="M",
        help="stop cleanly (and save) once the run has trained this long in all, resumes included",
    )
    run_flags.add_argument(
        "--threads", type=int, metavar="N", help="CPU threads for PyTorch (default: PyTorch's choice)"
    )
    run_flags.add_argument(
        "--memory-limit-mb",
        type=float,
        metavar="MB",
        help="refuse settings estimated to need more, and end the run if it uses more (default: this machine's memory)",
    )
    run_flags.add_argument(
        "--nice",
        type=int,
        metavar="N",
        help="lower this process's CPU priority by N (1-19), so that other work on the machine comes first",
    )
    run_flags.add_argument(
        "--stop-when-idle",
        type=float,
        metavar="M",
        help="stop (and save) when the run folder's heartbeat file is older than M minutes (the app touches it)",
    )
    run_flags.add_argument(
        "--dist-timeout-minutes",
        type=float,
        default=DEFAULT_TIMEOUT_MINUTES,
        metavar="M",
        help="under torchrun: how long a process waits for the others at a synchronisation point before "
        f"the run fails (default {DEFAULT_TIMEOUT_MINUTES:g})",
    )
    run_flags.add_argument("--quiet", action="store_true", help="no progress bar or samples, only evaluations")
    run_flags.add_argument("--json", action="store_true", help="print the final summary as JSON")
    add_dataclass_flags(train.add_argument_group("model and training settings (default: the chosen preset's)"), Config)
    train.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Check the process's flags, then train: alone, or as one rank of torchrun's processes."""
    from lstm_core.training.distributed import torchrun_ranks

    set_threads(args.threads)
    if args.nice is not None:
        if not 0 <= args.nice <= 19:
            raise UsageError(f"--nice must be between 0 and 19, got {args.nice}")
        os.nice(args.nice)
    for value, flag in ((args.max_minutes, "--max-minutes"), (args.memory_limit_mb, "--memory-limit-mb")):
        check_positive(value, flag)
    check_positive(args.stop_when_idle, "--stop-when-idle")
    check_positive(args.dist_timeout_minutes, "--dist-timeout-minutes")
    memory_limit = int(args.memory_limit_mb * 1_000_000) if args.memory_limit_mb else None
    options = ProcessOptions(args.quiet, args.json, args.max_minutes, args.stop_when_idle, memory_limit)
    if torchrun_ranks() is not None:
        return train_distributed(args, options)
    return TrainingRun(prepare_run(args, memory_limit), options).run()


# ---- the text and the settings ------------------------------------------------------------------

_SOURCE_FLAGS = ("corpus", "plays", "holdout_plays", "text_file", "train_file", "valid_file", "dataset")


def _source_given(args: argparse.Namespace) -> bool:
    return any(getattr(args, name) is not None for name in _SOURCE_FLAGS)


def dataset_from_flags(args: argparse.Namespace, config: Config) -> Dataset:
    """The text the flags name (the bundled plays by default), cleaned, split and encoded."""
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
        held_out = names(args.holdout_plays) or []
        chosen = names(args.plays) or list(list_plays())
        training = [name for name in chosen if name not in held_out]
        if not training:
            raise UsageError("every chosen play is held out: nothing is left to train on")
        train, test = bundled_plays(training), bundled_plays(held_out)
        name = f"{train.name}, held out: {', '.join(held_out)}"
        return prepare_holdout(train.text, test.text, min_freq, config.valid_fraction, name=name)
    corpus = load_corpus(
        corpus_source,
        plays=names(args.plays),
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


def read_config_file(path: str) -> dict[str, Any]:
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


# ---- admitting and beginning the run ------------------------------------------------------------


def admission_limits(memory_limit: int | None, world: DistributedContext | None = None) -> AdmissionLimits:
    """What this process admits a run against: ``--memory-limit-mb``, else this machine's memory
    shared by the processes torchrun starts on it; under torchrun, the batch's split and this
    rank's device."""
    from lstm_core.training.distributed import local_world_size

    processes = world.size if world is not None and world.size > 1 else 1
    return AdmissionLimits(
        memory_limit=memory_limit,
        memory_limit_name=MEMORY_LIMIT_FLAG,
        processes=processes,
        processes_here=local_world_size(processes) if processes > 1 else 1,
        local_rank=world.local_rank if world is not None else 0,
    )


def admit(config: Config, dataset: Dataset, memory_limit: int | None, world: DistributedContext | None) -> None:
    """Refuse the run, before anything is built, for every reason the admission rules give."""
    limits = admission_limits(memory_limit, world)
    problems = admission_problems(config, dataset.vocab.counts, TokenCounts.of_dataset(dataset), limits)
    if problems:
        raise UsageError(" ".join(problems))


def prepare_run(
    args: argparse.Namespace, memory_limit: int | None, world: DistributedContext | None = None
) -> RunSetup:
    """Read the flags, the text or the resumed run, admit the run, and begin its folder."""
    from lstm_core.data.dataset import Dataset

    resume = None
    if args.resume:
        if args.overwrite:
            raise UsageError("--resume continues a run; --overwrite starts one afresh: choose one")
        resumed = run_setup.open_resumed_run(args.resume)
        resume = resumed.checkpoint
        config = config_from_args(args, resumed.config)
        if _source_given(args) or resumed.dataset_folder is None:
            dataset = dataset_from_flags(args, config)  # a checkpoint from before runs kept their data
        else:
            dataset = Dataset.load(resumed.dataset_folder)
        out = Path(args.out) if args.out else resumed.folder
        if out != resumed.folder:
            run_setup.check_new_run_folder(out, overwrite=False)
    else:
        base = Config.from_dict(read_config_file(args.config)) if args.config else PRESETS[args.preset]
        config = config_from_args(args, base)
        out = Path(args.out) if args.out else run_setup.default_run_folder()
        run_setup.check_new_run_folder(out, args.overwrite)
        dataset = dataset_from_flags(args, config)
    admit(config, dataset, memory_limit, world)
    setup = RunSetup(config, dataset, out, resume)
    run_setup.begin_run(setup)
    return setup


# ---- several processes (torchrun) ---------------------------------------------------------------


def train_distributed(args: argparse.Namespace, options: ProcessOptions) -> int:
    """One rank of a run that torchrun started on several processes.

    Rank 0 alone prepares the run, exactly as a single process does, and sends it to the others
    (:func:`lstm_core.training.handshake.share_setup`). If rank 0 cannot prepare the run, it says
    why in one line and the others end quietly (exit code 2).
    """
    from lstm_core.training import distributed
    from lstm_core.training.handshake import share_setup

    world = distributed.start(args.dist_timeout_minutes * 60)
    code = EXIT_FAILED
    try:
        setup = share_setup(world, lambda: prepare_run(args, options.memory_limit, world))
        if setup is None:
            return EXIT_USAGE  # rank 0 has said why
        try:
            world = world.on_device(setup.config.device)
            code = TrainingRun(setup, options, world).run()
        except (UsageError, InputError) as error:
            if world.is_main:
                raise
            raise UsageError(f"rank {world.rank}: {error}") from None
    finally:
        if code == 0:
            world.close()  # after a failure the group may be broken, and leaving it could wait on a lost rank
    return code
