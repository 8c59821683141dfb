"""Shared fixtures: a tiny corpus and a small config that train in well under a second, and tiny models."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from lstm_core.config import Config
from lstm_core.data.dataset import Dataset, prepare
from lstm_core.model.network import LSTMLanguageModel
from lstm_core.text.cleaning import tokenize
from lstm_core.text.vocab import UNK_TOKEN, Vocab
from tests.language_models import make_model, train
from tests.ray_cluster import LocalRayHead, ray_installed, use_token

# One thread: on a 2-core machine that also runs a server or a browser, PyTorch's default of
# one thread per core makes small steps far slower (threads fighting for the cores).
torch.set_num_threads(1)
# The local Ray heads require Ray's token: put it in the environment before anything imports Ray,
# which reads its authentication mode once (the app servers started by the tests inherit it).
use_token()

SONNET = """Shall I compare thee to a summer's day?
Thou art more lovely and more temperate:
Rough winds do shake the darling buds of May,
And summer's lease hath all too short a date;
Sometime too hot the eye of heaven shines,
And often is his gold complexion dimm'd;
And every fair from fair sometime declines,
By chance or nature's changing course untrimm'd;
But thy eternal summer shall not fade,
Nor lose possession of that fair thou ow'st;
Nor shall death brag thou wander'st in his shade,
When in eternal lines to time thou grow'st:
So long as men can breathe or eyes can see,
So long lives this, and this gives life to thee.
"""

TINY_TEXT = SONNET * 12  # about 1,400 words over 88 distinct ones


@pytest.fixture
def tiny_dataset() -> Dataset:
    return prepare(TINY_TEXT, min_word_freq=0, fractions=(0.8, 0.1, 0.1), name="sonnet 18")


TINY_CONFIG = Config(
    rnn_size=24,
    batch_size=4,
    training_seq_len=8,
    epochs=2,
    learning_rate=0.01,
    eval_every=10,
    save_every=0,
    sample_length=4,
    seed=3,
)
"""A model and run small enough to train in a test: 4 streams, 34 steps an epoch, an evaluation every 10."""


@pytest.fixture
def tiny_config() -> Config:
    return TINY_CONFIG


SMALL_RUN = Config(rnn_size=16, batch_size=4, training_seq_len=8, epochs=2, learning_rate=0.01, eval_every=10, seed=3)
"""A run that trains in a second or two in a process of its own, for the tests of runs and their runners."""


# ---- tiny language models for the sampling and scoring tests (helpers in tests/language_models.py) ----


@pytest.fixture(scope="session")
def sonnet_vocab() -> Vocab:
    return Vocab.build(tokenize(SONNET), 0)


@pytest.fixture(scope="session", params=["full", "adaptive"])
def sonnet_model(request, sonnet_vocab) -> LSTMLanguageModel:
    """A 24-unit model trained briefly on sonnet 18 (both output layers)."""
    model = make_model(len(sonnet_vocab), request.param, rnn_size=24)
    train(model, sonnet_vocab.encode(tokenize(SONNET * 3)), steps=60)
    return model


@pytest.fixture(scope="session")
def counting_vocab() -> Vocab:
    words = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve"]
    return Vocab([UNK_TOKEN, *words])


@pytest.fixture(scope="session")
def looping_model(counting_vocab) -> LSTMLanguageModel:
    """A model that has only ever seen 'one two three one two three ...': greedy loops."""
    model = make_model(len(counting_vocab))
    train(model, counting_vocab.encode(("one two three " * 40).split()), steps=80)
    return model


# ---- a Ray head for the Ray runner's tests (helpers in tests/ray_cluster.py) ----


def start_ray_head(log_folder: Path) -> LocalRayHead:
    """A fresh local Ray head; the test fails, not skips, without Ray (CI installs it)."""
    if not ray_installed():
        pytest.fail(
            "Ray is not installed: pip install -r requirements-dev.txt (the Ray runner's tests need ray[default])"
        )
    # Ray's sockets live under its temporary folder, whose path must stay short: not under pytest's.
    temp_dir = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))
    head = LocalRayHead(temp_dir, log_folder / "ray-head.log")
    try:
        return head.start()
    except BaseException:
        shutil.rmtree(temp_dir, ignore_errors=True)
        raise


@pytest.fixture(scope="session")
def ray_head(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRayHead]:
    """One Ray head for the whole session (it takes about 5 s to start), stopped at the end."""
    head = start_ray_head(tmp_path_factory.mktemp("ray"))
    try:
        yield head
    finally:
        head.remove()
