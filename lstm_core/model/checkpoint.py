"""Checkpoints: one file with weights, optimizer state, config, vocabulary and history.

Everything in the file is plain data (dicts, lists, strings, numbers) and tensors, so it loads
with ``torch.load(weights_only=True)``, which never runs code from the file. The config and the
vocabulary travel inside, so a checkpoint alone is enough to rebuild, resume or sample.

Writes are atomic: the new file is written beside the old one and renamed over it, so a crash
during a save leaves the previous checkpoint intact.

Reading treats every file as hostile (a hosted app loads visitors' uploads), and checks each
thing before it can cost memory:

1. the zip directory, before anything is unpacked: no compressed entry (``torch.save`` never
   compresses, and a compressed entry is how a small file asks for gigabytes), the plain-data
   part (the pickle) at most :attr:`LoadLimits.max_pickle_bytes`, all entries together at most
   :attr:`LoadLimits.max_bytes`;
2. after ``torch.load(weights_only=True)``: every tensor in the file is dense (its storage holds
   exactly its elements: no stride-0 view that stands for far more than the file holds), the
   config is valid, the model it describes is counted without allocating it (PyTorch's meta
   device) and held against :attr:`LoadLimits.max_parameters`, every weight has exactly the
   shape that model expects, and the progress fields are numbers;
3. only then is the model built, so what it allocates is bounded by what the file really holds.
"""

from __future__ import annotations

import io
import math
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
from lstm_core.model.network import LSTMLanguageModel, meta_model
from lstm_core.text.vocab import Vocab

FORMAT = "lstm-playhouse-checkpoint"
VERSION = 1
_STEP_COLUMNS = ("step", "epoch", "loss", "lr", "elapsed_s")
"""A run's per-step history is stored as one float64 tensor with these columns (plain data, but
not in the pickle: a long run has tens of thousands of steps)."""
_INTEGER_COLUMNS = frozenset({"step", "epoch"})


@dataclass(frozen=True)
class LoadLimits:
    """What a checkpoint file may ask for. The defaults suit files a user trained themselves;
    a server loading visitors' uploads passes tighter ones (see ``app/services.py``)."""

    max_bytes: int | None = None
    """All zip entries together, uncompressed (None: no limit but the file's own size)."""
    max_pickle_bytes: int = 16_000_000
    """The plain-data part: config, vocabulary, progress. Unpickling builds Python objects of
    a few times its size at most, so this bounds that memory (real checkpoints hold about 1 MB)."""
    max_parameters: int | None = None
    """The model the config describes (None: no limit)."""


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
    rank_rng_states: list[Tensor] | None = None
    """A run on several processes: every rank's CPU random state, in rank order (``rng_state``
    is rank 0's), so that a resume on as many ranks continues each one's dropout masks."""
    training_weights: dict[str, Tensor] | None = None
    """A run with weight averaging (``Config.weight_average``), once it has begun: ``weights`` is
    the average of ``progress["averaged_steps"]`` steps' weights (the model), and these are the
    raw weights training continues from. None otherwise, and in model-only files."""

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
        """A smaller copy for sharing and sampling: no optimizer state, no carried LSTM state, and of
        an averaging run only the average (the model), not the raw weights it continued from.

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
            "history": _pack_history(self.history),
            "carry": None if self.carry is None else [t.detach().cpu() for t in self.carry],
            "rng_state": self.rng_state,
            "dataset": self.dataset,
            "rank_rng_states": self.rank_rng_states,
            "training_weights": None
            if self.training_weights is None
            else {k: v.detach().cpu() for k, v in self.training_weights.items()},
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


def _pack_history(history: dict[str, Any]) -> dict[str, Any]:
    """The history with its per-step records as one ``(steps, columns)`` float64 tensor."""
    steps = history.get("steps")
    if not isinstance(steps, list):
        return history
    table = torch.tensor([[float(record[c]) for c in _STEP_COLUMNS] for record in steps], dtype=torch.float64)
    return {**history, "steps": {"columns": list(_STEP_COLUMNS), "values": table.view(len(steps), len(_STEP_COLUMNS))}}


def _unpack_history(history: Any) -> dict[str, Any]:
    """:func:`_pack_history` undone, with every field checked to be what it should be."""
    if history is None:
        return {}
    if not isinstance(history, dict):
        raise ValueError("its history is not a mapping")
    history = dict(history)
    steps = history.get("steps")
    if isinstance(steps, dict):
        columns, values = steps.get("columns"), steps.get("values")
        if (
            columns != list(_STEP_COLUMNS)
            or not isinstance(values, Tensor)
            or values.dtype != torch.float64
            or values.dim() != 2
            or values.size(1) != len(_STEP_COLUMNS)
        ):
            raise ValueError("its step history is not a table of the expected columns")
        history["steps"] = [
            {c: int(v) if c in _INTEGER_COLUMNS else v for c, v in zip(_STEP_COLUMNS, row, strict=True)}
            for row in values.tolist()
        ]
    for key in ("steps", "evals", "samples"):
        records = history.get(key, [])
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise ValueError(f"its history's {key!r} is not a list of records")
        for record in records:
            for name, value in record.items():
                if name != "samples" and not _is_number(value):
                    raise ValueError(f"its history's {key!r} holds a non-numeric {name!r}: {value!r}")
    return history


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


_PROGRESS_INTEGERS = ("step", "epoch", "window", "total_steps", "averaged_steps")
_PROGRESS_NUMBERS = ("elapsed_s",)
_PROGRESS_OPTIONAL = ("best_val_loss", "last_val_loss")


def _check_progress(progress: Any) -> dict[str, Any]:
    if progress is None:
        return {}
    if not isinstance(progress, dict):
        raise ValueError("its progress is not a mapping")
    for name in _PROGRESS_INTEGERS:
        value = progress.get(name, 0)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"its progress field {name!r} must be a whole number, 0 or more; got {value!r}")
    for name in _PROGRESS_NUMBERS:
        value = progress.get(name, 0.0)
        if not _is_number(value) or not math.isfinite(value) or value < 0:
            raise ValueError(f"its progress field {name!r} must be a number, 0 or more; got {value!r}")
    for name in _PROGRESS_OPTIONAL:
        value = progress.get(name)
        if value is not None and not _is_number(value):
            raise ValueError(f"its progress field {name!r} must be a number or empty; got {value!r}")
    return dict(progress)


def _check_rank_rng_states(states: Any) -> list[Tensor] | None:
    if states is None:
        return None
    if (
        not isinstance(states, list)
        or not states
        or not all(isinstance(t, Tensor) and t.dtype == torch.uint8 and t.dim() == 1 for t in states)
    ):
        raise ValueError("its rank_rng_states are not a list of random-generator states")
    return states


def _tensors(data: Any, found: list[Tensor]) -> list[Tensor]:
    """Every tensor inside a structure of dicts, lists and tuples."""
    if isinstance(data, Tensor):
        found.append(data)
    elif isinstance(data, dict):
        for value in data.values():
            _tensors(value, found)
    elif isinstance(data, (list, tuple)):
        for value in data:
            _tensors(value, found)
    return found


def _dense(tensor: Tensor) -> bool:
    """Contiguous, from the start of its own storage, and that storage holds exactly its elements.

    A tensor that fails this is a view: of a larger storage (which the file stores in full), or,
    stride 0, of a smaller one that it stands for many times over.
    """
    return (
        tensor.is_contiguous()
        and tensor.storage_offset() == 0
        and tensor.untyped_storage().nbytes() == tensor.numel() * tensor.element_size()
    )


def _check_archive(stream: Any, limits: LoadLimits) -> str | None:
    """What is wrong with the zip directory (entries are not read), or None."""
    try:
        with zipfile.ZipFile(stream) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as error:
        return f"the file is truncated or corrupt, or not a PyTorch file at all ({error})"
    if len(entries) > 100_000:
        return f"it holds {len(entries):,} entries; a checkpoint holds a few dozen"
    total = 0
    for entry in entries:
        if entry.compress_type != zipfile.ZIP_STORED:
            return f"its entry {entry.filename!r} is compressed, which PyTorch never writes: it was not unpacked"
        if entry.filename.endswith("/data.pkl") and entry.file_size > limits.max_pickle_bytes:
            return (
                f"its plain data takes {entry.file_size / 1e6:,.1f} MB; a checkpoint's takes about 1 MB "
                f"(at most {limits.max_pickle_bytes / 1e6:,.0f} MB is read)"
            )
        total += entry.file_size
    if limits.max_bytes is not None and total > limits.max_bytes:
        return f"it unpacks to {total / 1e6:,.0f} MB; at most {limits.max_bytes / 1e6:,.0f} MB is accepted"
    return None


def _check_weights(weights: Any, config: Config, vocab: Vocab, cutoffs: list[int], limits: LoadLimits) -> None:
    """The weights are exactly those of the model the config describes (checked without building it)."""
    if not isinstance(weights, dict) or not all(isinstance(v, Tensor) for v in weights.values()):
        raise ValueError("its weights are not a mapping of names to tensors")
    vocab_size = len(vocab)
    if cutoffs and (any(not isinstance(c, int) for c in cutoffs) or cutoffs != sorted(set(cutoffs))):
        raise ValueError("its adaptive cutoffs must be increasing whole numbers")
    if cutoffs and not cutoffs[0] > 0 and cutoffs[-1] < vocab_size:
        raise ValueError(f"its adaptive cutoffs must lie within (0, {vocab_size})")
    expected = meta_model(vocab_size, config, cutoffs or None).state_dict()
    parameters = sum(t.numel() for t in {id(t): t for t in expected.values()}.values())
    if limits.max_parameters is not None and parameters > limits.max_parameters:
        raise CheckpointError(
            f"its model has {parameters:,} parameters; at most {limits.max_parameters:,} are accepted here"
        )
    missing, unexpected = sorted(set(expected) - set(weights)), sorted(set(weights) - set(expected))
    if missing or unexpected:
        detail = f"missing {', '.join(missing)}" if missing else f"unexpected {', '.join(unexpected)}"
        raise CheckpointError(f"the weights do not fit the model its config describes ({detail})")
    for name, shape in ((n, t.shape) for n, t in expected.items()):
        tensor = weights[name]
        if tensor.shape != shape:
            raise CheckpointError(
                f"the weights do not fit the model its config describes ({name} is {tuple(tensor.shape)}, "
                f"the config asks for {tuple(shape)})"
            )
        if tensor.dtype not in (torch.float32, torch.float16, torch.bfloat16):
            raise ValueError(f"its weight {name} is {tensor.dtype}, not a float32, float16 or bfloat16 tensor")


def load_checkpoint(
    source: Path | str | bytes, name: str | None = None, limits: LoadLimits | None = None
) -> Checkpoint:
    """Read a checkpoint from a path or from bytes (an upload); never executes code from it.

    Every way the file can be wrong -- missing, truncated, corrupt, not a checkpoint, a newer
    format, inconsistent contents, or built to exhaust memory (see the module's docstring) --
    raises :class:`CheckpointError` naming the file.
    """
    limits = limits or LoadLimits()
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
    try:
        is_zip = zipfile.is_zipfile(stream)
    except OSError as error:
        raise fail(f"it cannot be read ({error.strerror or error})") from None
    if not is_zip:
        raise fail("the file is truncated or corrupt, or not a PyTorch file at all")
    problem = _check_archive(stream, limits)
    if problem:
        raise fail(problem)
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
    if not all(_dense(tensor) for tensor in _tensors(data, [])):
        raise fail("it holds a tensor that is a view (strided, or of a storage of another size), not plain weights")
    try:
        config = Config.from_dict(data["config"])
        vocab = Vocab.from_dict(data["vocab"])
        cutoffs = data.get("cutoffs", [])
        if not isinstance(cutoffs, list):
            raise ValueError("its cutoffs are not a list")
        _check_weights(data["weights"], config, vocab, cutoffs, limits)
        training_weights = data.get("training_weights")
        if training_weights is not None:
            _check_weights(training_weights, config, vocab, cutoffs, limits)
        carry = data.get("carry")
        checkpoint = Checkpoint(
            config=config,
            vocab=vocab,
            weights=data["weights"],
            cutoffs=cutoffs,
            optimizer=data.get("optimizer"),
            progress=_check_progress(data.get("progress")),
            history=_unpack_history(data.get("history")),
            carry=None if carry is None else (carry[0], carry[1]),
            rng_state=data.get("rng_state"),
            dataset=dict(data.get("dataset") or {}),
            rank_rng_states=_check_rank_rng_states(data.get("rank_rng_states")),
            training_weights=training_weights,
        )
    except CheckpointError as error:
        raise fail(str(error)) from None
    except (KeyError, TypeError, ValueError, IndexError, ConfigError) as error:
        raise fail(f"its contents are incomplete or inconsistent ({error})") from None
    # Build once to check the weights load into the model, so a bad file fails here, not later.
    try:
        checkpoint.build_model()
    except (CheckpointError, ValueError) as error:
        raise fail(str(error)) from None
    return checkpoint
