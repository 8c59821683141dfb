"""Training speed: throughput per output layer and precision, time to a target perplexity, peak memory.

    python bench/bench_train.py throughput          # words per second, medians (a minute or two)
    python bench/bench_train.py target              # cookbook's 10 epochs, then the fast presets
                                                     # race to its final perplexity (about 15 min)
    python bench/bench_train.py memory              # peak resident memory of one training run
    python bench/bench_train.py profile --threads 1  # where a default-preset step's time goes
    python bench/bench_train.py steps --threads 1    # ms per step of the default preset and variants,
                                                     # alternated step by step in one process
    python bench/bench_train.py race --preset cookbook --device cuda --repeats 5
                                                     # the trainer against a plain PyTorch loop

Every run uses the old held-out-plays split (``bench.kneser_ney.holdout_dataset``: hamlet,
the-tempest and julius-caesar never trained on), as the figures in bench/RESULTS.md did.
Prints Markdown tables; nothing here is a test.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# PyTorch's huge pages, as the command line asks for them (lstm_core.system.allocator), before it loads
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

import torch

from bench.kneser_ney import holdout_dataset
from lstm_core.config import PRESETS, Config
from lstm_core.data.batching import batchify, windows
from lstm_core.data.dataset import Dataset
from lstm_core.model.cells import layer_weights as layer_weights_of
from lstm_core.model.network import LSTMLanguageModel, State, choose_cutoffs, detach_state
from lstm_core.system.runtime import autocast, resolve_precision
from lstm_core.training.events import EvalEvent, SampleEvent, StepEvent
from lstm_core.training.trainer import Trainer

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
from bench.kneser_ney import holdout_dataset
from lstm_core.config import preset
from lstm_core.training.trainer import Trainer
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


def _phases(trainer: Trainer, inputs: torch.Tensor, targets: torch.Tensor, state: State | None) -> tuple:
    """One training step as the trainer takes it, timed by phase: (forward, backward, clip, optimizer, state)."""
    marks = [time.perf_counter()]
    with autocast(trainer.device, trainer.dtype):
        objective, loss, new_state = trainer._objective(inputs, targets, state)
    marks.append(time.perf_counter())
    trainer.optimizer.zero_grad(set_to_none=True)
    objective.backward()
    marks.append(time.perf_counter())
    torch.nn.utils.clip_grad_norm_(trainer.model.parameters(), trainer.config.grad_clip)
    marks.append(time.perf_counter())
    trainer.optimizer.step()
    if trainer.average is not None:
        trainer.average.update()
    float(loss.detach())  # the trainer reads the loss back every step on the CPU
    marks.append(time.perf_counter())
    return tuple(b - a for a, b in itertools.pairwise(marks)), detach_state(new_state)


def profile(args: argparse.Namespace) -> None:
    """The default preset's training step by phase, then PyTorch's profile of its operators."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    torch.set_num_threads(args.threads[0])
    dataset = holdout_dataset(HELD_OUT, 5, 0.05)
    config = PRESETS[args.preset]
    trainer = Trainer(config.replace(device="cpu"), dataset)
    trainer.model.train()
    batches = windows(trainer.train_streams, config.training_seq_len)
    state, times = None, []
    for index in range(args.steps + 3):
        inputs, targets = next(batches)
        phases, state = _phases(trainer, inputs, targets, state)
        if index >= 3:
            times.append(phases)
    names = ("forward and loss", "backward", "gradient clipping", "optimizer (and averaging)")
    medians = [statistics.median(column) for column in zip(*times, strict=True)]
    print(f"{args.preset} preset, {args.threads[0]} thread(s), median of {args.steps} steps (after 3 warm-up):")
    print("| phase | ms per step | share |")
    print("|---|---|---|")
    for name, value in zip(names, medians, strict=True):
        print(f"| {name} | {value * 1000:.1f} | {value / sum(medians):.0%} |")
    print(f"| total | {sum(medians) * 1000:.1f} | |")
    with torch_profile(activities=[ProfilerActivity.CPU], record_shapes=True) as recorded:
        for _ in range(5):
            inputs, targets = next(batches)
            _, state = _phases(trainer, inputs, targets, state)
    print(recorded.key_averages(group_by_input_shape=True).table(sort_by="self_cpu_time_total", row_limit=25))


def _per_cluster_slices(model: LSTMLanguageModel) -> None:
    """Make ``model``'s adaptive softmax slice its weight once per cluster, as it did before it split it."""
    adaptive = model.adaptive
    bounds = adaptive.bounds
    adaptive._clusters = (
        lambda: [  # type: ignore[method-assign]
            (adaptive.weight[low:high], adaptive.bias[low:high]) for low, high in itertools.pairwise(bounds)
        ]
    )


def _compiled(trainer: Trainer) -> None:
    """The step's forward pass and loss compiled by TorchDynamo and Inductor (the first steps compile)."""
    trainer._objective = torch.compile(trainer._objective)


def _unfused(trainer: Trainer) -> None:
    trainer.optimizer = torch.optim.Adam(trainer.model.parameters(), lr=trainer.config.learning_rate)


def _bernoulli_masks(trainer: Trainer) -> None:
    """Make the model draw its dropout and weight-drop masks with ``bernoulli_``, as it did before
    :func:`lstm_core.model.network.keep_mask` (the same masks in distribution, drawn another way)."""
    model = trainer.model

    def layer_weights(layer: int) -> list[torch.Tensor]:
        weights = layer_weights_of(model.recurrent, layer)
        weights[1] = torch.nn.functional.dropout(weights[1], model.weight_drop, training=True)
        return weights

    def drop(x: torch.Tensor, p: float | None = None) -> torch.Tensor:
        p = model.dropout.p if p is None else p
        return x * x.new_empty(x.size(0), 1, x.size(2)).bernoulli_(1.0 - p).div_(1.0 - p) if p > 0 else x

    model._layer_weights = layer_weights  # type: ignore[method-assign]
    model._drop = drop  # type: ignore[method-assign]


STEP_VARIANTS: dict[str, tuple[dict, tuple]] = {
    # name: (config changes to the preset, tweaks of the trainer); "shares" in the changes are the
    # adaptive softmax's cluster shares (choose_cutoffs), not a config field. The first is the
    # preset as it is; each other row changes one thing of it.
    "the preset": ({}, ()),
    "masks drawn with bernoulli_ (before)": ({}, (_bernoulli_masks,)),
    "Adam unfused": ({}, (_unfused,)),
    "per-cluster weight slices": ({}, (lambda t: _per_cluster_slices(t.model),)),
    "without weight drop": ({"weight_drop": 0.0}, ()),
    "without AR and TAR": ({"activation_reg": 0.0, "temporal_reg": 0.0}, ()),
    "without locked dropout": ({"locked_dropout": False}, ()),
    "with the averaging running (the preset starts it halfway)": ({"average_start": 0.0}, ()),
    "3 tails (0.75, 0.9, 0.97)": ({"shares": (0.75, 0.9, 0.97)}, ()),
    "torch.compile of the forward and loss": ({}, (_compiled,)),
}


def step_times(args: argparse.Namespace) -> None:
    """Milliseconds per training step of each variant, the variants taking turns step by step.

    Taking turns makes the comparison fair on a machine whose speed drifts (other work, a busy
    host): every variant sees the same conditions, and each figure is a median.
    """
    torch.set_num_threads(args.threads[0])
    dataset = holdout_dataset(HELD_OUT, 5, 0.05)
    base = PRESETS[args.preset]
    names = [name for name in STEP_VARIANTS if not args.only or any(key in name for key in args.only.split(","))]
    trainers, states, batches, times = {}, {}, {}, {}
    for name in names:
        changes, tweaks = STEP_VARIANTS[name]
        changes = dict(changes)
        shares = changes.pop("shares", (0.8, 0.95))
        cutoffs = choose_cutoffs(dataset.vocab.counts, shares)
        with mock.patch("lstm_core.training.trainer.choose_cutoffs", lambda counts, cutoffs=cutoffs: cutoffs):
            trainer = Trainer(base.replace(device="cpu", **changes), dataset)
        for tweak in tweaks:
            tweak(trainer)
        trainer.model.train()
        trainers[name], states[name], times[name] = trainer, None, []
        batches[name] = windows(trainer.train_streams, trainer.config.training_seq_len)
    cpu_times: dict[str, list[float]] = {name: [] for name in names}
    load = os.getloadavg()[0]
    for index in range(args.steps + 3):
        for name in names[index % len(names) :] + names[: index % len(names)]:  # the order rotates
            inputs, targets = next(batches[name])
            cpu_started = time.process_time()
            phases, states[name] = _phases(trainers[name], inputs, targets, states[name])
            if index >= 3:
                times[name].append(sum(phases))
                cpu_times[name].append(time.process_time() - cpu_started)
    first, first_cpu = statistics.median(times[names[0]]), statistics.median(cpu_times[names[0]])
    print(
        f"{args.preset} preset, {args.threads[0]} thread(s), median of {args.steps} steps each, alternated; "
        f"load average {load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end. CPU time is the process's "
        "(all its threads): on a busy machine wall time also counts the waits for a core."
    )
    print("| variant | ms per step (wall) | steps/s (wall) | vs the first | CPU ms per step | vs the first |")
    print("|---|---|---|---|---|---|")
    for name in names:
        value, cpu = statistics.median(times[name]), statistics.median(cpu_times[name])
        print(
            f"| {name} | {value * 1000:.1f} | {1 / value:.2f} | {value / first:.2f}x | {cpu * 1000:.1f} | "
            f"{cpu / first_cpu:.2f}x |"
        )


def _plain_loop(config: Config, dataset: Dataset, device: torch.device, steps: int) -> float:
    """Words per second of the training loop a PyTorch user would write for ``config``'s model.

    ``nn.Embedding``, ``nn.LSTM``, ``nn.Linear`` and cross-entropy (the full softmax), Adam with
    PyTorch's default implementation, the gradient norm clipped, and the loss read with
    ``.item()`` every step to follow it: on a GPU, that read waits for the step to finish.
    """
    torch.manual_seed(0)
    vocab_size = len(dataset.vocab)
    embedding = torch.nn.Embedding(vocab_size, config.embedding_dim).to(device)
    lstm = torch.nn.LSTM(config.embedding_dim, config.rnn_size, config.num_layers, batch_first=True).to(device)
    decoder = torch.nn.Linear(config.rnn_size, vocab_size).to(device)
    parameters = [*embedding.parameters(), *lstm.parameters(), *decoder.parameters()]
    optimizer = torch.optim.Adam(parameters, lr=config.learning_rate)
    streams = batchify(dataset.train, config.batch_size, config.training_seq_len).to(device)
    dtype = resolve_precision(config.precision, device)
    state, total = None, 0.0
    batches = windows(streams, config.training_seq_len)
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(steps):
        inputs, targets = next(batches)
        with autocast(device, dtype):
            output, state = lstm(embedding(inputs), state)
            loss = torch.nn.functional.cross_entropy(decoder(output).flatten(0, 1).float(), targets.flatten())
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, config.grad_clip)
        optimizer.step()
        state = detach_state(state)
        total += loss.item()
    return steps * config.batch_size * config.training_seq_len / (time.perf_counter() - started)


def _trainer_words_per_s(config: Config, dataset: Dataset) -> tuple[float, int]:
    """The trainer's own words per second over its first epoch's steps (before the epoch's evaluation)."""
    reported: list[StepEvent] = []
    trainer = Trainer(config.replace(epochs=1, eval_every=0, save_every=0), dataset, callback=_steps_into(reported))
    trainer.fit()
    return reported[-1].tokens_per_s, reported[-1].step


def _steps_into(reported: list) -> Callable[[object], None]:
    def on_event(event: object) -> None:
        if isinstance(event, StepEvent) and event.step < event.total_steps:
            reported.append(event)

    return on_event


def race(args: argparse.Namespace) -> None:
    """The trainer against a plain PyTorch loop, same model and batches, taking turns.

    On a GPU the trainer reads the loss back every ``CUDA_SYNC_EVERY`` steps and its optimizer
    is the fused one; the plain loop reads it every step. On the CPU both read every step.
    """
    torch.set_num_threads(args.threads[0])
    device = torch.device(args.device)
    dataset = holdout_dataset(HELD_OUT, 5, 0.05)
    config = PRESETS[args.preset].replace(device=args.device)
    if config.output_layer != "full":
        raise SystemExit("race: the plain loop has the full softmax; choose a preset with it (cookbook)")
    _trainer_words_per_s(config, dataset)  # warm-up: kernels, cuDNN's plans, the allocator
    ours, plain = [], []
    for _ in range(args.repeats):
        words_per_s, steps = _trainer_words_per_s(config, dataset)
        ours.append(words_per_s)
        plain.append(_plain_loop(config, dataset, device, steps))
    print(f"{args.preset} preset on {args.device}, {args.threads[0]} thread(s), median of {args.repeats} runs:")
    print("| loop | words/s | vs the plain loop |")
    print("|---|---|---|")
    base = statistics.median(plain)
    print(f"| plain PyTorch (loss read every step) | {base:,.0f} | 1.00x |")
    print(f"| the trainer | {statistics.median(ours):,.0f} | {statistics.median(ours) / base:.2f}x |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=("throughput", "target", "memory", "profile", "steps", "race"))
    parser.add_argument("--threads", default="2", help="comma-separated thread counts (throughput) or one")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--preset", choices=tuple(PRESETS), default="default", help="profile, steps")
    parser.add_argument("--steps", type=int, default=20, help="profile, steps: steps measured per variant")
    parser.add_argument("--only", default="", help="steps: comma-separated parts of the variants' names to run")
    parser.add_argument("--device", default="cpu", help="race: cpu or cuda")
    args = parser.parse_args()
    args.threads = [int(t) for t in args.threads.split(",")]
    commands = {"throughput": throughput, "target": time_to_target, "memory": memory}
    commands.update(profile=profile, steps=step_times, race=race)
    commands[args.what](args)


if __name__ == "__main__":
    main()
