"""Cached, shared, read-only work for the pages: texts, datasets, models, the server's resources and caps.

One server holds these once for all its visitors, bounded in bytes (:class:`app.cache.ByteLRU`),
keyed by what identifies their content (a text's digest, a file's path, modification time and
size), so that no cache can serve one visitor's entry to another by mistake, and a code reload
that forgets the caches only costs the work again. Values are shared: callers never change them.

Importing this module does not import torch (about a second of a fresh server's first page,
which only counts words): what needs torch imports it when it is called.
"""

from __future__ import annotations

import hashlib
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import streamlit as st

from app.cache import ByteLRU
from app.visitor import data_root
from lstm_core.config import CELL_NAMES, Config
from lstm_core.runs import capacity
from lstm_core.runs.control import active_runs, make_runner
from lstm_core.runs.limits import RunLimits, RunnerSettings, SettingError
from lstm_core.runs.recording import EventTail
from lstm_core.runs.runner import Runner
from lstm_core.system.resources import Resources, available_resources
from lstm_core.text.corpus import Corpus, bundled_plays_head, list_plays, play_title
from lstm_core.text.encoded import EncodedText
from lstm_core.text.plays_cache import EncodedPlays, encoded_plays
from lstm_core.text.vocab import Vocab
from lstm_core.training.events import event_from_dict

if TYPE_CHECKING:
    from lstm_core.data.dataset import Dataset
    from lstm_core.evaluation.ngram import KneserNey
    from lstm_core.model.checkpoint import Checkpoint, LoadLimits
    from lstm_core.model.network import LSTMLanguageModel

DEMO_MODEL_PATH = Path(__file__).resolve().parent.parent / "models" / "demo.pt"
SAMPLE_CHARS = 20_000
"""How much raw text is kept for the Data page's "what cleaning does" view."""
MB = 1_000_000


# ---- the server's caps -------------------------------------------------------------------------


def _secret(key: str) -> object:
    """A value from ``.streamlit/secrets.toml``; None without the file. A malformed file is an error."""
    try:
        return st.secrets.get(key)
    except Exception as error:  # Streamlit's secrets error type moved between versions
        if "pars" in str(error).lower():  # "Error parsing secrets file at ..."
            raise SettingError(f"the secrets file cannot be read: {error}") from None
        return None  # no secrets file: that is the normal case


_threads: int | None = None
"""The server's thread setting, once :func:`limits` has read it (a background thread may need it)."""


@st.cache_resource(show_spinner=False)
def resources() -> Resources:
    """The CPUs and memory this server may use (its container's), read once per server process.

    Raises :class:`~lstm_core.errors.InputError` for a cgroup file that is not what the kernel writes.
    """
    return available_resources()


@st.cache_resource(show_spinner=False)
def limits() -> RunLimits:
    """The server's caps (environment variables, else ``.streamlit/secrets.toml``, else defaults
    sized to :func:`resources`)."""
    global _threads
    found = RunLimits.from_environment(_secret, resources())
    _threads = found.threads
    if "torch" in sys.modules:  # else torch_threads() sets them when torch is first needed
        torch_threads()
    return found


def training_problem() -> str | None:
    """Why no run can train on this server (None if one can), naming what it has."""
    return capacity.training_problem(limits(), resources())


@st.cache_resource(show_spinner=False)
def runner() -> Runner:
    """Where this server's runs train (``LSTM_PLAYHOUSE_RUNNER``, ``LSTM_PLAYHOUSE_RAY_ADDRESS``):
    raises SettingError for a choice it cannot honour (Ray asked for without an address, or not
    installed), which the entry script shows on every page."""
    return make_runner(RunnerSettings.from_environment(_secret))


def torch_threads() -> None:
    """Import torch and give it the server's thread count: the threads per run, sized to what the
    server may use (cheap once torch is imported).

    PyTorch's own default is one thread per core of the host, whatever the container allows. The
    server's background work calls this once after its first page (a thread count set in one thread
    is what the threads started later get: each page's script run); everything here that computes
    with torch (loading a model) calls it again, so no page runs with the default.
    """
    import torch

    threads = _threads if _threads is not None else limits().threads
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


@st.cache_data(ttl=5, show_spinner=False)
def runs_training_now() -> int:
    return len(active_runs(data_root()))


# ---- caches ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Text:
    """A chosen text as the pages need it: its words as ids, and a sample of the raw text."""

    key: str
    name: str
    description: str
    sample: str
    encoded: EncodedText

    @property
    def nbytes(self) -> int:
        return self.encoded.nbytes + len(self.sample)


@dataclass(frozen=True)
class LoadedModel:
    """An eval-mode model and what the pages say about it."""

    model: LSTMLanguageModel
    vocab: Vocab
    config: Config
    step: int

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.model.state_dict().values()) + 100 * len(self.vocab)


def _budget(name: str, default_mb: float) -> int:
    raw = os.environ.get(f"LSTM_PLAYHOUSE_{name}")
    try:
        return int(float(raw) * MB) if raw else int(default_mb * MB)
    except ValueError:
        raise SettingError(f"LSTM_PLAYHOUSE_{name} must be a number of MB, got {raw!r}") from None


@dataclass(frozen=True)
class Caches:
    texts: ByteLRU[Text]
    datasets: ByteLRU[Dataset]
    models: ByteLRU[LoadedModel]
    ngrams: ByteLRU[KneserNey | None]


@st.cache_resource(show_spinner=False)
def caches() -> Caches:
    """The server's caches: texts and datasets share ``LSTM_PLAYHOUSE_CACHE_MB`` (default 200 MB),
    models and the n-gram models set beside them ``LSTM_PLAYHOUSE_MODEL_CACHE_MB`` (default 150 MB,
    a quarter of it for n-grams: the plays' 3-gram takes 24 MB)."""
    data_budget = _budget("CACHE_MB", 200)
    model_budget = _budget("MODEL_CACHE_MB", 150)
    return Caches(
        texts=ByteLRU(data_budget // 2, lambda text: text.nbytes),
        datasets=ByteLRU(data_budget // 2, lambda dataset: dataset.nbytes),
        models=ByteLRU(model_budget - model_budget // 4, lambda loaded: loaded.nbytes),
        ngrams=ByteLRU(model_budget // 4, lambda model: model.nbytes if model is not None else 1),
    )


def _text(key: str, corpus: Corpus) -> Text:
    return Text(key, corpus.name, corpus.description, corpus.text[:SAMPLE_CHARS], EncodedText.from_text(corpus.text))


@st.cache_data(show_spinner=False)
def play_names() -> dict[str, str]:
    """``{name: title}`` of every bundled play, sorted by title."""
    return dict(sorted(((name, play_title(name)) for name in list_plays()), key=lambda item: item[1]))


@st.cache_resource(show_spinner=False)
def all_plays() -> EncodedPlays:
    """Every bundled play encoded, read from the data folder's cache (built there once, about a second)."""
    return encoded_plays(data_root())


def _plays_text(key: str, names: tuple[str, ...]) -> Text:
    plays = all_plays()
    chosen = names or None
    name, description = plays.describe(chosen)
    return Text(key, name, description, bundled_plays_head(chosen, SAMPLE_CHARS), plays.select(chosen))


def plays_text(names: tuple[str, ...]) -> Text:
    """The chosen plays (all for ``()``): a slice of :func:`all_plays`, with a sample of the first play's text."""
    key = "plays:" + (",".join(names) or "all")
    return caches().texts.get(key, lambda: _plays_text(key, names))


def file_text(key: str, read: Any) -> Text:
    """A text from a file (an upload, the Gutenberg download): ``read()`` gives its Corpus."""
    return caches().texts.get(key, lambda: _text(key, read()))


def dataset_for(text: Text, min_word_freq: int, fractions: tuple[float, float, float]) -> Dataset:
    from lstm_core.data.dataset import prepare_encoded  # torch, once a page trains or scores

    key = (text.key, min_word_freq, fractions)
    return caches().datasets.get(key, lambda: prepare_encoded(text.encoded, min_word_freq, fractions, name=text.name))


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:32]


# ---- models --------------------------------------------------------------------------------------


def upload_limits() -> LoadLimits:
    """What a visitor's model file may ask for: the server's parameter cap, and no more bytes than
    such a model with its training state takes."""
    from lstm_core.model.checkpoint import LoadLimits

    cap = limits().max_parameters
    return LoadLimits(max_bytes=16 * cap + 32 * MB, max_parameters=cap)


def _loaded(checkpoint: Checkpoint) -> LoadedModel:
    torch_threads()
    return LoadedModel(checkpoint.build_model(), checkpoint.vocab, checkpoint.config, checkpoint.step)


def _load(path: Path, limits: LoadLimits | None = None) -> LoadedModel:
    from lstm_core.model.checkpoint import load_checkpoint

    return _loaded(load_checkpoint(path, limits=limits))


def load_model(path: Path) -> LoadedModel:
    """The model in a checkpoint file, shared by every visitor while the file stays the same.

    Raises CheckpointError. The file's modification time and size are part of the key, so a
    checkpoint rewritten by a training run is read again.
    """
    stat = path.stat()
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    return caches().models.get(key, lambda: _load(path, upload_limits()))


_demo_lock = threading.Lock()
_demo_models: dict[Path, tuple[LoadedModel | None, str | None]] = {}


def shipped_model(path: Path | None = None) -> tuple[LoadedModel | None, str | None]:
    """The model shipped at ``path`` (``models/demo.pt``), read once per server process.

    Not a Streamlit cache, so that the server's background work after its first page
    (:mod:`app.warmup`) can load it before a visitor opens the Generate page; a page that asks
    meanwhile waits for that load instead of doing it again. The file is part of the install and
    does not change while the server runs.
    """
    path = path or DEMO_MODEL_PATH
    with _demo_lock:
        if path not in _demo_models:
            _demo_models[path] = _read_shipped(path)
        return _demo_models[path]


def _read_shipped(path: Path) -> tuple[LoadedModel | None, str | None]:
    from lstm_core.model.checkpoint import CheckpointError

    if not path.is_file():
        return None, None
    try:
        return _load(path), None
    except CheckpointError as error:
        return None, f"The shipped demo model cannot be used: {error}"


@st.cache_resource(show_spinner="Loading the demo model...")
def demo_model() -> tuple[LoadedModel | None, str | None]:
    """The model shipped in ``models/demo.pt`` and None, or None and why it cannot be used.

    No file is a normal case (no message); a damaged one is said, so it is not mistaken for none.
    """
    return shipped_model(DEMO_MODEL_PATH)


@st.cache_resource(show_spinner=False, max_entries=64)
def event_tail(path: str) -> EventTail:
    """One incremental reader per run's events file, shared by the tabs that show the run."""
    return EventTail(path, event_from_dict)


def config_summary(config: Config) -> str:
    layers = f"{config.num_layers} x {config.rnn_size}"
    output = "adaptive softmax" if config.output_layer == "adaptive" else "full softmax"
    return f"{CELL_NAMES[config.cell]} {layers}, embeddings {config.embedding_dim}, {output}"


# ---- n-gram models beside the LSTM ---------------------------------------------------------------

NGRAM_ORDER = 3
"""The order of the n-gram set beside a model on the Generate page: on the plays a 3-gram is within
1% of the 5-gram's perplexity (bench/RESULTS.md) in a third of the memory."""
DEMO_HELD_OUT = ("hamlet", "the-tempest", "julius-caesar")
"""The plays the demo model never saw (README: how it was trained)."""


def _fit_ngram(train_ids: Any, vocab_size: int) -> KneserNey:
    from lstm_core.evaluation.ngram import fit_kneser_ney

    return fit_kneser_ney(train_ids, vocab_size, (NGRAM_ORDER,))[NGRAM_ORDER]


def run_ngram(dataset_folder: Path) -> KneserNey:
    """A Kneser-Ney n-gram on a run's own training words and vocabulary."""
    stamp = (dataset_folder / "meta.json").stat().st_mtime_ns
    key = ("run", str(dataset_folder), stamp)

    def build() -> KneserNey:
        from lstm_core.data.dataset import Dataset

        dataset = Dataset.load(dataset_folder)
        return _fit_ngram(dataset.train, len(dataset.vocab))

    found = caches().ngrams.get(key, build)
    assert found is not None, "a run's n-gram is always built"
    return found


def demo_ngram(demo: LoadedModel) -> KneserNey | None:
    """The n-gram on the demo model's training words (the plays but the held-out ones, as it was
    trained), or None if that text no longer gives the demo's vocabulary."""

    def build() -> KneserNey | None:
        from lstm_core.data.dataset import prepare_encoded

        training = [name for name in list_plays() if name not in DEMO_HELD_OUT]
        config = demo.config
        # What prepare_holdout(bundled_plays(training).text, "", ...) gives (the training block and
        # its vocabulary), from the plays' cache instead of cleaning 35 plays again.
        fractions = (1.0 - config.valid_fraction, config.valid_fraction, 0.0)
        dataset = prepare_encoded(all_plays().select(training), config.min_word_freq, fractions, name="demo")
        if dataset.vocab.itos != demo.vocab.itos:
            return None
        return _fit_ngram(dataset.train, len(dataset.vocab))

    return caches().ngrams.get(("demo", len(demo.vocab)), build)
