"""Cached, shared, read-only work for the pages: corpora, word counts, datasets, the demo model.

``st.cache_resource`` returns the same object to every visitor (no copy), so callers must never
mutate what they get; ``st.cache_data`` is used where a copy is cheap.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import streamlit as st
import torch

from app.runs import RunLimits
from lstm_core.checkpoint import Checkpoint, CheckpointError, load_checkpoint
from lstm_core.config import Config
from lstm_core.corpus import Corpus, bundled_plays, list_plays, play_title
from lstm_core.data import Dataset, prepare
from lstm_core.text import tokenize

DEMO_MODEL_PATH = Path(__file__).resolve().parent.parent / "models" / "demo.pt"


@dataclass(frozen=True)
class CorpusChoice:
    """What the visitor picked on the Data page; ``key`` identifies the text for the caches."""

    source: str  # "plays", "gutenberg" or "upload"
    plays: tuple[str, ...] = ()
    upload_name: str = ""
    upload_digest: str = ""

    @property
    def key(self) -> str:
        if self.source == "plays":
            return "plays:" + ",".join(self.plays)
        if self.source == "upload":
            return "upload:" + self.upload_digest
        return self.source


@st.cache_data(show_spinner=False)
def play_names() -> dict[str, str]:
    """``{name: title}`` of every bundled play, sorted by title."""
    return dict(sorted(((name, play_title(name)) for name in list_plays()), key=lambda item: item[1]))


@st.cache_resource(show_spinner="Reading the plays...", max_entries=8)
def plays_corpus(names: tuple[str, ...]) -> Corpus:
    return bundled_plays(names or None)


@st.cache_resource(show_spinner=False, max_entries=8)
def corpus_tokens(key: str, _text: str) -> list[str]:
    """The cleaned words of a corpus (``key`` identifies ``_text``, which is not hashed)."""
    return tokenize(_text)


@dataclass(frozen=True)
class WordStats:
    """Word frequencies of a corpus, sorted most frequent first (ties alphabetical)."""

    words: list[str]
    counts: np.ndarray  # int64, descending
    tokens: int

    def vocabulary_size(self, min_word_freq: int) -> int:
        """Words kept by the "more than min_word_freq" rule, plus the unknown word."""
        return int(np.count_nonzero(self.counts > min_word_freq)) + 1

    def vocab_counts(self, min_word_freq: int) -> list[int]:
        """Counts in vocabulary order: ``<unk>`` (every word not kept) first, then the kept words."""
        kept = self.counts[self.counts > min_word_freq]
        return [int(self.tokens - kept.sum()), *kept.tolist()]

    def unknown_share(self, min_word_freq: int) -> float:
        return float(self.counts[self.counts <= min_word_freq].sum()) / max(1, self.tokens)


@st.cache_resource(show_spinner=False, max_entries=8)
def word_stats(key: str, _tokens: list[str]) -> WordStats:
    counter = Counter(_tokens)
    ordered = sorted(counter.items(), key=lambda item: (-item[1], item[0]))
    return WordStats([w for w, _ in ordered], np.array([n for _, n in ordered], dtype=np.int64), len(_tokens))


@st.cache_resource(show_spinner="Preparing the training data...", max_entries=8)
def dataset_for(key: str, _tokens: list[str], min_word_freq: int, fractions: tuple[float, float, float]) -> Dataset:
    return prepare(_tokens, min_word_freq, fractions, name=key)


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


@st.cache_resource(show_spinner="Loading the demo model...")
def demo_checkpoint() -> tuple[Checkpoint | None, str | None]:
    """The model shipped in ``models/demo.pt`` and None, or None and why it cannot be used.

    No file is a normal case (no message); a damaged one is said, so it is not mistaken for none.
    """
    if not DEMO_MODEL_PATH.is_file():
        return None, None
    try:
        return load_checkpoint(DEMO_MODEL_PATH), None
    except CheckpointError as error:
        return None, f"The shipped demo model cannot be used: {error}"


@st.cache_resource(show_spinner=False, max_entries=4)
def model_for(key: str, _checkpoint: Checkpoint) -> torch.nn.Module:
    """A shared eval-mode model for a checkpoint (sampling never changes weights)."""
    return _checkpoint.build_model()


def _secret(key: str) -> object:
    try:
        return st.secrets.get(key)
    except Exception:  # no secrets file: that is the normal case
        return None


@st.cache_resource(show_spinner=False)
def limits() -> RunLimits:
    """The server's caps (environment variables, else ``.streamlit/secrets.toml``, else defaults)."""
    found = RunLimits.from_environment(_secret)
    torch.set_num_threads(found.threads)
    return found


def config_summary(config: Config) -> str:
    layers = f"{config.num_layers} x {config.rnn_size}"
    output = "adaptive softmax" if config.output_layer == "adaptive" else "full softmax"
    return f"LSTM {layers}, embeddings {config.embedding_dim}, {output}"
