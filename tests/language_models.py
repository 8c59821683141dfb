"""Tiny language models and helpers for the sampling and scoring tests.

Models are tiny (16-24 LSTM units) and either randomly initialised with a fixed seed or trained
for a few dozen Adam steps on a tiny text (the fixtures in ``tests/conftest.py``), so the tests
run in seconds on a CPU.
"""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from lstm_core.config import Config
from lstm_core.model.network import LSTMLanguageModel
from lstm_core.text.cleaning import tokenize
from lstm_core.text.vocab import UNK_INDEX, Vocab

LAYERS = ["full", "adaptive"]
PRIME = "shall i compare thee"


def make_model(vocab_size: int, output_layer: str = "full", rnn_size: int = 16, seed: int = 0, **changes):
    torch.manual_seed(seed)
    config = Config(rnn_size=rnn_size, num_layers=1, output_layer=output_layer, **changes)
    return LSTMLanguageModel(vocab_size, config).eval()


def train(model: LSTMLanguageModel, ids: list[int], steps: int, seq_len: int = 8, lr: float = 0.03) -> None:
    """A few Adam steps on random windows of ``ids``: enough for a peaked, text-like distribution."""
    torch.manual_seed(1)
    data = torch.tensor(ids)
    windows = data.unfold(0, seq_len + 1, 1)  # (N, seq_len + 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        batch = windows[torch.randint(len(windows), (16,))]
        hidden, _ = model(batch[:, :-1])
        loss = model.loss(hidden, batch[:, 1:])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()


def sequence_log_prob(model: LSTMLanguageModel, vocab: Vocab, prime: str, words: list[str]) -> float:
    """log p(words | prime) under the model, from one batched forward pass."""
    ids = vocab.encode(tokenize(prime) + words)
    with torch.no_grad():
        hidden, _ = model(torch.tensor([ids[:-1]]))
        log_probs = model.log_probs(hidden[0])
    targets = torch.tensor(ids[1:])
    picked = log_probs.gather(1, targets[:, None])[:, 0]
    return float(picked[len(ids) - 1 - len(words) :].double().sum())


def repeated_ngrams(words: list[str], n: int) -> list[tuple[str, ...]]:
    counts = Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
    return [gram for gram, count in counts.items() if count > 1]


def favour_unknown(
    model: LSTMLanguageModel, monkeypatch: pytest.MonkeyPatch, bonus: float = 30.0, only_call: int | None = None
) -> None:
    """Make ``<unk>`` the model's top choice at every step, or at the ``only_call``-th log-probs call only.

    Generation calls ``log_probs`` once for the prime and once per word after it, so
    ``only_call=5`` makes ``<unk>`` the top choice for the 5th generated word.
    """
    original = model.log_probs
    calls = 0

    def log_probs(hidden: torch.Tensor) -> torch.Tensor:
        nonlocal calls
        calls += 1
        scores = original(hidden).clone()
        if only_call is None or calls == only_call:
            scores[..., UNK_INDEX] += bonus
        return scores.log_softmax(dim=-1)

    monkeypatch.setattr(model, "log_probs", log_probs)


class ProtocolOnly:
    """A model seen only through the ``LanguageModel`` protocol: what any other implementation gets.

    Not an :class:`LSTMLanguageModel`, so generation and scoring take the protocol's way with it
    (the model's own ``step``, ``log_probs`` and forward pass, and the processors): the reference
    the fast path is compared with.
    """

    def __init__(self, model: LSTMLanguageModel) -> None:
        self.model = model
        self.vocab_size = model.vocab_size

    @property
    def training(self) -> bool:
        return self.model.training

    @property
    def device(self) -> torch.device:
        return self.model.device

    def eval(self) -> ProtocolOnly:
        self.model.eval()
        return self

    def train(self, mode: bool = True) -> ProtocolOnly:
        self.model.train(mode)
        return self

    def __call__(self, ids: torch.Tensor, state=None):
        return self.model(ids, state)

    def step(self, ids: torch.Tensor, state=None):
        return self.model.step(ids, state)

    def log_probs(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.model.log_probs(hidden)


class ForwardCounter:
    """Records the ``ids`` shape ``(B, T)`` of every model call: forward passes and single steps."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.shapes: list[tuple[int, ...]] = []
        self.model = model
        self.handle = model.register_forward_hook(lambda module, args, output: self.shapes.append(tuple(args[0].shape)))
        real_step = model.step

        def step(ids: torch.Tensor, state=None):
            self.shapes.append((ids.size(0), 1))
            return real_step(ids, state)

        model.step = step

    def __enter__(self) -> ForwardCounter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.handle.remove()
        del self.model.step  # back to the class's method
