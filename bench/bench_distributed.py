"""Training throughput on one process and on several (torchrun, DistributedDataParallel).

    python bench/bench_distributed.py                          # this CPU: 1 and 2 processes (a few minutes)
    python bench/bench_distributed.py --device cuda --processes 1,2,4,8 --threads 4    # a multi-GPU machine

Each measurement is its own process tree: one process (``worker``), or torchrun starting
``--nproc_per_node`` of them. They train a preset on the same text with the same global batch
(each of N processes trains ``batch_size / N`` of the rows, as ``train`` does under torchrun),
and rank 0 times ``--steps`` steps after ``--warmup``: words per second of the whole batch.
The exact commands are printed, so a figure can be rerun by hand. Prints a Markdown table;
nothing here is a test.

On a 2-core CPU, two processes of one thread use the same two cores that one process with two
threads uses, and add the gradient all-reduce on top: expect no gain there. The scaling this
is for needs a core or a GPU per process.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from lstm_core.config import PRESETS
from lstm_core.data.dataset import Dataset, prepare
from lstm_core.system.runtime import resolve_device
from lstm_core.text.corpus import bundled_plays
from lstm_core.training import distributed as distributed
from lstm_core.training.distributed import DistributedContext
from lstm_core.training.events import StepEvent
from lstm_core.training.trainer import Trainer

ROOT = Path(__file__).resolve().parent.parent
PLAYS = ["hamlet", "king-lear", "othello", "macbeth", "the-tempest", "twelfth-night", "julius-caesar"]
"""About 150,000 training words: 60-odd steps of a 64 x 35 batch per epoch, more than a timing needs."""


def bench_dataset() -> Dataset:
    return prepare(bundled_plays(PLAYS).text, min_word_freq=5, fractions=(0.98, 0.02, 0.0), name="seven plays")


def worker(args: argparse.Namespace) -> None:
    """One process of a measurement (rank 0 prints the result as JSON)."""
    torch.set_num_threads(args.threads)
    world = distributed.start()
    world = world.on_device(args.device) if world.size > 1 else DistributedContext.single(resolve_device(args.device))
    changes = {"device": args.device, "epochs": 50, "eval_every": 0, "save_every": 0}
    if args.batch_size:
        changes["batch_size"] = args.batch_size
    config = PRESETS[args.preset].replace(**changes)
    marks: dict[str, tuple[int, float]] = {}
    trainer: Trainer | None = None

    def on_event(event: object) -> None:
        # On a GPU steps are reported in groups (CUDA_SYNC_EVERY), each after the device caught up.
        if not isinstance(event, StepEvent):
            return
        now = time.perf_counter()
        if event.step >= args.warmup and "start" not in marks:
            marks["start"] = (event.step, now)
        elif event.step >= args.warmup + args.steps and "end" not in marks:
            marks["end"] = (event.step, now)
            trainer.request_stop()  # type: ignore[union-attr]

    trainer = Trainer(config, bench_dataset(), callback=on_event, distributed=world)
    trainer.fit()
    if world.is_main:
        (first, started), (last, ended) = marks["start"], marks["end"]
        words = (last - first) * config.batch_size * config.training_seq_len
        print(
            json.dumps({"words_per_s": words / (ended - started), "steps": last - first, "device": str(world.device)})
        )
    world.close()


def command(args: argparse.Namespace, processes: int, threads: int) -> list[str]:
    script = str(Path(__file__).resolve())
    flags = ["worker", "--preset", args.preset, "--device", args.device, "--threads", str(threads)]
    flags += ["--warmup", str(args.warmup), "--steps", str(args.steps)]
    if args.batch_size:
        flags += ["--batch-size", str(args.batch_size)]
    if processes == 1:
        return [sys.executable, script, *flags]
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={processes}",
        script,
        *flags,
    ]


def measure(args: argparse.Namespace) -> None:
    cores = os.cpu_count() or 1
    rows = []
    settings = [(processes, args.threads) for processes in args.processes]
    if args.device == "cpu" and 1 in args.processes:
        # The fair single-process baseline on the CPU uses every core the processes share.
        settings.insert(args.processes.index(1) + 1, (1, args.threads * max(args.processes)))
    for processes, threads in settings:
        argv = command(args, processes, threads)
        print("$ python " + " ".join(argv[1:]), file=sys.stderr)
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        runs = []
        for _ in range(args.repeats):
            done = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=ROOT, check=False)
            if done.returncode != 0:
                sys.exit(f"the measurement failed:\n{done.stderr[-3000:]}")
            runs.append(json.loads(done.stdout.strip().splitlines()[-1])["words_per_s"])
        runs.sort()
        rows.append((processes, threads, runs[len(runs) // 2]))
    base = rows[0][2]
    config = PRESETS[args.preset]
    batch = args.batch_size or config.batch_size
    print(
        f"`{args.preset}` preset, global batch {batch} x {config.training_seq_len}, on {args.device} "
        f"({cores} cores here); median of {args.repeats} runs of {args.steps} steps after {args.warmup}."
    )
    print("| processes | threads each | words/s | vs 1 process |")
    print("|---|---|---|---|")
    for processes, threads, value in rows:
        print(f"| {processes} | {threads} | {value:,.0f} | {value / base:.2f}x |")
    if args.device == "cpu" and cores <= max(args.processes):
        print(
            f"\nThis machine has {cores} cores, so this cannot show scaling: {max(args.processes)} processes share "
            f"the cores that one process with {args.threads * max(args.processes)} threads uses, and add a gradient "
            "all-reduce every step. Compare those two rows; expect little gain or a loss."
        )
    print("\nOn a machine with N GPUs (one process per GPU; the global batch is split among them):")
    print("    python bench/bench_distributed.py --device cuda --processes 1,2,4,8 --threads 4 --warmup 40 --steps 200")
    print("which runs, for each N:")
    print(
        "    torchrun --standalone --nproc_per_node=N bench/bench_distributed.py worker --preset default "
        "--device cuda --threads 4 --warmup 40 --steps 200"
    )
    print("(add --batch-size 64xN to keep each GPU's share of the batch constant: weak instead of strong scaling).")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", nargs="?", choices=("measure", "worker"), default="measure")
    parser.add_argument("--preset", choices=tuple(PRESETS), default="default")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (each process takes cuda:LOCAL_RANK)")
    parser.add_argument("--processes", default="1,2", help="comma-separated process counts")
    parser.add_argument("--threads", type=int, default=1, help="PyTorch threads per process")
    parser.add_argument("--batch-size", type=int, help="the global batch (default: the preset's)")
    parser.add_argument("--warmup", type=int, default=20, help="steps before the clock starts")
    parser.add_argument("--steps", type=int, default=40, help="steps timed (a multiple of 20 suits a GPU)")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    args.processes = [int(p) for p in str(args.processes).split(",")]
    if args.mode == "worker":
        worker(args)
    else:
        measure(args)


if __name__ == "__main__":
    main()
