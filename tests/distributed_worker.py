"""Trainer scenarios on a real process group, run by tests/test_distributed.py under torchrun.

    python -m torch.distributed.run --nproc_per_node=2 --standalone tests/distributed_worker.py OUT [DEVICE]

Every rank runs the same scenarios in the same order (they are collective) and writes what it
saw to ``OUT/rank-<r>.json``; rank 0 also saves a checkpoint of a run stopped mid-epoch to
``OUT/stopped.pt``. If ``OUT/single.pt`` exists (a single-process checkpoint the test made), the
ranks resume it. The assertions live in the test, which compares with single-process runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from lstm_core.config import Config
from lstm_core.data.dataset import Dataset, prepare
from lstm_core.model.checkpoint import load_checkpoint, save_checkpoint
from lstm_core.training import distributed as distributed
from lstm_core.training.events import StepEvent
from lstm_core.training.trainer import Trainer
from tests.conftest import TINY_CONFIG, TINY_TEXT

ROOT = Path(__file__).resolve().parent.parent
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone"]


def torchrun_env() -> dict[str, str]:
    """One thread per process (two processes on a 2-core machine), and the project on the path."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def full_float32() -> None:
    """No TF32 on a GPU: the comparisons with one process are of float32 rounding, not TF32's."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


def launch(out: Path, device: str = "cpu") -> subprocess.CompletedProcess:
    """Run this script on two processes with torchrun; the reports land in ``out``."""
    return subprocess.run(
        [*TORCHRUN, str(Path(__file__)), str(out), device],
        capture_output=True,
        text=True,
        timeout=240,
        env=torchrun_env(),
        cwd=out,
    )


def worker_config() -> Config:
    """conftest's tiny config on the CPU: 4 streams (2 per rank), 34 steps an epoch, an evaluation every 10."""
    return TINY_CONFIG.replace(device="cpu")


def worker_dataset() -> Dataset:
    """conftest's tiny dataset; its 140 validation words make 15 rows, split 7 and 8 between 2 ranks."""
    return prepare(TINY_TEXT, min_word_freq=0, fractions=(0.8, 0.1, 0.1), name="sonnet 18")


def main() -> None:
    out = Path(sys.argv[1])
    device = sys.argv[2] if len(sys.argv) > 2 else "cpu"
    torch.set_num_threads(1)
    full_float32()
    world = distributed.start(timeout_s=60)
    assert world.size > 1, "run under torchrun with two processes or more"
    config = worker_config().replace(device=device)
    world = world.on_device(config.device)
    dataset = worker_dataset()
    report: dict = {"rank": world.rank, "size": world.size, "device": str(world.device), "backend": world.backend}

    def losses(result) -> list[float]:
        return [record["loss"] for record in result.checkpoint.history["steps"]]

    def stop_at(trainer: Trainer, step: int) -> None:
        # Only rank 0 gets callbacks: the other ranks learn of the stop through the trainer's agreement.
        def callback(event) -> None:
            if isinstance(event, StepEvent) and event.step == step:
                trainer.request_stop()

        trainer.callback = callback

    # 1. The whole run: full softmax, no dropout.
    trainer = Trainer(config, dataset, distributed=world)
    report["rows"] = trainer.train_streams.cpu().tolist()
    result = trainer.fit()
    report["full"] = {
        "losses": losses(result),
        "val_losses": [e["val_loss"] for e in result.checkpoint.history["evals"]],
        "steps": result.steps,
    }

    # 2. The adaptive softmax: a rank's words may miss a tail cluster in a step.
    adaptive = Trainer(config.replace(output_layer="adaptive", epochs=1), dataset, distributed=world).fit()
    report["adaptive"] = losses(adaptive)

    # 3. A stop asked of rank 0 alone, mid-epoch; the checkpoint holds the whole batch's carried state.
    trainer = Trainer(config, dataset, distributed=world)
    stop_at(trainer, 5)
    result = trainer.fit()
    report["stopped"] = {"reason": result.reason, "steps": result.steps, "losses": losses(result)}
    if world.is_main:
        save_checkpoint(result.checkpoint, out / "stopped.pt")

    # 4. Dropout: stopped and resumed on as many ranks, against the run without a stop.
    dropout = config.replace(dropout=0.3, num_layers=2)
    whole = Trainer(dropout, dataset, distributed=world).fit()
    first = Trainer(dropout, dataset, distributed=world)
    stop_at(first, 7)
    part = first.fit()
    second = Trainer(dropout, dataset, distributed=world, resume=part.checkpoint).fit()
    report["dropout"] = {
        "whole": losses(whole),
        "resumed": losses(second),
        "stopped_at": part.steps,
        "max_weight_difference": max(
            float((second.checkpoint.weights[name] - tensor).abs().max())
            for name, tensor in whole.checkpoint.weights.items()
        ),
    }

    # 5. The time limit: rank 0's clock decides, and every rank ends at the same step.
    timed = Trainer(config, dataset, distributed=world, time_limit_s=0.0).fit()
    report["time_limit"] = {"reason": timed.reason, "steps": timed.steps}

    # 6. A single-process checkpoint resumed on several ranks.
    single = out / "single.pt"
    if single.exists():
        resumed = Trainer(config, dataset, distributed=world, resume=load_checkpoint(single)).fit()
        report["from_single"] = {"start": load_checkpoint(single).step, "losses": losses(resumed)}

    (out / f"rank-{world.rank}.json").write_text(json.dumps(report), encoding="utf-8")
    world.close()


if __name__ == "__main__":
    main()
