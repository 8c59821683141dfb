"""Held-out perplexity of an LSTM preset against a Kneser-Ney 5-gram, on plays never trained on.

    python bench/bench_quality.py --preset default --minutes 10
    python bench/bench_quality.py --preset cookbook --set epochs=10 --minutes 60

The bundled plays minus the held-out ones are the training text; the last ``valid_fraction`` of
it is the validation block (used only to keep the best checkpoint). The held-out plays are the
test text: the LSTM's best checkpoint and a modified Kneser-Ney 5-gram, fitted on exactly the
same training words with the same vocabulary (``lstm_core.evaluation.ngram``), are both scored on them.
"""

from __future__ import annotations

import argparse
import ast
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# PyTorch's huge pages, as the command line asks for them (lstm_core.system.allocator), before it loads
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

import torch

from bench.kneser_ney import DEFAULT_HELDOUT_PLAYS, holdout_dataset
from lstm_core.config import PRESETS, preset
from lstm_core.data.dataset import Dataset
from lstm_core.evaluation.ngram import KneserNey
from lstm_core.model.checkpoint import load_checkpoint
from lstm_core.training.trainer import Trainer, evaluate


def kneser_ney_perplexity(dataset: Dataset, order: int) -> tuple[float, float]:
    started = time.perf_counter()
    model = KneserNey(order).fit(dataset.train, len(dataset.vocab))
    return model.perplexity(dataset.test), time.perf_counter() - started


def parse_value(text: str) -> object:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=tuple(PRESETS), default="default")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field")
    parser.add_argument("--minutes", type=float, default=10.0, help="training time budget")
    parser.add_argument("--holdout", default=",".join(DEFAULT_HELDOUT_PLAYS), help="comma-separated test plays")
    parser.add_argument("--order", type=int, default=5, help="Kneser-Ney order")
    parser.add_argument("--no-kn", action="store_true", help="skip the n-gram baseline")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", help="keep the run's checkpoints here (default: a temporary folder)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    changes = dict(item.split("=", 1) for item in args.set)
    config = preset(args.preset, **{key: parse_value(value) for key, value in changes.items()})
    held_out = [name.strip() for name in args.holdout.split(",") if name.strip()]
    dataset = holdout_dataset(held_out, config.min_word_freq, config.valid_fraction)
    print(dataset.summary(), file=sys.stderr)

    kn_ppl, kn_seconds = (math.nan, 0.0) if args.no_kn else kneser_ney_perplexity(dataset, args.order)
    if not args.no_kn:
        print(f"Kneser-Ney {args.order}-gram: test perplexity {kn_ppl:.2f} ({kn_seconds:.0f} s)", file=sys.stderr)

    with tempfile.TemporaryDirectory() as scratch:
        out = Path(args.out) if args.out else Path(scratch)

        def progress(event: object) -> None:
            if getattr(event, "kind", "") == "eval":
                print(f"  step {event.step}: valid perplexity {event.perplexity:.1f}", file=sys.stderr)  # type: ignore[attr-defined]

        trainer = Trainer(config, dataset, out_dir=out, callback=progress, time_limit_s=args.minutes * 60)
        result = trainer.fit()
        best = load_checkpoint(out / "best.pt").build_model(trainer.device)
    test_loss, _ = evaluate(best, dataset.test, config.training_seq_len)
    # The run's model at its end: its averaged weights where the config averages them.
    last_loss, _ = evaluate(result.checkpoint.build_model(trainer.device), dataset.test, config.training_seq_len)
    row = {
        "preset": args.preset,
        "changes": changes,
        "held_out": held_out,
        "reason": result.reason,
        "steps": result.steps,
        "epochs": round(result.steps / trainer.steps_per_epoch, 2),
        "minutes": round(result.elapsed_s / 60, 2),
        "valid_ppl_best": round(math.exp(result.best_val_loss), 2) if result.best_val_loss is not None else None,
        "test_ppl_best": round(math.exp(test_loss), 2),
        "test_ppl_last": round(math.exp(last_loss), 2),
        "kn_ppl": round(kn_ppl, 2),
        "below_kn": round(1 - math.exp(test_loss) / kn_ppl, 4) if not args.no_kn else None,
        "threads": args.threads,
        "device": str(trainer.device),
    }
    if args.json:
        print(json.dumps(row))
    else:
        print("| " + " | ".join(row) + " |")
        print("|" + "---|" * len(row))
        print("| " + " | ".join(str(v) for v in row.values()) + " |")


if __name__ == "__main__":
    main()
