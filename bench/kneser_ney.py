"""Held-out perplexity of the interpolated modified Kneser-Ney n-gram models of ``lstm_core.evaluation.ngram``.

    python bench/kneser_ney.py                      # train on all plays but three, orders 1..5
    python bench/kneser_ney.py --train a.txt --heldout b.txt --max-order 3

By default it trains on every bundled play except the held-out ones and scores those plays, the
LSTM's test text in the old quality protocol (``bench/RESULTS.md``). The model itself (maths, storage, tests) lives in
the core, where the app's baselines use it too.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

# `python bench/kneser_ney.py` puts bench/, not the repository root, on sys.path.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lstm_core.data.dataset import Dataset, prepare_holdout, prepare_pair
from lstm_core.evaluation.ngram import KneserNey
from lstm_core.text.corpus import CorpusError, bundled_plays, list_plays, text_from_file

DEFAULT_HELDOUT_PLAYS = ("hamlet", "the-tempest", "julius-caesar")
"""The old quality protocol's test plays: they also chose the presets' settings (bench/RESULTS.md),
so the folds of ``bench/bench_quality.py`` never test on them."""


def holdout_dataset(held_out: Sequence[str], min_word_freq: int, valid_fraction: float) -> Dataset:
    """The old split: every other play trains, its last ``valid_fraction`` validates, ``held_out`` tests.

    ``bench_train.py`` (speed and memory, which do not depend on the split) and ``bench_recipes.py``
    still use it.
    """
    training = [name for name in list_plays() if name not in held_out]
    return prepare_holdout(
        bundled_plays(training).text, bundled_plays(held_out).text, min_word_freq, valid_fraction, name="plays"
    )


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(
            "Held-out perplexity of an interpolated modified Kneser-Ney n-gram model, the baseline "
            "for the LSTM. By default it trains on every bundled play except the held-out ones."
        )
    )
    parser.add_argument("--train", type=Path, help="a training text file (with --heldout, instead of the plays)")
    parser.add_argument("--heldout", type=Path, help="a held-out text file (with --train)")
    parser.add_argument(
        "--plays-heldout",
        help=f"comma-separated bundled plays to hold out (default: {','.join(DEFAULT_HELDOUT_PLAYS)})",
    )
    parser.add_argument("--order", type=int, help="evaluate this order only (default: every order 1..--max-order)")
    parser.add_argument("--max-order", type=int, default=5, help="the highest order evaluated (default: 5)")
    parser.add_argument(
        "--min-word-freq",
        type=int,
        default=5,
        help="keep training words seen more than this many times, the rest are <unk> (default: 5)",
    )
    args = parser.parse_args(argv)
    if (args.train is None) != (args.heldout is None):
        parser.error("--train and --heldout go together")
    if args.train is not None and args.plays_heldout is not None:
        parser.error("choose text files (--train/--heldout) or --plays-heldout, not both")
    if (args.order is not None and args.order < 1) or args.max_order < 1:
        parser.error("orders must be 1 or more")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    start = time.perf_counter()
    try:
        if args.train is not None:
            train_text, heldout_text = text_from_file(args.train).text, text_from_file(args.heldout).text
            source = f"train {args.train}, held out {args.heldout}"
        else:
            heldout = [name.strip() for name in (args.plays_heldout or ",".join(DEFAULT_HELDOUT_PLAYS)).split(",")]
            heldout = [name for name in heldout if name]
            heldout_text = bundled_plays(heldout).text  # raises on unknown names
            training = [name for name in list_plays() if name not in heldout]
            train_text = bundled_plays(training).text
            source = f"{len(training)} plays trained on, held out: {', '.join(heldout)}"
        dataset = prepare_pair(train_text, heldout_text, args.min_word_freq)
    except (CorpusError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    train_ids, heldout_ids = dataset.train, dataset.valid
    vocab_size = len(dataset.vocab)
    heldout_unknown = int((heldout_ids == 0).sum())
    print(source)
    print(
        f"vocabulary {vocab_size:,} words (min_word_freq {args.min_word_freq}); "
        f"train {len(train_ids):,} tokens, held out {len(heldout_ids):,} tokens "
        f"({heldout_unknown / len(heldout_ids):.1%} <unk>); text prepared in {time.perf_counter() - start:.1f} s"
    )
    print(f"{'order':>5} {'perplexity':>11} {'fit s':>7} {'score s':>8}  discounts (D1, D2, D3+) of the top order")
    orders = [args.order] if args.order is not None else range(1, args.max_order + 1)
    for order in orders:
        model = KneserNey(order)
        start = time.perf_counter()
        model.fit(train_ids, vocab_size)
        fitted = time.perf_counter()
        perplexity = model.perplexity(heldout_ids)
        scored = time.perf_counter()
        discounts = ", ".join(f"{d:.3f}" for d in model.discounts[order])
        print(f"{order:>5} {perplexity:>11.2f} {fitted - start:>7.2f} {scored - fitted:>8.2f}  ({discounts})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
