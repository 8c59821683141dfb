"""The Quick preset with each cell (LSTM, GRU, plain RNN): validation perplexity against training time, and why gates.

    python bench/bench_cells.py [--threads 2] [--cells lstm,gru,rnn] [--save DIR] [--epochs 1]

Trains the Quick preset (1 x 128, adaptive softmax, 6 epochs, an evaluation every 200 steps) once
per cell, one after the other in one process, on the old protocol's split
(``bench.kneser_ney.holdout_dataset``: hamlet, the-tempest and julius-caesar held out; the other
plays train and their last 5% validate), with the same seed, so the cells differ in nothing else.
Prints Markdown:

* per cell: parameters, steps, training time, training words a second, best validation
  perplexity, the held-out plays' perplexity of the model at the end (not the best one), and the
  size of its model-only float16 file (what shipping it as a demo would cost);
* each validation curve: perplexity at each evaluation against seconds of training;
* what the Inside page's "Why gates" tab measures, over many texts rather than one: the gradient
  of a word's loss left about 10 words back (the geometric mean over 8 to 12 words back, and over
  :data:`GRADIENT_TEXTS` texts of 41 held-out words), along ``c`` too for the LSTM, and the memory
  test's "times more likely" at each distance;
* each model's greedy continuation of the recipe's prime texts.

Every figure but the times is deterministic for a given machine (same seed, CPU); the times
depend on the load, so say what else ran when quoting them.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.kneser_ney import DEFAULT_HELDOUT_PLAYS, holdout_dataset
from lstm_core.config import CELL_NAMES, PRESETS, RECIPE_PRIME_TEXTS
from lstm_core.data.dataset import Dataset
from lstm_core.evaluation.scoring import evaluate
from lstm_core.explain.gradients import around, gradient_through_time
from lstm_core.explain.recall import recall_test, usable_names
from lstm_core.model.checkpoint import save_checkpoint
from lstm_core.model.network import LSTMLanguageModel
from lstm_core.sampling.decoding import generate
from lstm_core.sampling.options import SamplingOptions
from lstm_core.training.events import EvalEvent
from lstm_core.training.trainer import Trainer

GRADIENT_TEXTS = 30
"""Texts of the held-out plays the gradient is averaged over (41 words each, one after another)."""
TEXT_WORDS = 41


def train_cell(cell: str, dataset: Dataset, save: Path | None, epochs: int | None) -> dict:
    """One Quick run with ``cell``: its curve, figures and model."""
    curve: list[tuple[float, float]] = []

    def on_event(event: object) -> None:
        if isinstance(event, EvalEvent):
            curve.append((event.elapsed_s, event.perplexity))

    config = PRESETS["quick"].replace(cell=cell, epochs=epochs or PRESETS["quick"].epochs)
    trainer = Trainer(config, dataset, callback=on_event)
    started = time.perf_counter()
    result = trainer.fit()
    wall = time.perf_counter() - started
    checkpoint = result.checkpoint.without_training_state(half=True)
    if save is not None:
        save_checkpoint(checkpoint, save / f"quick-{cell}.pt")
    model = result.checkpoint.build_model()
    test_loss, _ = evaluate(model, dataset.test, config.training_seq_len)
    return {
        "cell": cell,
        "model": model,
        "parameters": model.num_parameters(),
        "steps": result.steps,
        "seconds": result.elapsed_s,
        "wall": wall,
        "words_per_s": result.steps * config.batch_size * config.training_seq_len / result.elapsed_s,
        "best": min(perplexity for _, perplexity in curve),
        "test": math.exp(test_loss),
        "file_mb": len(checkpoint.to_bytes()) / 1e6,
        "curve": curve,
    }


def gradient_left(model: LSTMLanguageModel, dataset: Dataset) -> tuple[float, float | None]:
    """The gradient left about 10 words back, and along c for an LSTM: geometric means over the texts."""
    hidden, cell = [], []
    for text in range(GRADIENT_TEXTS):
        ids = dataset.test[text * TEXT_WORDS : (text + 1) * TEXT_WORDS]
        trace = gradient_through_time(model, ids)
        hidden.append(math.log(around(trace.relative(), 10)))
        if trace.cell is not None:
            cell.append(math.log(around(trace.relative("cell"), 10)))
    return math.exp(sum(hidden) / len(hidden)), math.exp(sum(cell) / len(cell)) if cell else None


def ratio(value: float) -> str:
    return f"1/{1 / value:,.0f}" if value < 0.5 else f"{value:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--cells", default="lstm,gru,rnn", help="comma-separated cells (default lstm,gru,rnn)")
    parser.add_argument("--save", type=Path, help="keep each model (float16, model only) in this folder")
    parser.add_argument("--epochs", type=int, help="fewer epochs than the preset's 6, for a quick check")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.save is not None:
        args.save.mkdir(parents=True, exist_ok=True)
    dataset = holdout_dataset(DEFAULT_HELDOUT_PLAYS, 5, 0.05)
    print(f"{dataset.summary()}; Quick preset; {args.threads} threads; torch {torch.__version__}\n")
    runs = [train_cell(cell, dataset, args.save, args.epochs) for cell in args.cells.split(",")]

    print(
        "| cell | parameters | steps | training time | words/s | best validation ppl "
        "| held-out ppl (last model) | fp16 file |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for run in runs:
        print(
            f"| {CELL_NAMES[run['cell']]} | {run['parameters']:,} | {run['steps']:,} | {run['seconds']:.0f} s | "
            f"{run['words_per_s']:,.0f} | {run['best']:.1f} | {run['test']:.1f} | {run['file_mb']:.1f} MB |"
        )
    print(f"\nTogether, the float16 files take {sum(run['file_mb'] for run in runs):.1f} MB.\n")

    print("Validation perplexity against training time (s: perplexity):\n")
    for run in runs:
        points = ", ".join(f"{seconds:.0f}: {perplexity:.0f}" for seconds, perplexity in run["curve"])
        print(f"- {CELL_NAMES[run['cell']]}: {points}")

    names = usable_names([dataset.vocab])
    print(
        f"\nWhy gates: the gradient left about 10 words back ({GRADIENT_TEXTS} held-out texts of {TEXT_WORDS} words), "
        f"and the memory test ({len(names)} names), times more likely at each distance:\n"
    )
    recalls = {run["cell"]: recall_test(run["model"], dataset.vocab, names) for run in runs}
    distances = next(iter(recalls.values())).distances
    print("| cell | gradient left at ~10 words | along c | " + " | ".join(f"{d} words" for d in distances) + " |")
    print("|---|---|---|" + "---|" * len(distances))
    for run in runs:
        left, along = gradient_left(run["model"], dataset)
        times = " | ".join(f"{t:.2f}" for t in recalls[run["cell"]].times_more_likely)
        print(f"| {CELL_NAMES[run['cell']]} | {ratio(left)} | {ratio(along) if along else '-'} | {times} |")

    print("\nGreedy continuations of the recipe's prime texts (10 words):\n")
    for run in runs:
        for prime in RECIPE_PRIME_TEXTS:
            text = generate(run["model"], dataset.vocab, prime, 10, SamplingOptions()).text
            print(f"- {CELL_NAMES[run['cell']]}: {text}")


if __name__ == "__main__":
    main()
