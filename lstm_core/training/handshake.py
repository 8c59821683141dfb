"""How the ranks of a torchrun run agree on what to train: rank 0 prepares the run and sends it.

Rank 0 alone reads the text (or the resumed run) and owns the run folder, exactly as a single
process does; it then sends the others the run's setup (:class:`~lstm_core.runs.setup.RunSetup`:
the config, the prepared data and the checkpoint to resume) over the process group
(:meth:`~lstm_core.training.distributed.DistributedContext.broadcast_bytes`). So the others open
no file and need no copy of the text, on this machine or another. The setup travels as plain data
and tensors, read back with ``weights_only``; a rank 0 that cannot prepare the run sends a
"failed" setup, so the others end quietly while it says why.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from lstm_core.config import Config
from lstm_core.runs.setup import RunSetup

if TYPE_CHECKING:
    from lstm_core.training.distributed import DistributedContext

SETUP_FORMAT = "lstm-playhouse-distributed-setup"


def setup_bytes(setup: RunSetup | None) -> bytes:
    """``setup`` as the bytes of a ``torch.save`` of plain data and tensors (None: rank 0 failed)."""
    plain: dict[str, Any] = {"format": SETUP_FORMAT, "failed": setup is None}
    if setup is not None:
        dataset = setup.dataset
        plain.update(
            config=setup.config.to_dict(),
            out=str(setup.out),
            dataset={
                "name": dataset.name,
                "vocab": dataset.vocab.to_dict(),
                "train": dataset.train,
                "valid": dataset.valid,
                "test": dataset.test,
            },
            resume=None
            if setup.resume is None
            else torch.frombuffer(bytearray(setup.resume.to_bytes()), dtype=torch.uint8),
        )
    buffer = io.BytesIO()
    torch.save(plain, buffer)
    return buffer.getvalue()


def setup_from_bytes(data: bytes) -> RunSetup | None:
    """:func:`setup_bytes` undone; None when rank 0 could not prepare the run."""
    from lstm_core.data.dataset import Dataset
    from lstm_core.model.checkpoint import load_checkpoint
    from lstm_core.text.vocab import Vocab

    plain = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    if not isinstance(plain, dict) or plain.get("format") != SETUP_FORMAT:
        raise RuntimeError("rank 0 sent something other than the run's setup")
    if plain["failed"]:
        return None
    data_plain = plain["dataset"]
    dataset = Dataset(
        Vocab.from_dict(data_plain["vocab"]),
        data_plain["train"],
        data_plain["valid"],
        data_plain["test"],
        data_plain["name"],
    )
    resume = plain["resume"]
    checkpoint = None if resume is None else load_checkpoint(resume.numpy().tobytes(), name="rank 0's checkpoint")
    return RunSetup(Config.from_dict(plain["config"]), dataset, Path(plain["out"]), checkpoint)


def share_setup(world: DistributedContext, prepare: Callable[[], RunSetup]) -> RunSetup | None:
    """Rank 0 calls ``prepare`` and sends its setup; every other rank receives it.

    When ``prepare`` raises on rank 0, the others are told (they get None and should end quietly)
    and the error goes on up on rank 0, which says why.
    """
    if not world.is_main:
        return setup_from_bytes(world.broadcast_bytes(None))
    try:
        setup = prepare()
    except BaseException:
        with contextlib.suppress(Exception):  # the reason rank 0 stopped matters more
            world.broadcast_bytes(setup_bytes(None))
        raise
    world.broadcast_bytes(setup_bytes(setup))
    return setup
