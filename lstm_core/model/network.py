"""The language model: embedding -> stacked recurrent layers -> dropout -> softmax over the vocabulary.

The recurrent layers are an LSTM (the default), a GRU or a plain tanh RNN (``Config.cell``; what
differs between them is :mod:`lstm_core.model.cells`).

Shapes: ``B`` batch (streams), ``T`` time steps (words), ``E`` embedding size, ``H`` rnn_size,
``L`` layers, ``V`` vocabulary size. State is ``(h, c)``, each ``(L, B, H)`` (``c`` is zeros for
the cells without a memory cell).
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator, Sequence
from typing import Any, Protocol, cast

import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.overrides import TorchFunctionMode

from lstm_core.config import Config
from lstm_core.errors import InputError
from lstm_core.model import cells

State = tuple[Tensor, Tensor]


def keep_mask(like: Tensor, shape: Sequence[int], p: float) -> Tensor:
    """A dropout mask of ``shape`` in ``like``'s dtype and device: ``1 / (1 - p)`` with probability
    ``1 - p``, else 0.

    Drawn as uniform numbers compared with ``p``: on a CPU that is about 2.7x cheaper than
    ``bernoulli_`` (2.9 against 7.7 ms for a 2,048 x 512 mask, one thread), and weight drop draws
    one such mask every training step.
    """
    keep = torch.rand(tuple(shape), device=like.device) >= p
    return keep.to(like.dtype).div_(1.0 - p)


class LanguageModel(Protocol):
    """What generation and scoring need of a model; :class:`LSTMLanguageModel` is one.

    Sampling and scoring are written against this, not against ``nn.Module``, so the calls they
    make are visible in one place and a test double (or another architecture) only has to offer
    these: hidden features from a window of ids or from one id per row, and a normalised
    log-distribution from hidden features.
    """

    vocab_size: int
    training: bool

    @property
    def device(self) -> torch.device: ...

    def eval(self) -> Any: ...

    def train(self, mode: bool = True) -> Any: ...

    def __call__(self, ids: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """``ids (B, T)`` -> hidden features ``(B, T, H)`` and the new state (the forward pass)."""
        ...

    def step(self, ids: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """``ids (B,)`` -> hidden features ``(B, H)`` and the new state: one word per row."""
        ...

    def log_probs(self, hidden: Tensor) -> Tensor:
        """Hidden features ``(..., H)`` -> normalised next-word log-probabilities ``(..., V)``."""
        ...


@contextlib.contextmanager
def inference(model: LanguageModel) -> Iterator[None]:
    """Eval mode and no autograd for the block; the model's previous mode is restored after.

    The trainer samples mid-training, so leaving the model in eval mode would silently turn its
    dropout off for the rest of the run.
    """
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def check_vocab_size(model: LanguageModel, vocab_size: int) -> None:
    """Refuse a vocabulary of another size than the model's: its ids would mean other words."""
    if vocab_size != model.vocab_size:
        raise InputError(
            f"the vocabulary has {vocab_size:,} words but the model was built for {model.vocab_size:,}; "
            "use the vocabulary saved with the model (its checkpoint holds both)"
        )


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


class AdaptiveSoftmax(nn.Module):
    """A two-level softmax over frequency clusters (Grave et al., 2017) that can share the embeddings.

    The vocabulary (ids in frequency order) is cut at ``cutoffs`` into a head ``[0, c0)`` and tail
    clusters ``[c_i, c_i+1)``. The head softmax ranges over the head words plus one token per tail
    cluster; a tail word's probability is its cluster token's head probability times its
    probability within the cluster::

        p(w) = p_head(w)                          w in the head
        p(w) = p_head(cluster i) * p_i(w)         w in tail cluster i

    Every word keeps a full ``H``-sized output vector (a row of ``weight``, which may be the
    embedding matrix: weight tying), so the full log-distribution is exact. The saving is in
    training: a tail's scores are computed only for the rows whose target lies in it, and the
    frequent words are all in the small head, so most rows cost ``c0`` dot products instead of ``V``.
    """

    def __init__(self, hidden_size: int, vocab_size: int, cutoffs: Sequence[int], weight: Tensor | None = None):
        super().__init__()
        self.bounds = [0, *cutoffs, vocab_size]
        if not all(a < b for a, b in itertools.pairwise(self.bounds)):
            raise ValueError(f"adaptive cutoffs must increase strictly within (0, {vocab_size}); got {list(cutoffs)}")
        self.head_size = self.bounds[1]
        self.tails = len(self.bounds) - 2
        self.weight = weight if weight is not None else nn.Parameter(torch.empty(vocab_size, hidden_size))
        if weight is None:
            nn.init.uniform_(self.weight, -0.1, 0.1)
        self.bias = nn.Parameter(torch.zeros(vocab_size))
        self.cluster_weight = nn.Parameter(torch.empty(self.tails, hidden_size).uniform_(-0.1, 0.1))
        self.cluster_bias = nn.Parameter(torch.zeros(self.tails))
        self._tail_bounds: Tensor
        self.register_buffer("_tail_bounds", torch.tensor(self.bounds[1:-1]), persistent=False)

    def _clusters(self) -> list[tuple[Tensor, Tensor]]:
        """The output rows and biases of each cluster, ``[(W_0, b_0), (W_1, b_1), ...]``, head first.

        One ``split`` rather than a slice per cluster: when ``weight`` is the embedding matrix, the
        backward pass of each slice would write its own zero-filled ``(V, H)`` gradient and add
        it to the others, a split's writes one (6% of a 1 x 512 model's training step, bench/RESULTS.md).
        """
        sizes = [high - low for low, high in itertools.pairwise(self.bounds)]
        return list(zip(self.weight.split(sizes), self.bias.split(sizes), strict=True))

    def _head_log_probs(self, hidden: Tensor, head: tuple[Tensor, Tensor]) -> Tensor:
        """``(N, H)`` -> log-probs ``(N, c0 + tails)`` over the head words and the cluster tokens."""
        weight = torch.cat([head[0], self.cluster_weight])
        bias = torch.cat([head[1], self.cluster_bias])
        return F.log_softmax(F.linear(hidden, weight, bias).float(), dim=-1)

    @staticmethod
    def _tail_log_probs(hidden: Tensor, tail: tuple[Tensor, Tensor]) -> Tensor:
        """``(N, H)`` -> log-probs ``(N, size of cluster)`` within one tail cluster ``(W_i, b_i)``."""
        return F.log_softmax(F.linear(hidden, *tail).float(), dim=-1)

    def token_nll(self, hidden: Tensor, targets: Tensor) -> Tensor:
        """``hidden (N, H)``, ``targets (N,)`` -> negative log-likelihood of each target ``(N,)``, float32."""
        clusters = self._clusters()
        head = self._head_log_probs(hidden, clusters[0])
        cluster = torch.bucketize(targets.contiguous(), self._tail_bounds, right=True)  # 0 = head, i = tail i - 1
        in_head = cluster == 0
        head_target = torch.where(in_head, targets, self.head_size + cluster - 1)
        nll = -head.gather(1, head_target.unsqueeze(1)).squeeze(1)
        for tail in range(self.tails):
            rows = torch.nonzero(cluster == tail + 1).squeeze(1)
            if rows.numel():
                within = targets[rows] - self.bounds[tail + 1]
                tail_log_probs = self._tail_log_probs(hidden[rows], clusters[tail + 1])
                nll = nll.index_add(0, rows, -tail_log_probs.gather(1, within.unsqueeze(1)).squeeze(1))
        return nll

    def log_probs(self, hidden: Tensor) -> Tensor:
        """``(N, H)`` -> the full log-distribution ``(N, V)``, float32."""
        clusters = self._clusters()
        head = self._head_log_probs(hidden, clusters[0])
        parts = [head[:, : self.head_size]]
        for tail in range(self.tails):
            parts.append(head[:, self.head_size + tail].unsqueeze(1) + self._tail_log_probs(hidden, clusters[tail + 1]))
        return torch.cat(parts, dim=1)


class LSTMLanguageModel(nn.Module):
    """Word-level recurrent LM (an LSTM unless ``config.cell`` says GRU or plain RNN) with a full or
    adaptive softmax output layer.

    ``forward`` returns hidden features, not logits: :meth:`loss` and :meth:`log_probs` turn
    them into a per-token loss or a normalised log-distribution, so both output layers give exact
    probabilities through the same two calls. The recurrent module is :attr:`recurrent`, registered
    under the cell's name (``self.lstm``, ``self.gru`` or ``self.rnn``), which its weights' names carry.
    """

    def __init__(self, vocab_size: int, config: Config, cutoffs: Sequence[int] | None = None) -> None:
        super().__init__()
        if vocab_size < 2:
            raise InputError(f"the vocabulary needs at least 2 words, got {vocab_size}")
        self.vocab_size = vocab_size
        self.rnn_size = config.rnn_size
        self.num_layers = config.num_layers
        self.output_layer = config.output_layer
        self.cell = config.cell
        self.embedding = nn.Embedding(vocab_size, config.embedding_dim)
        between = config.dropout if config.num_layers > 1 else 0.0
        self.add_module(
            config.cell,
            cells.recurrent_module(config.cell, config.embedding_dim, config.rnn_size, config.num_layers, between),
        )
        self.dropout = nn.Dropout(config.dropout)
        self.input_dropout = config.input_dropout
        self.locked_dropout = config.locked_dropout
        self.embedding_dropout = config.embedding_dropout
        self.weight_drop = config.weight_drop
        self.cutoffs: list[int] = []
        if config.output_layer == "adaptive":
            self.cutoffs = list(cutoffs) if cutoffs else [max(1, vocab_size // 2)]
            tied = self.embedding.weight if config.tie_weights else None
            self.adaptive = AdaptiveSoftmax(config.rnn_size, vocab_size, self.cutoffs, weight=tied)
        else:
            self.decoder = nn.Linear(config.rnn_size, vocab_size)
            if config.tie_weights:
                self.decoder.weight = self.embedding.weight
        self._init_weights(tied=config.tie_weights)

    @property
    def recurrent(self) -> nn.RNNBase:
        """The recurrent layers: the ``nn.LSTM``, ``nn.GRU`` or ``nn.RNN`` named after :attr:`cell`."""
        return cast(nn.RNNBase, self._modules[self.cell])

    def _init_weights(self, tied: bool) -> None:
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)
        cells.init_biases(self.cell, self.recurrent, self.rnn_size)
        if self.output_layer == "full":
            nn.init.zeros_(self.decoder.bias)
            if not tied:
                nn.init.uniform_(self.decoder.weight, -0.1, 0.1)
        # The adaptive layer initialises its own parameters.

    @property
    def device(self) -> torch.device:
        return self.embedding.weight.device

    def init_state(self, batch_size: int) -> State:
        """Zero ``(h, c)``, each ``(L, B, H)``, on the parameters' device (``c`` stays zero without a memory cell)."""
        zeros = torch.zeros(self.num_layers, batch_size, self.rnn_size, device=self.device)
        return zeros, zeros.clone()

    def forward(self, ids: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """``ids (B, T)`` -> hidden features ``(B, T, H)`` and the new state."""
        _, hidden, state = self.features(ids, state)
        return hidden, state

    def features(self, ids: Tensor, state: State | None = None) -> tuple[Tensor, Tensor, State]:
        """``ids (B, T)`` -> the last layer's outputs ``(B, T, H)`` before and after the output dropout, and the state.

        :meth:`forward` returns the second; the training objective also penalises the first (temporal
        activation regularisation).
        """
        embedded = self._drop(self._embed(ids), self.input_dropout)  # (B, T, E)
        output, state = self._run_recurrent(embedded, state)  # (B, T, H)
        return output, self._drop(output), state

    # ---- regularisation: each is a no-op in eval mode, so inference reads the weights as they are ----

    def _embed(self, ids: Tensor) -> Tensor:
        """``ids (B, T)`` or ``(B,)`` -> word vectors ``(B, T, E)`` or ``(B, E)``, with embedding dropout.

        Embedding dropout (Gal and Ghahramani, 2016) removes whole words: a dropped word's vector
        is zero wherever it appears in this window, so the model cannot lean on one word's
        identity and must read the context, and the kept ones are scaled by ``1 / (1 - p)``. One
        draw per vocabulary entry ``(V,)``, gathered at the ids.
        """
        embedded = self.embedding(ids)
        if not (self.training and self.embedding_dropout > 0):
            return embedded
        words = keep_mask(embedded, (self.vocab_size,), self.embedding_dropout)  # (V,)
        return embedded * words[ids].unsqueeze(-1)

    def _drop(self, x: Tensor, p: float | None = None) -> Tensor:
        """Dropout with probability ``p`` (the output ``dropout`` unless given) on word vectors or
        LSTM outputs ``(B, T, D)`` (or ``(B, D)``).

        With ``locked_dropout`` (variational dropout) one mask ``(B, 1, D)`` serves every word of a
        stream's window, as in Gal and Ghahramani's recurrent dropout: the same units are missing
        all along, which regularises what the state carries rather than adding noise per word.
        It also draws 1/T as many random numbers (``bernoulli_`` over ``(B, T, D)`` took 13% of a
        1 x 512 model's CPU step).
        """
        p = self.dropout.p if p is None else p
        if not (self.training and p > 0):
            return x
        if not (self.locked_dropout and x.dim() == 3):
            return F.dropout(x, p, training=True)
        return x * keep_mask(x, (x.size(0), 1, x.size(2)), p)  # one mask (B, 1, D) for every step

    def _layer_weights(self, layer: int) -> list[Tensor]:
        """``[W_ih, W_hh, b_ih, b_hh]`` of one layer as this pass uses them.

        With ``weight_drop`` in training, ``W_hh (kH, H)`` goes through dropout (DropConnect, as in
        Merity et al.'s AWD-LSTM): one mask for the whole window, so each hidden-to-hidden
        connection is either there at every time step or at none. The cell's own kernel still
        runs (the mask is on the weights, not inside the recurrence).
        """
        weights = cells.layer_weights(self.recurrent, layer)
        if self.training and self.weight_drop > 0:
            weights[1] = weights[1] * keep_mask(weights[1], weights[1].shape, self.weight_drop)
        return weights

    def _run_recurrent(self, x: Tensor, state: State | None) -> tuple[Tensor, State]:
        """``x (B, T, E)`` -> ``(B, T, H)`` and the new state, through the cell's ``nn`` kernel."""
        if not (self.training and self.weight_drop > 0):
            return cells.run_module(self.recurrent, self.cell, x, state)
        if state is None:
            state = self.init_state(x.size(0))
        weights = [w for layer in range(self.num_layers) for w in self._layer_weights(layer)]
        return cells.run_layers(self.cell, x, state, weights, self.num_layers, self.recurrent.dropout, True)

    def step(self, ids: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """One word per row, ``ids (B,)`` -> hidden features ``(B, H)`` and the new state.

        The same computation as :meth:`forward` on a length-1 window, through the cell's one-step
        kernel layer by layer. Generation calls this once per word, and on the CPU oneDNN's LSTM
        (which :meth:`forward` uses) has a large fixed cost per call: about 1.5 ms for one word
        of a 2 x 256 model against about 0.3 ms here.
        """
        if state is None:
            state = self.init_state(ids.size(0))
        h, c = state
        x = self._drop(self._embed(ids), self.input_dropout)  # (B, E)
        layer_dropout = self.recurrent.dropout if self.training else 0.0
        new_h, new_c = [], []
        for layer in range(self.num_layers):
            if layer > 0 and layer_dropout:
                x = F.dropout(x, layer_dropout, training=True)
            h_layer, c_layer = cells.step_layer(self.cell, x, h[layer], c[layer], self._layer_weights(layer))
            new_h.append(h_layer)
            new_c.append(c_layer)
            x = h_layer
        return self._drop(x), (torch.stack(new_h), torch.stack(new_c))

    def log_probs(self, hidden: Tensor) -> Tensor:
        """Normalised log-probabilities ``(..., V)`` of the next word, in float32."""
        flat = hidden.reshape(-1, hidden.size(-1))
        if self.output_layer == "adaptive":
            log_probs = self.adaptive.log_probs(flat)
        else:
            log_probs = F.log_softmax(self.decoder(flat).float(), dim=-1)
        return log_probs.view(*hidden.shape[:-1], self.vocab_size)

    def token_nll(self, hidden: Tensor, targets: Tensor) -> Tensor:
        """Negative log-likelihood of each target, ``(B, T)``, in float32."""
        flat_hidden = hidden.reshape(-1, hidden.size(-1))
        flat_targets = targets.reshape(-1)
        if self.output_layer == "adaptive":
            nll = self.adaptive.token_nll(flat_hidden, flat_targets)
        else:
            nll = F.cross_entropy(self.decoder(flat_hidden).float(), flat_targets, reduction="none")
        return nll.view(targets.shape)

    def loss(self, hidden: Tensor, targets: Tensor) -> Tensor:
        """Mean negative log-likelihood per token (the training objective)."""
        return self.token_nll(hidden, targets).mean()

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


class _SkipNormalInit(TorchFunctionMode):
    """Skip ``normal_`` while a model is built on the meta device, where it has no values anyway.

    On the meta device ``normal_`` (``nn.Embedding``'s default initialisation) runs a Python
    decomposition that imports ``torch._dynamo``: about 2 s and 70 MB the first time in a process
    (a server's Train page counting a model, its Generate page checking a checkpoint).
    """

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if func in (nn.init.normal_, torch.Tensor.normal_):
            return args[0] if args else (kwargs or {})["tensor"]  # the tensor, left as it was
        return func(*args, **(kwargs or {}))


def count_parameters(config: Config, vocab_size: int, counts: Sequence[int] | None = None) -> int:
    """How many parameters a model with this config would have, without allocating it.

    ``counts`` (word frequencies in id order) place the adaptive cutoffs as training will; without
    them the count assumes equal frequencies, which overestimates the adaptive layer.
    """
    vocab_size = max(2, vocab_size)
    cutoffs = choose_cutoffs(list(counts) if counts is not None else [1] * vocab_size)
    return meta_model(vocab_size, config, cutoffs).num_parameters()


def meta_model(vocab_size: int, config: Config, cutoffs: Sequence[int] | None = None) -> LSTMLanguageModel:
    """The model's shapes without its memory or values: on the meta device, never initialised."""
    with torch.device("meta"), _SkipNormalInit():
        return LSTMLanguageModel(vocab_size, config, cutoffs)


def detach_state(state: State) -> State:
    """Cut the graph between windows (truncated BPTT) but keep the values."""
    return state[0].detach(), state[1].detach()
