"""The language model: embedding -> stacked LSTM -> dropout -> softmax over the vocabulary.

Shapes: ``B`` batch (streams), ``T`` time steps (words), ``E`` embedding size, ``H`` rnn_size,
``L`` layers, ``V`` vocabulary size. State is the LSTM's ``(h, c)``, each ``(L, B, H)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from lstm_core.config import Config

State = tuple[Tensor, Tensor]


def choose_cutoffs(counts: Sequence[int], shares: Sequence[float] = (0.8, 0.95)) -> list[int]:
    """Adaptive-softmax cluster boundaries from the vocabulary's frequency ranks.

    ``counts`` are word frequencies in id order (most frequent first, as :class:`Vocab` keeps
    them). The head holds the most frequent words that together make up ``shares[0]`` of the
    training tokens; each tail cluster the next ones up to the next share. Rare words then cost
    a small projection only when their cluster is actually needed.
    """
    vocab_size = len(counts)
    total = float(sum(counts)) or 1.0
    cutoffs: list[int] = []
    running = 0.0
    target = iter(shares)
    share = next(target, None)
    for rank, count in enumerate(counts, start=1):
        running += count
        while share is not None and running / total >= share:
            if rank < vocab_size - 1 and (not cutoffs or rank > cutoffs[-1]):
                cutoffs.append(max(rank, 2))
            share = next(target, None)
    return [c for c in cutoffs if c < vocab_size - 1] or [max(1, vocab_size // 2)]


class LSTMLanguageModel(nn.Module):
    """Word-level LSTM LM with a full or adaptive softmax output layer.

    ``forward`` returns hidden features, not logits: :meth:`loss` and :meth:`log_probs` turn
    them into a per-token loss or a normalised log-distribution, so both output layers give exact
    probabilities through the same two calls.
    """

    def __init__(self, vocab_size: int, config: Config, cutoffs: Sequence[int] | None = None) -> None:
        super().__init__()
        if vocab_size < 2:
            raise ValueError(f"the vocabulary needs at least 2 words, got {vocab_size}")
        self.vocab_size = vocab_size
        self.rnn_size = config.rnn_size
        self.num_layers = config.num_layers
        self.output_layer = config.output_layer
        self.embedding = nn.Embedding(vocab_size, config.embedding_dim)
        self.lstm = nn.LSTM(
            config.embedding_dim,
            config.rnn_size,
            num_layers=config.num_layers,
            dropout=config.dropout if config.num_layers > 1 else 0.0,
            batch_first=True,
        )
        self.dropout = nn.Dropout(config.dropout)
        self.cutoffs: list[int] = []
        if config.output_layer == "adaptive":
            self.cutoffs = list(cutoffs) if cutoffs else [max(1, vocab_size // 2)]
            if not all(a < b for a, b in zip([0, *self.cutoffs], [*self.cutoffs, vocab_size], strict=True)):
                raise ValueError(
                    f"adaptive cutoffs must increase strictly within (0, {vocab_size}); got {self.cutoffs}"
                )
            self.adaptive = nn.AdaptiveLogSoftmaxWithLoss(config.rnn_size, vocab_size, self.cutoffs, div_value=4.0)
        else:
            self.decoder = nn.Linear(config.rnn_size, vocab_size)
            if config.tie_weights:
                self.decoder.weight = self.embedding.weight
        self._init_weights(tied=config.tie_weights)

    def _init_weights(self, tied: bool) -> None:
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)
        for name, param in self.lstm.named_parameters():
            if name.startswith("bias"):
                # PyTorch orders the gates (input, forget, cell, output): a forget-gate bias of 1
                # (split over the two bias vectors) lets memories last from the first steps on.
                nn.init.zeros_(param)
                hidden = self.rnn_size
                param.data[hidden : 2 * hidden] = 0.5
        if self.output_layer == "full":
            nn.init.zeros_(self.decoder.bias)
            if not tied:
                nn.init.uniform_(self.decoder.weight, -0.1, 0.1)

    @property
    def device(self) -> torch.device:
        return self.embedding.weight.device

    def init_state(self, batch_size: int) -> State:
        """Zero ``(h, c)``, each ``(L, B, H)``, on the parameters' device."""
        zeros = torch.zeros(self.num_layers, batch_size, self.rnn_size, device=self.device)
        return zeros, zeros.clone()

    def forward(self, ids: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """``ids (B, T)`` -> hidden features ``(B, T, H)`` and the new state."""
        embedded = self.dropout(self.embedding(ids))  # (B, T, E)
        output, state = self.lstm(embedded, state)  # (B, T, H)
        return self.dropout(output), state

    def step(self, ids: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """One word per row, ``ids (B,)`` -> hidden features ``(B, H)`` and the new state.

        The same computation as :meth:`forward` on a length-1 window, through the LSTM-cell
        kernel layer by layer. Generation calls this once per word, and on the CPU oneDNN's LSTM
        (which :meth:`forward` uses) has a large fixed cost per call: about 1.5 ms for one word
        of a 2 x 256 model against about 0.3 ms here.
        """
        if state is None:
            state = self.init_state(ids.size(0))
        h, c = state
        x = self.dropout(self.embedding(ids))  # (B, E)
        layer_dropout = self.lstm.dropout if self.training else 0.0
        new_h, new_c = [], []
        for layer in range(self.num_layers):
            if layer > 0 and layer_dropout:
                x = F.dropout(x, layer_dropout, training=True)
            weights = [
                getattr(self.lstm, f"{name}_l{layer}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
            ]
            h_layer, c_layer = torch.lstm_cell(x, (h[layer], c[layer]), *weights)
            new_h.append(h_layer)
            new_c.append(c_layer)
            x = h_layer
        return self.dropout(x), (torch.stack(new_h), torch.stack(new_c))

    def logits(self, hidden: Tensor) -> Tensor:
        """Unnormalised scores ``(..., V)``; for the adaptive layer these are the log-probabilities."""
        if self.output_layer == "adaptive":
            return self.log_probs(hidden)
        return self.decoder(hidden)

    def log_probs(self, hidden: Tensor) -> Tensor:
        """Normalised log-probabilities ``(..., V)`` of the next word, in float32."""
        if self.output_layer == "adaptive":
            with _full_precision(hidden):
                flat = hidden.reshape(-1, hidden.size(-1)).float()
                return self.adaptive.log_prob(flat).view(*hidden.shape[:-1], self.vocab_size)
        return F.log_softmax(self.decoder(hidden).float(), dim=-1)

    def token_nll(self, hidden: Tensor, targets: Tensor) -> Tensor:
        """Negative log-likelihood of each target, ``(B, T)``, in float32."""
        flat_hidden = hidden.reshape(-1, hidden.size(-1))
        flat_targets = targets.reshape(-1)
        if self.output_layer == "adaptive":
            # output[i] is the log-prob of target[i] (nothing is reordered).
            with _full_precision(hidden):
                nll = -self.adaptive(flat_hidden.float(), flat_targets).output
        else:
            nll = F.cross_entropy(self.decoder(flat_hidden).float(), flat_targets, reduction="none")
        return nll.view(targets.shape)

    def loss(self, hidden: Tensor, targets: Tensor) -> Tensor:
        """Mean negative log-likelihood per token (the training objective)."""
        return self.token_nll(hidden, targets).mean()

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def count_parameters(config: Config, vocab_size: int, counts: Sequence[int] | None = None) -> int:
    """How many parameters a model with this config would have, without allocating it.

    ``counts`` (word frequencies in id order) place the adaptive cutoffs as training will; without
    them the count assumes equal frequencies, which overestimates the adaptive layer.
    """
    vocab_size = max(2, vocab_size)
    cutoffs = choose_cutoffs(list(counts) if counts is not None else [1] * vocab_size)
    with torch.device("meta"):
        return LSTMLanguageModel(vocab_size, config, cutoffs).num_parameters()


def _full_precision(tensor: Tensor) -> torch.autocast:
    """Autocast off: AdaptiveLogSoftmaxWithLoss mixes dtypes internally and fails under bf16."""
    return torch.autocast(device_type=tensor.device.type, enabled=False)


def detach_state(state: State) -> State:
    """Cut the graph between windows (truncated BPTT) but keep the values."""
    return state[0].detach(), state[1].detach()
