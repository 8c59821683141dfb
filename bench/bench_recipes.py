"""Training recipes compared at a fixed number of steps: held-out perplexity, with weight averages kept along.

    python bench/bench_recipes.py --preset default --threads 1
    python bench/bench_recipes.py --preset default --set locked_dropout=True --set weight_drop=0.3 --threads 1
    python bench/bench_recipes.py --preset default --averages uniform:0.5,uniform:0.25,ema:0.999:0.5
    python bench/bench_recipes.py --preset default --shares 0.7,0.9,0.97    # other adaptive clusters

A recipe trains its preset's epochs (the ``default`` preset: 20 epochs, 3,240 steps, 9.3 minutes
on the 2-core development machine with 2 threads) on the old quality protocol's split
(``bench.kneser_ney.holdout_dataset``: hamlet, the-tempest and julius-caesar held out, plays that
also chose the settings; ``bench/bench_quality.py`` now measures by folds), so recipes are
compared at the same number of steps whatever the machine's load: a time budget measured on a
busy machine would compare the load, not the recipes.

Averaging the weights never changes training (it only changes what is validated and saved), so
one run also keeps every average asked for with ``--averages`` (``uniform:START`` or
``ema:DECAY:START``, START the share of the steps after which the average begins) and scores
each on the validation text and on the held-out plays. Prints one JSON line per model: the
raw weights at the end, the best checkpoint (the config's own averaging, if any, included), and
each extra average; the Kneser-Ney 5-gram's test perplexity on the same split is 241.82.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# PyTorch's huge pages, as the command line asks for them (lstm_core.system.allocator), before it loads
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

import torch

from bench.bench_quality import parse_value
from bench.kneser_ney import DEFAULT_HELDOUT_PLAYS, holdout_dataset
from lstm_core.config import PRESETS, preset
from lstm_core.evaluation.scoring import evaluate
from lstm_core.model.checkpoint import load_checkpoint
from lstm_core.model.network import choose_cutoffs
from lstm_core.training.averaging import WeightAverage
from lstm_core.training.events import StepEvent
from lstm_core.training.trainer import Trainer

KNESER_NEY_PERPLEXITY = 241.82
"""The modified Kneser-Ney 5-gram's perplexity on the old protocol's held-out plays (``bench/RESULTS.md``)."""


def parse_average(spec: str) -> tuple[str, float, float]:
    """``uniform:0.5`` -> ("uniform", 0.999, 0.5); ``ema:0.998:0.25`` -> ("ema", 0.998, 0.25)."""
    parts = spec.split(":")
    if parts[0] == "uniform" and len(parts) == 2:
        return "uniform", 0.999, float(parts[1])
    if parts[0] == "ema" and len(parts) == 3:
        return "ema", float(parts[1]), float(parts[2])
    raise SystemExit(f"--averages: {spec!r} is neither uniform:START nor ema:DECAY:START")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=tuple(PRESETS), default="default")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field")
    parser.add_argument("--averages", default="", help="extra weight averages to keep along, comma-separated")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--name", default="", help="a label for the output lines")
    parser.add_argument(
        "--shares", default="", help="the adaptive softmax's cluster shares (choose_cutoffs), e.g. 0.7,0.9,0.97"
    )
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    changes = {key: parse_value(value) for key, value in (item.split("=", 1) for item in args.set)}
    config = preset(args.preset, **changes).replace(device="cpu")
    dataset = holdout_dataset(list(DEFAULT_HELDOUT_PLAYS), config.min_word_freq, config.valid_fraction)
    load_before = os.getloadavg()[0]

    shares = tuple(float(share) for share in args.shares.split(",")) if args.shares else (0.8, 0.95)
    cutoffs = choose_cutoffs(dataset.vocab.counts, shares)
    with tempfile.TemporaryDirectory() as scratch:
        with mock.patch("lstm_core.training.trainer.choose_cutoffs", lambda counts: cutoffs):
            trainer = Trainer(config, dataset, out_dir=scratch)
        averages = {}
        for spec in filter(None, args.averages.split(",")):
            kind, decay, start = parse_average(spec)
            averages[spec] = (WeightAverage(trainer.model, kind, decay), int(start * trainer.total_steps))

        def on_event(event: object) -> None:
            # On the CPU a step is reported right after it, with the raw weights in the model.
            if isinstance(event, StepEvent):
                for average, start in averages.values():
                    if event.step > start:
                        average.update()

        trainer.callback = on_event
        started = time.perf_counter()
        result = trainer.fit()
        seconds = time.perf_counter() - started
        best = load_checkpoint(Path(scratch) / "best.pt").build_model()
    models = {"raw weights at the end": trainer.model, "best checkpoint": best}
    models["end (the config's model)"] = result.checkpoint.build_model()
    for spec, (average, _) in averages.items():
        models[f"average {spec}"] = trainer.snapshot().train(False)
        models[f"average {spec}"].load_state_dict(average.state_dict())
    common = {
        "name": args.name,
        "cutoffs": cutoffs,
        "preset": args.preset,
        "changes": changes,
        "steps": result.steps,
        "minutes": round(seconds / 60, 2),
        "steps_per_s": round(result.steps / seconds, 3),
        "threads": args.threads,
        "load": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }
    for label, model in models.items():
        valid, _ = evaluate(model, dataset.valid, config.training_seq_len)
        test, _ = evaluate(model, dataset.test, config.training_seq_len)
        row = {
            **common,
            "model": label,
            "valid_ppl": round(math.exp(valid), 2),
            "test_ppl": round(math.exp(test), 2),
            "below_kn": round(1 - math.exp(test) / KNESER_NEY_PERPLEXITY, 4),
        }
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
