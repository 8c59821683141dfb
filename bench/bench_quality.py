"""Quality of an LSTM preset against a Kneser-Ney 5-gram, over folds of whole plays nobody tuned on.

    python bench/bench_quality.py --preset default --folds 3 --minutes 10
    python bench/bench_quality.py --preset default --set epochs=24 --validate-only --out runs/epochs24
    python bench/bench_quality.py --preset default --set epochs=24 --score-saved --out runs/epochs24
    python bench/bench_quality.py --folds 3 --minutes 0.2 --preset quick --threads 1   # a short check
    python bench/bench_quality.py --preset gpu --fold 1 --threads 4   # the first fold alone

The bundled plays are split into folds by whole play (``lstm_core.evaluation.folds``): each fold
holds out a few test plays and a few validation plays, and trains on the rest. For each fold the
preset trains for at most ``--minutes`` on its training plays (the vocabulary is theirs alone) and
keeps its best checkpoint by the perplexity of the fold's validation plays. Only when every fold
has trained are the test plays read: each fold's best checkpoint and a modified Kneser-Ney 5-gram
fitted on exactly the same training words, with the same vocabulary, are scored on them, once.

Settings are chosen on validation only: ``--validate-only`` trains the folds and reports their
validation perplexities without ever reading a test play. ``--score-saved`` then scores the folds
of the settings chosen, trained earlier into the same ``--out``, on their test plays, once,
without training them again. The plays that chose the settings of the
old protocol (``bench.kneser_ney.DEFAULT_HELDOUT_PLAYS``) may validate or train but never test.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import json
import os
import statistics
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# PyTorch's huge pages, as the command line asks for them (lstm_core.system.allocator), before it loads
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

import torch

from bench.kneser_ney import DEFAULT_HELDOUT_PLAYS
from lstm_core.config import PRESETS, Config, ConfigError, preset
from lstm_core.data.dataset import Dataset, prepare_pair
from lstm_core.errors import InputError
from lstm_core.evaluation.folds import Fold, split_by_play
from lstm_core.evaluation.ngram import KneserNey
from lstm_core.evaluation.scoring import evaluate, perplexity
from lstm_core.model.checkpoint import load_checkpoint
from lstm_core.text.cleaning import tokenize
from lstm_core.text.corpus import list_plays, play_text
from lstm_core.training.events import Event
from lstm_core.training.trainer import Trainer

ReadPlay = Callable[[str], str]
"""A play's spoken text from its name: ``play_text`` for the bundled plays, made-up texts in the tests."""


@dataclass(frozen=True)
class Stage:
    """Where the protocol is: preparing or training a fold's data, or scoring its test plays."""

    fold: int
    """The fold's index in the split (0 for the first)."""
    what: Literal["prepare", "train", "score"]
    detail: str = ""
    """For ``train``: the summary of the fold's data (its vocabulary, its words per split)."""


def _ignore(_: object) -> None:
    pass


# ---- the protocol, one step per function ------------------------------------------------------


def play_sizes() -> dict[str, float]:
    """Each bundled play's Markdown size in bytes: a stand-in for its words that reads no play's text."""
    return {name: float(path.stat().st_size) for name, path in list_plays().items()}


def prepare_fold(fold: Fold, min_word_freq: int, read_play: ReadPlay = play_text) -> Dataset:
    """The fold's training plays and validation plays, with the vocabulary of the training plays.

    Its test split is empty: the trainer gets this dataset, and the fold's test plays are not read.
    """
    train_text = "\n".join(read_play(name) for name in fold.train)
    valid_text = "\n".join(read_play(name) for name in fold.valid)
    return prepare_pair(train_text, valid_text, min_word_freq, name=f"fold {fold.index + 1}")


@dataclass(frozen=True)
class TrainedFold:
    """A fold after training: its data (no test split), its best checkpoint by validation, and how it ran."""

    fold: Fold
    dataset: Dataset
    best_checkpoint: Path
    valid_perplexity: float
    steps: int
    epochs: float
    minutes: float
    ended_by: str
    device: torch.device


def train_fold(
    fold: Fold,
    dataset: Dataset,
    config: Config,
    out_dir: Path,
    time_limit_s: float | None,
    on_event: Callable[[Event], None] = _ignore,
) -> TrainedFold:
    """Train ``config`` on the fold's training plays for at most ``time_limit_s`` (the CLI's ``--max-minutes``).

    The trainer keeps ``best.pt`` in ``out_dir``: the weights with the lowest validation perplexity.
    """
    if dataset.test.numel():
        raise ValueError("a fold's training data must not carry its test plays")
    trainer = Trainer(config, dataset, out_dir=out_dir, callback=on_event, time_limit_s=time_limit_s)
    result = trainer.fit()
    if result.best_val_loss is None:
        raise RuntimeError(f"fold {fold.index + 1} ended before its first evaluation ({result.reason})")
    return TrainedFold(
        fold=fold,
        dataset=dataset,
        best_checkpoint=out_dir / "best.pt",
        valid_perplexity=perplexity(result.best_val_loss),
        steps=result.steps,
        epochs=result.steps / trainer.steps_per_epoch,
        minutes=result.elapsed_s / 60,
        ended_by=result.reason,
        device=trainer.device,
    )


TRAINED_RECORD = "trained.json"
"""In each fold's folder: what its run reached and with which settings, for ``score_saved``."""


def save_trained(trained: TrainedFold, config: Config, out_dir: Path) -> None:
    """Write the fold's record beside its ``best.pt``."""
    record = {
        "fold": trained.fold.to_dict(),
        "config": config.to_dict(),
        "valid_perplexity": trained.valid_perplexity,
        "steps": trained.steps,
        "epochs": trained.epochs,
        "minutes": trained.minutes,
        "ended_by": trained.ended_by,
        "device": str(trained.device),
    }
    (out_dir / TRAINED_RECORD).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")


def load_trained(fold: Fold, config: Config, out_dir: Path, read_play: ReadPlay = play_text) -> TrainedFold:
    """A fold trained earlier into ``out_dir`` with ``config``, its data prepared again (no test play read).

    Refused with the reason when the folder holds no such fold, another split's fold or other settings.
    """
    where = out_dir / TRAINED_RECORD
    try:
        record = json.loads(where.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"fold {fold.index + 1} was not trained into {out_dir.parent}: {where} is missing") from None
    except (OSError, ValueError) as error:
        raise InputError(f"cannot read {where}: {error}") from None
    if record.get("fold") != fold.to_dict():
        raise InputError(f"{where} is another split's fold {fold.index + 1} (other plays held out)")
    if Config.from_dict(record.get("config") or {}) != config:
        raise InputError(f"{where} was trained with other settings than these; give the same --preset and --set")
    if not (out_dir / "best.pt").is_file():
        raise InputError(f"{out_dir / 'best.pt'} is missing")
    return TrainedFold(
        fold=fold,
        dataset=prepare_fold(fold, config.min_word_freq, read_play),
        best_checkpoint=out_dir / "best.pt",
        valid_perplexity=float(record["valid_perplexity"]),
        steps=int(record["steps"]),
        epochs=float(record["epochs"]),
        minutes=float(record["minutes"]),
        ended_by=str(record["ended_by"]),
        device=torch.device(record["device"]),
    )


@dataclass(frozen=True)
class FoldRow:
    """One fold's line of the table; the test columns are None where only validation was reported."""

    fold: int
    """1, 2, ...: the fold's number."""
    test_plays: tuple[str, ...]
    valid_plays: tuple[str, ...]
    valid_perplexity: float
    test_perplexity: float | None
    kneser_ney_perplexity: float | None
    below_kneser_ney: float | None
    """``1 - test / Kneser-Ney``: the share by which the LSTM's test perplexity is lower."""
    minutes: float
    steps: int
    epochs: float
    ended_by: str


def validation_row(trained: TrainedFold) -> FoldRow:
    """The fold's row with validation figures only (what a choice of settings may look at)."""
    return FoldRow(
        fold=trained.fold.index + 1,
        test_plays=trained.fold.test,
        valid_plays=trained.fold.valid,
        valid_perplexity=trained.valid_perplexity,
        test_perplexity=None,
        kneser_ney_perplexity=None,
        below_kneser_ney=None,
        minutes=trained.minutes,
        steps=trained.steps,
        epochs=trained.epochs,
        ended_by=trained.ended_by,
    )


def score_fold(trained: TrainedFold, order: int = 5, read_play: ReadPlay = play_text) -> FoldRow:
    """Read the fold's test plays (for the first time) and score its best checkpoint and a Kneser-Ney model on them.

    The test plays become one 1-D stream of ids over the fold's vocabulary. The n-gram model is
    fitted on the fold's training ids, with its vocabulary; test words outside it are ``<unk>``
    for both models.
    """
    vocab = trained.dataset.vocab
    test_ids = torch.tensor(
        vocab.encode(tokenize("\n".join(read_play(name) for name in trained.fold.test))), dtype=torch.long
    )
    checkpoint = load_checkpoint(trained.best_checkpoint)
    model = checkpoint.build_model(trained.device)
    test_loss, _ = evaluate(model, test_ids, checkpoint.config.training_seq_len)
    test_perplexity = perplexity(test_loss)
    kneser_ney = KneserNey(order).fit(trained.dataset.train, len(vocab)).perplexity(test_ids)
    return dataclasses.replace(
        validation_row(trained),
        test_perplexity=test_perplexity,
        kneser_ney_perplexity=kneser_ney,
        below_kneser_ney=1 - test_perplexity / kneser_ney,
    )


def run_folds(
    folds: Sequence[Fold],
    config: Config,
    out_dir: Path,
    *,
    time_limit_s: float | None,
    order: int = 5,
    validate_only: bool = False,
    read_play: ReadPlay = play_text,
    on_stage: Callable[[Stage], None] = _ignore,
    on_event: Callable[[Event], None] = _ignore,
) -> list[FoldRow]:
    """Every fold trains first; then, unless ``validate_only``, every fold's test plays are scored, once.

    Nothing reads a fold's test plays before all the folds have trained, so no figure from them can
    steer a run (``on_stage`` reports each step, and the tests hold the order to it).
    """
    trained = []
    for fold in folds:
        on_stage(Stage(fold.index, "prepare"))
        dataset = prepare_fold(fold, config.min_word_freq, read_play)
        on_stage(Stage(fold.index, "train", dataset.summary()))
        fold_dir = out_dir / f"fold-{fold.index + 1}"
        trained.append(train_fold(fold, dataset, config, fold_dir, time_limit_s, on_event))
        save_trained(trained[-1], config, fold_dir)
    if validate_only:
        return [validation_row(done) for done in trained]
    return score_folds(trained, order, read_play, on_stage)


def score_saved(
    folds: Sequence[Fold],
    config: Config,
    out_dir: Path,
    *,
    order: int = 5,
    read_play: ReadPlay = play_text,
    on_stage: Callable[[Stage], None] = _ignore,
) -> list[FoldRow]:
    """Score folds that ``run_folds(..., validate_only=True)`` trained into ``out_dir`` earlier, as it would have.

    Every fold is found (and its data prepared) before any test play is read.
    """
    trained = []
    for fold in folds:
        on_stage(Stage(fold.index, "prepare"))
        trained.append(load_trained(fold, config, out_dir / f"fold-{fold.index + 1}", read_play))
    return score_folds(trained, order, read_play, on_stage)


def score_folds(
    trained: Sequence[TrainedFold], order: int, read_play: ReadPlay, on_stage: Callable[[Stage], None]
) -> list[FoldRow]:
    """Each trained fold's test plays, read for the first time and scored."""
    rows = []
    for done in trained:
        on_stage(Stage(done.fold.index, "score"))
        rows.append(score_fold(done, order, read_play))
    return rows


# ---- the table ------------------------------------------------------------------------------

MEDIAN_FIELDS = ("valid_perplexity", "test_perplexity", "kneser_ney_perplexity", "below_kneser_ney", "minutes")


def medians(rows: Sequence[FoldRow]) -> dict[str, float | None]:
    """The median over folds of each figure (of each fold's share below Kneser-Ney, not a share of medians)."""
    if not rows:
        raise ValueError("no folds to take a median of")
    result: dict[str, float | None] = {}
    for name in MEDIAN_FIELDS:
        values = [getattr(row, name) for row in rows]
        result[name] = None if any(value is None for value in values) else statistics.median(values)
    return result


def table(rows: Sequence[FoldRow]) -> str:
    """A Markdown table: one row per fold, then the medians; the test columns only where they were scored."""
    scored = all(row.test_perplexity is not None for row in rows)
    middle = medians(rows)
    if scored:
        header = (
            "| fold | test plays | validation perplexity | test perplexity | Kneser-Ney test perplexity "
            "| below Kneser-Ney | minutes |"
        )
        lines = [header, "|---|---|---|---|---|---|---|"]
        for row in rows:
            lines.append(
                f"| {row.fold} | {', '.join(row.test_plays)} | {row.valid_perplexity:.2f} | "
                f"{row.test_perplexity:.2f} | {row.kneser_ney_perplexity:.2f} | "
                f"{row.below_kneser_ney:.1%} | {row.minutes:.2f} |"
            )
        lines.append(
            f"| median | | {middle['valid_perplexity']:.2f} | {middle['test_perplexity']:.2f} | "
            f"{middle['kneser_ney_perplexity']:.2f} | {middle['below_kneser_ney']:.1%} | {middle['minutes']:.2f} |"
        )
    else:
        lines = ["| fold | validation plays | validation perplexity | steps (epochs) | ended by | minutes |"]
        lines.append("|---|---|---|---|---|---|")
        for row in rows:
            lines.append(
                f"| {row.fold} | {', '.join(row.valid_plays)} | {row.valid_perplexity:.2f} | "
                f"{row.steps:,} ({row.epochs:.1f}) | {row.ended_by} | {row.minutes:.2f} |"
            )
        lines.append(f"| median | | {middle['valid_perplexity']:.2f} | | | {middle['minutes']:.2f} |")
    return "\n".join(lines)


# ---- the command line -----------------------------------------------------------------------


def parse_value(text: str) -> object:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _config(parser: argparse.ArgumentParser, args: argparse.Namespace) -> tuple[Config, dict[str, str]]:
    changes: dict[str, str] = {}
    for item in args.set:
        key, equals, value = item.partition("=")
        if not equals or not key:
            parser.error(f"--set takes KEY=VALUE, got {item!r}")
        changes[key] = value
    settings = {key: parse_value(value) for key, value in changes.items()}
    if args.seed is not None:
        settings["seed"] = args.seed
    try:
        return preset(args.preset, **settings), changes
    except (TypeError, ConfigError) as error:  # an unknown field, or a value the config refuses
        parser.error(f"cannot apply --set {', '.join(item for item in args.set)}: {error}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=tuple(PRESETS), default="default")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field")
    parser.add_argument("--folds", type=int, default=3, help="how many folds of whole plays (at least 3)")
    parser.add_argument("--minutes", type=float, default=10.0, help="the training time limit of each fold's run")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, help="the model's seed (default: the preset's)")
    parser.add_argument("--split-seed", type=int, default=0, help="which plays each fold holds out (default: 0)")
    parser.add_argument("--fold", type=int, help="run this fold of the split alone (1 = the first; default: all)")
    parser.add_argument("--order", type=int, default=5, help="the Kneser-Ney model's order")
    parser.add_argument(
        "--validate-only", action="store_true", help="report validation only, never reading a test play"
    )
    parser.add_argument(
        "--score-saved",
        action="store_true",
        help="score the folds trained into --out earlier (by --validate-only, same settings) on their test plays",
    )
    parser.add_argument("--out", help="keep each fold's run here (default: a temporary folder)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON instead of a table")
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.threads < 1 or args.order < 1:
        parser.error("--minutes must be positive, --threads and --order 1 or more")
    if args.score_saved and (args.validate_only or not args.out):
        parser.error("--score-saved needs --out (the folder the folds trained into) and not --validate-only")

    config, changes = _config(parser, args)
    try:
        folds = split_by_play(
            list_plays(), args.folds, args.split_seed, sizes=play_sizes(), not_for_test=DEFAULT_HELDOUT_PLAYS
        )
    except InputError as error:
        parser.error(str(error))
    if args.fold is not None:
        if not 1 <= args.fold <= len(folds):
            parser.error(f"--fold must be between 1 and {len(folds)}, got {args.fold}")
        folds = [folds[args.fold - 1]]
    torch.set_num_threads(args.threads)
    for fold in folds:
        print(
            f"fold {fold.index + 1}: test {', '.join(fold.test)}; validation {', '.join(fold.valid)}; "
            f"{len(fold.train)} plays to train on",
            file=sys.stderr,
        )

    def on_stage(stage: Stage) -> None:
        if stage.what == "train":
            print(stage.detail, file=sys.stderr)
        elif stage.what == "score":
            print(f"fold {stage.fold + 1}: scoring its test plays", file=sys.stderr)

    def on_event(event: Event) -> None:
        if event.kind == "eval":
            print(f"  step {event.step}: validation perplexity {event.perplexity:.1f}", file=sys.stderr)

    if args.score_saved:
        try:
            rows = score_saved(folds, config, Path(args.out), order=args.order, on_stage=on_stage)
        except InputError as error:
            parser.error(str(error))
    else:
        with tempfile.TemporaryDirectory() as scratch:
            rows = run_folds(
                folds,
                config,
                Path(args.out) if args.out else Path(scratch),
                time_limit_s=args.minutes * 60,
                order=args.order,
                validate_only=args.validate_only,
                on_stage=on_stage,
                on_event=on_event,
            )
    if args.json:
        result = {
            "preset": args.preset,
            "changes": changes,
            "seed": config.seed,
            "split_seed": args.split_seed,
            "folds_in_split": args.folds,
            "minutes_limit": args.minutes,
            "threads": args.threads,
            "folds": [asdict(row) for row in rows],
            "median": medians(rows),
        }
        print(json.dumps(result))
    else:
        print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
