"""Command line: ``python -m lstm_core train | evaluate | generate | export | plays``.

Every :class:`~lstm_core.config.Config` field is a ``train`` flag (``--rnn-size 256``) and every
:class:`~lstm_core.sampling.SamplingOptions` field a ``generate`` flag (``--top-p 0.9``), built
from the dataclasses (:func:`add_dataclass_flags`) so the CLI can never drift from them. Bad input ends with one line on
stderr and exit code 2; a run that fails (e.g. a diverging loss) exits with 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import signal
import sys
import time
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from lstm_core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from lstm_core.config import PRESET_HELP, PRESETS, Config, ConfigError
from lstm_core.corpus import DEFAULT_GUTENBERG_URL, CorpusError, bundled_plays, list_plays, load_corpus, text_from_file
from lstm_core.errors import InputError
from lstm_core.fields import describe_field, describe_fields
from lstm_core.sampling.decoding import MAX_LENGTH
from lstm_core.sampling.options import SamplingOptions

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
    applies_to = {info.name: info.extra.get("applies_to") for info in describe_fields(SamplingOptions)}
    if "method" not in given:
        sampling = [name for name in given if applies_to[name] == ("sample",)]
        if given.get("temperature") == 0:
            given["method"] = "greedy"
            del given["temperature"]
        elif sampling:
            given["method"] = "sample"
    method = given.get("method", describe_field(SamplingOptions, "method").default)
    ignored = [name for name in given if applies_to[name] is not None and method not in applies_to[name]]
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


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = round(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


class ProgressPrinter:
    """Turns trainer events into a one-line progress bar plus lines for evaluations and samples."""

    def __init__(self, stream: TextIO | None = None, width: int = 24, quiet: bool = False) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.quiet = quiet
        self.interactive = self.stream.isatty()
        self._last_draw = 0.0
        self._bar_shown = False

    def _line(self, text: str) -> None:
        if self._bar_shown and self.interactive:
            self.stream.write("\r\033[K")
        self._bar_shown = False
        self.stream.write(text + "\n")
        self.stream.flush()

    def __call__(self, event: Any) -> None:
        if event.kind == "step":
            now = time.monotonic()
            done = event.step >= event.total_steps
            if self.quiet or (now - self._last_draw < (0.2 if self.interactive else 10.0) and not done):
                return
            self._last_draw = now
            share = event.step / max(1, event.total_steps)
            filled = int(share * self.width)
            bar = "#" * filled + "." * (self.width - filled)
            text = (
                f"[{bar}] {share:4.0%} step {event.step}/{event.total_steps} epoch {event.epoch + 1} "
                f"loss {event.loss:.3f} {event.tokens_per_s / 1000:.1f}k words/s "
                f"elapsed {_duration(event.elapsed_s)} ETA {_duration(event.eta_s)}"
            )
            if self.interactive:
                self.stream.write("\r\033[K" + text)
                self._bar_shown = True
                self.stream.flush()
            else:
                self._line(text)
        elif event.kind == "eval":
            mark = " (best)" if event.best else ""
            self._line(
                f"step {event.step}: validation loss {event.val_loss:.4f}, perplexity {event.perplexity:.1f}{mark}"
            )
        elif event.kind == "sample" and not self.quiet:
            for text in event.samples.values():
                self._line(f"    {text}")
        elif event.kind == "end":
            self._line(f"{event.reason.replace('_', ' ')} after {event.step} steps in {_duration(event.elapsed_s)}")


# ---- commands ----------------------------------------------------------------------------


def _dataset_for_training(args: argparse.Namespace, config: Config) -> Any:
    from lstm_core.data import prepare, prepare_holdout, prepare_pair

    min_freq = config.min_word_freq
    if args.train_file or args.valid_file:
        if not (args.train_file and args.valid_file):
            raise UsageError("--train-file and --valid-file go together")
        train, valid = text_from_file(args.train_file), text_from_file(args.valid_file)
        return prepare_pair(train.text, valid.text, min_freq, name=f"{train.name} (valid: {valid.name})")
    if args.holdout_plays:
        if args.corpus != "plays":
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
        args.corpus,
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
    if threads:
        import torch

        torch.set_num_threads(threads)


def cmd_train(args: argparse.Namespace) -> int:
    from lstm_core.trainer import Trainer, TrainingDiverged

    _set_threads(args.threads)
    resume = load_checkpoint(args.resume) if args.resume else None
    config = config_from_args(args, resume.config if resume is not None else None)
    if args.max_minutes is not None and args.max_minutes <= 0:
        raise UsageError("--max-minutes must be positive")
    dataset = _dataset_for_training(args, config)
    out = (
        Path(args.out)
        if args.out
        else (Path(args.resume).parent if args.resume else Path("runs") / time.strftime("run-%Y%m%d-%H%M%S"))
    )
    printer = ProgressPrinter(quiet=args.quiet)
    print(dataset.summary(), file=sys.stderr)
    trainer = Trainer(
        config,
        dataset,
        out_dir=out,
        callback=printer,
        time_limit_s=args.max_minutes * 60 if args.max_minutes else None,
        resume=resume,
    )
    print(
        f"model: {trainer.model.num_parameters():,} parameters on {trainer.device}"
        f"{' with ' + str(trainer.dtype).removeprefix('torch.') if trainer.dtype else ''}; "
        f"{trainer.total_steps:,} steps ({trainer.steps_per_epoch:,} per epoch); checkpoints in {out}",
        file=sys.stderr,
    )

    def on_interrupt(signum: int, frame: types.FrameType | None) -> None:
        print("\nstopping after this step and saving (press Ctrl-C again to abort)", file=sys.stderr)
        trainer.request_stop()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        result = trainer.fit()
    except TrainingDiverged as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        signal.signal(signal.SIGINT, previous)
    summary = {
        "reason": result.reason,
        "steps": result.steps,
        "elapsed_s": round(result.elapsed_s, 1),
        "val_loss": result.val_loss,
        "perplexity": result.perplexity,
        "best_val_loss": result.best_val_loss,
        "checkpoint": str(out / "last.pt"),
        "best_checkpoint": str(out / "best.pt"),
    }
    print(json.dumps(summary, indent=2) if args.json else f"saved {out / 'last.pt'} (best: {out / 'best.pt'})")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    import torch

    from lstm_core.text import tokenize
    from lstm_core.trainer import evaluate

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
        "perplexity": math.exp(loss),
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"{corpus.name}: {coverage.tokens:,} words ({coverage.unknown_share:.1%} unknown to the model), "
            f"loss {loss:.4f}, perplexity {math.exp(loss):.2f}"
        )
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from lstm_core.sampling import generate

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
    if out.resolve() == Path(args.checkpoint).resolve():
        raise UsageError("--out must differ from --checkpoint (the export never overwrites its source)")
    save_checkpoint(checkpoint.without_training_state(half=args.half), out)
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
        "--corpus", choices=("plays", "gutenberg", "file"), default="plays", help="where the text comes from"
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
    run = train.add_argument_group("the run")
    presets = ", ".join(f"{name} ({text})" for name, text in PRESET_HELP.items())
    run.add_argument("--preset", choices=tuple(PRESETS), default="default", help=presets)
    run.add_argument("--out", metavar="DIR", help="checkpoint folder (default: runs/run-<time>, or the resumed run's)")
    run.add_argument("--resume", metavar="CHECKPOINT", help="continue the run saved in this checkpoint (its last.pt)")
    run.add_argument("--max-minutes", type=float, metavar="M", help="stop cleanly (and save) after this many minutes")
    run.add_argument("--threads", type=int, metavar="N", help="CPU threads for PyTorch (default: PyTorch's choice)")
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
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (UsageError, ConfigError, CorpusError, CheckpointError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("\naborted", file=sys.stderr)
        return 130
