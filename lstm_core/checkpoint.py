"""Checkpoints: one file with weights, optimizer state, config, vocabulary and history.

Everything in the file is plain data (dicts, lists, strings, numbers) and tensors, so it loads
with ``torch.load(weights_only=True)``, which never runs code from the file. The config and the
vocabulary travel inside, so a checkpoint alone is enough to rebuild, resume or sample.

Writes are atomic: the new file is written beside the old one and renamed over it, so a crash
during a save leaves the previous checkpoint intact.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import torch
from torch import Tensor

from lstm_core.config import Config, ConfigError
from lstm_core.errors import InputError
from lstm_core.files import atomic_write
from lstm_core.model import LSTMLanguageModel
from lstm_core.vocab import Vocab

FORMAT = "lstm-playhouse-checkpoint"
VERSION = 1


class CheckpointError(InputError):
    """A checkpoint could not be read. The message names the file and the problem."""


def copy_weights(weights: Mapping[str, Tensor], dtype: torch.dtype | None = None) -> dict[str, Tensor]:
    """Detached CPU copies of ``weights`` (floating ones cast to ``dtype`` if given).

    Tied weights are one tensor under two names; they stay one tensor here, so that a file
    stores them once (``torch.save`` writes a shared storage once) and loading keeps them tied.
    """
    copies: dict[tuple, Tensor] = {}
    result = {}
    for name, tensor in weights.items():
        key = (tensor.device, tensor.data_ptr(), tensor.shape, tensor.stride(), tensor.dtype)
        if key not in copies:
            copy = tensor.detach().to("cpu", copy=True)
            copies[key] = copy.to(dtype) if dtype is not None and copy.is_floating_point() else copy
        result[name] = copies[key]
    return result


@dataclass
class Checkpoint:
    """What a training run needs to be rebuilt, resumed or sampled from."""

    config: Config
    vocab: Vocab
    weights: dict[str, Tensor]
    cutoffs: list[int] = field(default_factory=list)
    optimizer: dict[str, Any] | None = None
    progress: dict[str, Any] = field(default_factory=dict)
    history: dict[str, Any] = field(default_factory=dict)
    carry: tuple[Tensor, Tensor] | None = None
    rng_state: Tensor | None = None
    dataset: dict[str, Any] = field(default_factory=dict)

    @property
    def step(self) -> int:
        return int(self.progress.get("step", 0))

    def build_model(self, device: torch.device | str = "cpu") -> LSTMLanguageModel:
        """The model with these weights, on ``device``, in eval mode."""
        model = LSTMLanguageModel(len(self.vocab), self.config, self.cutoffs)
        try:
            model.load_state_dict(self.weights)
        except RuntimeError as error:
            detail = str(error).splitlines()[0]
            raise CheckpointError(f"the weights do not fit the model its config describes ({detail})") from None
        return model.to(device).eval()

    def without_training_state(self, half: bool = False) -> Checkpoint:
        """A smaller copy for sharing and sampling: no optimizer state, no carried LSTM state.

        ``half`` stores the weights in float16, halving the file again; :meth:`build_model` loads
        them back into a float32 model (the rounding changes perplexity in the fourth digit).
        """
        weights = copy_weights(self.weights, torch.float16 if half else None)
        return Checkpoint(
            self.config, self.vocab, weights, self.cutoffs, None, self.progress, self.history, None, None, self.dataset
        )

    def to_plain(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "config": self.config.to_dict(),
            "vocab": self.vocab.to_dict(),
            "cutoffs": list(self.cutoffs),
            "weights": {k: v.detach().cpu() for k, v in self.weights.items()},
            "optimizer": self.optimizer,
            "progress": self.progress,
            "history": self.history,
            "carry": None if self.carry is None else [t.detach().cpu() for t in self.carry],
            "rng_state": self.rng_state,
            "dataset": self.dataset,
        }

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        torch.save(self.to_plain(), buffer)
        return buffer.getvalue()


def save_checkpoint(checkpoint: Checkpoint, path: Path | str) -> Path:
    """Write ``checkpoint`` to ``path`` atomically and return the path."""
    path = Path(path)
    plain = checkpoint.to_plain()

    def write(file: BinaryIO) -> None:
        torch.save(plain, file)

    atomic_write(path, write)
    return path


def load_checkpoint(source: Path | str | bytes, name: str | None = None) -> Checkpoint:
    """Read a checkpoint from a path or from bytes (an upload); never executes code from it.

    Every way the file can be wrong -- missing, truncated, corrupt, not a checkpoint, a newer
    format, inconsistent contents -- raises :class:`CheckpointError` naming the file.
    """
    label = name or (f"the uploaded file ({len(source):,} bytes)" if isinstance(source, bytes) else str(source))

    def fail(problem: str) -> CheckpointError:
        return CheckpointError(f"cannot load checkpoint {label}: {problem}")

    if isinstance(source, bytes):
        stream: Any = io.BytesIO(source)
    else:
        path = Path(source)
        if not path.exists():
            raise fail("the file does not exist")
        if path.is_dir():
            raise fail("that is a folder, not a checkpoint file")
        stream = path
    # torch.save writes a zip archive; anything else (noise, text, a cut-off file whose zip
    # directory is missing) is refused before the unpickler sees it.
    if not zipfile.is_zipfile(stream):
        raise fail("the file is truncated or corrupt, or not a PyTorch file at all")
    if isinstance(stream, io.BytesIO):
        stream.seek(0)
    try:
        data = torch.load(stream, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        # weights_only refuses anything but tensors and plain data, e.g. a pickled module.
        raise fail(
            f"it holds objects that are not plain data, so it was not loaded ({str(error).splitlines()[0]})"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, KeyError) as error:
        detail = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise fail(f"the file is truncated or corrupt, or not a PyTorch file at all ({detail})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise fail("it is not an LSTM Playhouse checkpoint (it has no 'format' marker)")
    version = data.get("version")
    if version != VERSION:
        raise fail(f"it is format version {version!r}, and this program reads version {VERSION}")
    try:
        config = Config.from_dict(data["config"])
        vocab = Vocab.from_dict(data["vocab"])
        weights = data["weights"]
        if not isinstance(weights, dict) or not all(isinstance(v, Tensor) for v in weights.values()):
            raise ValueError("its weights are not a mapping of names to tensors")
        carry = data.get("carry")
        checkpoint = Checkpoint(
            config=config,
            vocab=vocab,
            weights=weights,
            cutoffs=[int(c) for c in data.get("cutoffs", [])],
            optimizer=data.get("optimizer"),
            progress=dict(data.get("progress") or {}),
            history=dict(data.get("history") or {}),
            carry=None if carry is None else (carry[0], carry[1]),
            rng_state=data.get("rng_state"),
            dataset=dict(data.get("dataset") or {}),
        )
    except (KeyError, TypeError, ValueError, ConfigError) as error:
        raise fail(f"its contents are incomplete or inconsistent ({error})") from None
    # Build once to check the weights match the config, so a bad file fails here, not later.
    try:
        checkpoint.build_model()
    except (CheckpointError, ValueError) as error:
        raise fail(str(error)) from None
    return checkpoint
