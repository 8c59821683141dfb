"""Hostile checkpoint files: each is refused before it can cost memory (lstm_core.model.checkpoint).

A hosted app loads visitors' uploads, so every file is a possible attack on the server's memory.
Each case here is refused with a CheckpointError, and loading it in a fresh process adds less than
100 MB to that process's peak memory (the files ask for gigabytes).
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from lstm_core.model.checkpoint import CheckpointError, LoadLimits, load_checkpoint
from lstm_core.training.trainer import Trainer

ROOT = Path(__file__).resolve().parent.parent
MEASURE = """
import json, sys
import torch
from lstm_core.model.checkpoint import CheckpointError, LoadLimits, load_checkpoint

def peak_kb():  # this program's own peak resident size (ru_maxrss would count the forking test process)
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))

before = peak_kb()
try:
    load_checkpoint(sys.argv[1], limits=LoadLimits(**json.loads(sys.argv[2])))
    outcome = "loaded"
except CheckpointError as error:
    outcome = str(error)
print(json.dumps({"outcome": outcome, "added_mb": (peak_kb() - before) / 1024}))
"""


@pytest.fixture(scope="module")
def plain(tmp_path_factory) -> dict:
    """A real (small) checkpoint as plain data, to be spoiled one way at a time."""
    from lstm_core.config import Config
    from lstm_core.data.dataset import prepare
    from tests.conftest import TINY_TEXT

    config = Config(rnn_size=16, batch_size=4, training_seq_len=8, epochs=1, eval_every=0, seed=3)
    dataset = prepare(TINY_TEXT, 0, (0.8, 0.1, 0.1))
    return Trainer(config, dataset).fit().checkpoint.to_plain()


def save(plain: dict, path: Path) -> Path:
    torch.save(plain, path)
    return path


def load_in_fresh_process(path: Path, limits: dict | None = None) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", MEASURE, str(path), json.dumps(limits or {})],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def deflate_bomb(plain: dict, path: Path, gigabytes: float = 1.0) -> Path:
    """The checkpoint with one weight entry replaced by a deflated run of zeros that unpacks to 1 GB."""
    buffer = io.BytesIO()
    torch.save(plain, buffer)
    source = zipfile.ZipFile(io.BytesIO(buffer.getvalue()))
    victim = next(i.filename for i in source.infolist() if "/data/" in i.filename)
    with zipfile.ZipFile(path, "w", compresslevel=1) as target:
        for info in source.infolist():
            if info.filename != victim:
                target.writestr(info, source.read(info.filename))
                continue
            bomb = zipfile.ZipInfo(victim)
            bomb.compress_type = zipfile.ZIP_DEFLATED
            with target.open(bomb, "w", force_zip64=True) as entry:
                chunk = bytes(1 << 24)
                for _ in range(int(gigabytes * (1 << 30)) >> 24):
                    entry.write(chunk)
    return path


def with_changes(plain: dict, **changes) -> dict:
    spoiled = {**plain, **changes}
    return spoiled


@pytest.mark.slow
def test_a_deflate_bomb_is_refused_from_its_zip_directory(plain, tmp_path):
    path = deflate_bomb(plain, tmp_path / "bomb.pt")  # 1 GB of zeros deflate to about 5 MB
    assert path.stat().st_size < 10_000_000
    measured = load_in_fresh_process(path)
    assert "is compressed, which PyTorch never writes" in measured["outcome"]
    assert measured["added_mb"] < 100


@pytest.mark.slow
def test_a_huge_config_is_refused_without_allocating_it(plain, tmp_path):
    spoiled = with_changes(plain, config={**plain["config"], "rnn_size": 100_000})
    path = save(spoiled, tmp_path / "huge.pt")
    measured = load_in_fresh_process(path)
    assert "the weights do not fit the model its config describes" in measured["outcome"]
    assert measured["added_mb"] < 100
    capped = load_in_fresh_process(path, {"max_parameters": 20_000_000})
    assert "parameters; at most 20,000,000 are accepted here" in capped["outcome"]
    assert capped["added_mb"] < 100


def test_stride_zero_weights_are_refused(plain, tmp_path):
    weights = dict(plain["weights"])
    # One stored float standing for a 100,000 x 16 matrix: it would pass a shape check.
    weights["embedding.weight"] = torch.zeros(1).expand(*weights["embedding.weight"].shape)
    path = save(with_changes(plain, weights=weights), tmp_path / "strided.pt")
    measured = load_in_fresh_process(path)
    assert "it holds a tensor that is a view" in measured["outcome"]
    assert measured["added_mb"] < 100


@pytest.mark.slow
def test_an_absurd_vocabulary_is_refused_before_it_is_unpacked(plain, tmp_path):
    words = ["<unk>", *(f"w{i}" for i in range(3_000_000))]
    vocab = {**plain["vocab"], "words": words, "counts": [1] * len(words)}
    path = save(with_changes(plain, vocab=vocab), tmp_path / "vocab.pt")
    measured = load_in_fresh_process(path)
    assert "its plain data takes" in measured["outcome"] and "at most 16 MB is read" in measured["outcome"]
    assert measured["added_mb"] < 100


@pytest.mark.parametrize(
    ("field", "value"),
    [("step", "lots"), ("elapsed_s", float("nan")), ("epoch", -1), ("best_val_loss", "low"), ("window", 2.5)],
)
def test_non_numeric_progress_fields_are_refused(plain, tmp_path, field, value):
    path = save(with_changes(plain, progress={**plain["progress"], field: value}), tmp_path / "progress.pt")
    with pytest.raises(CheckpointError, match=f"its progress field '{field}'"):
        load_checkpoint(path)


def test_non_numeric_history_is_refused(plain, tmp_path):
    history = {**plain["history"], "evals": [{"step": "ten", "val_loss": 1.0}]}
    path = save(with_changes(plain, history=history), tmp_path / "history.pt")
    with pytest.raises(CheckpointError, match="non-numeric 'step'"):
        load_checkpoint(path)


def test_an_oversized_file_is_refused_by_the_total_cap(plain, tmp_path):
    path = save(plain, tmp_path / "fine.pt")
    load_checkpoint(path)  # the real file loads
    with pytest.raises(CheckpointError, match="at most 0 MB is accepted"):
        load_checkpoint(path, limits=LoadLimits(max_bytes=1000))


def test_the_step_history_travels_as_a_table_and_comes_back_the_same(plain, tmp_path):
    steps = plain["history"]["steps"]
    assert isinstance(steps["values"], torch.Tensor) and steps["values"].dtype == torch.float64
    loaded = load_checkpoint(save(plain, tmp_path / "table.pt"))
    records = loaded.history["steps"]
    assert [r["step"] for r in records] == list(range(1, len(records) + 1))
    assert all(isinstance(r["step"], int) and isinstance(r["loss"], float) for r in records)


def test_raw_weights_that_do_not_fit_the_model_are_refused(plain, tmp_path):
    raw = {name: tensor.clone() for name, tensor in plain["weights"].items()}
    raw["embedding.weight"] = torch.zeros(3, 16)
    path = save(with_changes(plain, training_weights=raw), tmp_path / "raw.pt")
    with pytest.raises(CheckpointError, match=r"embedding.weight is \(3, 16\)"):
        load_checkpoint(path)
