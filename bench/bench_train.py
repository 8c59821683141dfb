"""Training speed: throughput per output layer and precision, time to a target perplexity, peak memory.

    python bench/bench_train.py throughput          # words per second, medians (a minute or two)
    python bench/bench_train.py target              # cookbook's 10 epochs, then the fast presets
                                                     # race to its final perplexity (about 15 min)
    python bench/bench_train.py memory              # peak resident memory of one training run

Every run uses the held-out-plays split of bench/bench_quality.py (hamlet, the-tempest and
julius-caesar never trained on), so the figures are comparable with the quality benchmark.
Prints Markdown tables; nothing here is a test.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from bench.bench_quality import holdout_dataset
from lstm_core.batching import batchify, windows
from lstm_core.config import PRESETS, Config
from lstm_core.data import Dataset
from lstm_core.model import LSTMLanguageModel, choose_cutoffs, detach_state
from lstm_core.runtime import autocast, resolve_precision
from lstm_core.trainer import EvalEvent, SampleEvent, Trainer

HELD_OUT = ["hamlet", "the-tempest", "julius-caesar"]


def step_throughput(config: Config, dataset: Dataset, steps: int = 12, warmup: int = 3) -> float:
    """Median words per second of training steps (forward, backward, clip, Adam) for ``config``."""
    torch.manual_seed(0)
    device = torch.device("cpu")
    dtype = resolve_precision(config.precision, device)
    model = LSTMLanguageModel(len(dataset.vocab), config, choose_cutoffs(dataset.vocab.counts))
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    streams = batchify(dataset.train, config.batch_size, config.training_seq_len)
    times, state = [], None
    for index, (inputs, targets) in enumerate(windows(streams, config.training_seq_len)):
        if index == warmup + steps:
            break
        started = time.perf_counter()
        with autocast(device, dtype):
            hidden, state = model(inputs, state)
            loss = model.loss(hidden, targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        state = detach_state(state)
        if index >= warmup:
            times.append(time.perf_counter() - started)
    return config.batch_size * config.training_seq_len / statistics.median(times)


def throughput(args: argparse.Namespace) -> None:
    dataset = holdout_dataset(HELD_OUT, 5, 0.05)
    rows = []
    cookbook = PRESETS["cookbook"]
    variants = [
        ("cookbook model, full softmax, fp32 (the recipe)", cookbook),
        ("cookbook model, full softmax, bf16", cookbook.replace(precision="bf16")),
        ("cookbook model, adaptive softmax, fp32", cookbook.replace(output_layer="adaptive")),
        ("cookbook model, adaptive softmax, bf16", cookbook.replace(output_layer="adaptive", precision="bf16")),
        ("quick preset (adaptive, bf16, batch 64 x 35)", PRESETS["quick"].replace(precision="bf16")),
        ("quick preset in fp32", PRESETS["quick"].replace(precision="fp32")),
        ("default preset (1 x 512, tied, adaptive, bf16)", PRESETS["default"].replace(precision="bf16")),
        ("default preset in fp32", PRESETS["default"].replace(precision="fp32")),
    ]
    for threads in args.threads:
        torch.set_num_threads(threads)
        baseline = None
        for name, config in variants:
            runs = [step_throughput(config, dataset) for _ in range(args.repeats)]
            value = statistics.median(runs)
            baseline = baseline or value
            rows.append((threads, name, value, value / baseline))
    print(f"Training throughput, words per second: median of {args.repeats} runs of 12 steps each (after 3 warm-up).")
    print("| threads | setting | words/s | vs the recipe |")
    print("|---|---|---|---|")
    for threads, name, value, ratio in rows:
        print(f"| {threads} | {name} | {value:,.0f} | {ratio:.1f}x |")


def time_to_target(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads[0])
    dataset = holdout_dataset(HELD_OUT, 5, 0.05)

    def race(config: Config, target: float | None, limit: float | None) -> dict:
        started = time.perf_counter()
        reached: list[float] = []
        best = [float("inf")]
        samples: dict[str, str] = {}

        def on_event(event: object) -> None:
            if isinstance(event, SampleEvent):
                samples.update(event.samples)
            if isinstance(event, EvalEvent):
                best[0] = min(best[0], event.perplexity)
                if target is not None and not reached and event.perplexity <= target:
                    reached.append(time.perf_counter() - started)

        trainer = Trainer(config, dataset, callback=on_event, time_limit_s=limit)
        result = trainer.fit()
        return {
            "wall_s": time.perf_counter() - started,
            "reached_s": reached[0] if reached else None,
            "best_ppl": best[0],
            "epochs": result.steps / trainer.steps_per_epoch,
            "samples": samples,
        }

    cookbook = race(PRESETS["cookbook"], None, None)
    finals = {"cookbook": cookbook["samples"]}
    target, budget = cookbook["best_ppl"], cookbook["wall_s"]
    print(
        f"The cookbook preset: {cookbook['epochs']:.0f} epochs in {budget:.0f} s, best validation perplexity "
        f"{target:.1f} (the target); {args.threads[0]} threads."
    )
    print("| preset | reached the target after | share of the cookbook's time | best perplexity (in its own run) |")
    print("|---|---|---|---|")
    print(f"| cookbook | {budget:.0f} s | 100% | {target:.1f} |")
    for name in ("quick", "default"):
        config = PRESETS[name].replace(eval_every=25 if name == "quick" else 50)
        row = race(config, target, budget)
        finals[name] = row["samples"]
        reached = row["reached_s"]
        share = f"{reached / budget:.1%}" if reached is not None else "not reached"
        when = f"{reached:.0f} s" if reached is not None else "-"
        print(f"| {name} (evaluating every {config.eval_every} steps) | {when} | {share} | {row['best_ppl']:.1f} |")
    print()
    print("Greedy continuations of the recipe's prime texts at each run's last evaluation:")
    for name, samples in finals.items():
        for text in samples.values():
            print(f"- {name}: {text}")


MEMORY_CHILD = """
import resource, sys, json, torch
sys.path.insert(0, {root!r})
from bench.bench_quality import holdout_dataset
from lstm_core.config import preset
from lstm_core.trainer import Trainer
torch.set_num_threads(1)
dataset = holdout_dataset({held_out!r}, 5, 0.05)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
Trainer(preset({name!r}, epochs=1), dataset, time_limit_s={seconds}).fit()
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"data_mb": before / 1024, "peak_mb": after / 1024}}))
"""


def memory(args: argparse.Namespace) -> None:
    root = str(Path(__file__).resolve().parent.parent)
    print("Peak resident memory of one process that prepares the plays and trains for 20 s (1 thread).")
    print("| preset | after preparing the data | peak while training |")
    print("|---|---|---|")
    for name in PRESETS:
        code = MEMORY_CHILD.format(root=root, held_out=HELD_OUT, name=name, seconds=20)
        output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        figures = json.loads(output.strip().splitlines()[-1])
        print(f"| {name} | {figures['data_mb']:.0f} MB | {figures['peak_mb']:.0f} MB |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=("throughput", "target", "memory"))
    parser.add_argument("--threads", default="2", help="comma-separated thread counts (throughput) or one")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    args.threads = [int(t) for t in args.threads.split(",")]
    {"throughput": throughput, "target": time_to_target, "memory": memory}[args.what](args)


if __name__ == "__main__":
    main()
