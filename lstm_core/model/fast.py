"""Lean inference for a trained model: one word at a time, and whole texts scored, with exact results.

Generation feeds one word per model call, and at that size the cost is not arithmetic (a 1 x 256
step is a few hundred thousand multiply-adds) but everything around it: a fresh tensor for every
intermediate, oneDNN's fixed cost per ``nn.LSTM`` call, the adaptive softmax's full distribution
when the head alone decides the word. :class:`FastLM` is built once per trained model and answers
the same questions as the model (same probabilities, to float rounding) with less of that:

* **Fused gates.** Each layer keeps its gate rows reordered from PyTorch's (input, forget, cell,
  output) to (input, forget, output, cell), so one ``sigmoid_`` and one ``tanh_`` cover them, and
  ``[W_ih | W_hh]`` side by side, so one matrix-vector product gives all gates of a layer.
* **Input table** (optional, see :data:`INPUT_TABLE_BUDGET`). For layer 0 the input projection
  of word ``w`` is always ``W_ih @ embedding[w] + b_ih + b_hh``: a fixed ``(V, 4H)`` table, so a
  step needs only the recurrent product. It costs ``V x 4H`` floats (29 MB for 6,924 words and
  ``H`` = 256) and its build costs one ``(V, E) x (E, 4H)`` product.
* **Head first.** With the adaptive softmax a tail word's log-prob is its cluster token's head
  log-prob plus a within-cluster log-prob that is never positive. So a cluster whose token is no
  better than the best (greedy) or the ``k``-th best (top-k) head word cannot contain the answer,
  and its tail product (the bulk of the output layer) is skipped.
* **Buffers.** A :class:`Cursor` (one text being extended) owns its state and scratch tensors and
  writes into them with ``out=`` and in-place operations, so a step allocates almost nothing.

Shapes: ``V`` vocabulary size, ``E`` embedding size, ``H`` rnn_size, ``L`` layers, ``B`` rows,
``N`` words of a scored text. States are the model's ``(h, c)``, each ``(L, B, H)``.

:class:`FastLM` holds only read-only tensors and can be shared between threads; a
:class:`Cursor` belongs to one caller. :func:`fast_lm` caches one :class:`FastLM` per model
and rebuilds it when the model's weights change (training, ``load_state_dict``, ``.to()``).
Generation and scoring (:mod:`lstm_core.sampling`, :func:`lstm_core.evaluation.scoring.score`) take
this path through :func:`fast_path`, which says for which models it stands in.
"""

from __future__ import annotations

import bisect
import itertools
import math
import threading
import weakref
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from lstm_core.model.network import LSTMLanguageModel, State

INPUT_TABLE_BUDGET = 8 * 2**20
"""Bytes up to which :class:`FastLM` builds layer 0's input table unless told otherwise.

The table saves one ``4H x E`` product per word fed: with the 1 x 256 demo model and 1 thread a
step went from 36 to 27 microseconds, a greedy word (step plus output layer) about 7% faster. But
it costs ``V x 4H`` floats, 29 MB for the demo model (three times the model itself) for every
model a server keeps, and 47 ms to build. Small models get it; bigger ones when asked
(``input_table=True``)."""

# The samplers' rules, repeated here because lstm_core.sampling imports this module (through
# lstm_core.evaluation.scoring); tests/test_inference.py checks that they agree with
# lstm_core.sampling.processors.
GREEDY_TEMPERATURE = 1e-4
"""At or below this temperature sampling is the argmax (the samplers' rule; one draw is still used)."""

TOP_P_TOLERANCE = 1e-6
"""Mass within this of ``top_p`` counts as reaching it (the samplers' rule)."""

MIN_P_TOLERANCE = 1e-5
"""A log-ratio to the top word within this of ``log(min_p)`` counts as reaching it (the samplers' rule)."""

_SCORE_BLOCK = 2048
"""Positions per block while scoring, so a long text never needs its whole ``(N, V)`` at once."""

_TAIL_ROWS = 256
"""Rows per tail product while scoring: its logits, log-probs and comparisons stay in the cache
(256 x 3,733 words is 3.8 MB) instead of going out to memory between passes."""

_NEG_INF = float("-inf")


def _gate_rows_reordered(tensor: Tensor, hidden_size: int) -> Tensor:
    """Rows ``(i, f, g, o)`` of a ``(4H, ...)`` or ``(4H,)`` tensor -> ``(i, f, o, g)``, a new tensor."""
    i, f, g, o = tensor.split(hidden_size, dim=0)
    return torch.cat([i, f, o, g])


def weights_signature(model: nn.Module) -> tuple[tuple[int, int, str, torch.dtype], ...]:
    """Where each parameter's data lives and how often it was changed in place.

    Any optimizer step, ``load_state_dict`` (an in-place copy) or ``.to()`` (new storage)
    changes it, so a :class:`FastLM` built from older weights is known to be stale. Reading it
    costs about a microsecond per parameter.
    """
    return tuple((p.data_ptr(), p._version, str(p.device), p.dtype) for p in model.parameters())


class FastLM:
    """The model's inference, rearranged for speed: same probabilities, fewer and cheaper calls.

    Built once per model in eval semantics (no dropout, whatever the model's mode), from the
    model's weights at that moment: later changes to them are not seen (use :func:`fast_lm`,
    which checks). Runs on the device of the model's parameters, which must be float32.

    The sampler-facing contract is the model's own: :meth:`step` and :meth:`log_probs`. The fast
    entry points are :meth:`cursor` (a text extended word by word in place, with greedy and
    sampled choices that compute only what can matter), :meth:`score_ids` and :meth:`score_hidden`.
    """

    def __init__(self, model: LSTMLanguageModel, input_table: bool | None = None) -> None:
        lstm = model.lstm
        if lstm.bidirectional or lstm.proj_size or not lstm.batch_first:
            raise ValueError("FastLM needs the project's LSTM: one direction, no projection, batch first")
        if model.embedding.weight.dtype != torch.float32:
            raise ValueError(
                f"FastLM needs float32 weights (Checkpoint.build_model gives them), got {model.embedding.weight.dtype}"
            )
        self.vocab_size = model.vocab_size
        self.hidden_size = hidden = model.rnn_size
        self.num_layers = model.num_layers
        self.embedding_size = model.embedding.embedding_dim
        self.adaptive = model.output_layer == "adaptive"
        weight = model.embedding.weight
        self.device = weight.device
        self.dtype = torch.float32
        table_bytes = self.vocab_size * 4 * hidden * weight.element_size()
        if input_table is None:
            input_table = table_bytes <= INPUT_TABLE_BUDGET
        with torch.no_grad():
            self.embedding = weight.detach()
            # Per layer: (W_ih | W_hh) with gate rows (i, f, o, g), (4H, in + H), and b_ih + b_hh, (4H,).
            self.layer_weights: list[Tensor] = []
            self.layer_biases: list[Tensor] = []
            for layer in range(self.num_layers):
                w_ih, w_hh, b_ih, b_hh = (
                    getattr(lstm, f"{name}_l{layer}").detach()
                    for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
                )
                self.layer_weights.append(_gate_rows_reordered(torch.cat([w_ih, w_hh], dim=1), hidden))
                self.layer_biases.append(_gate_rows_reordered(b_ih + b_hh, hidden))
            # Layer 0's input projection of every word, (V, 4H), and its recurrent weights alone, (4H, H).
            self.input_table: Tensor | None = None
            self.recurrent_weight0 = self.layer_weights[0][:, self.embedding_size :]
            if input_table:
                input_weight = self.layer_weights[0][:, : self.embedding_size]
                self.input_table = F.linear(self.embedding, input_weight, self.layer_biases[0])
            # The output layer as a head over ``head_words`` words plus one token per cluster, and
            # the clusters' (first, end) ids. A full softmax is a head over the whole vocabulary.
            if self.adaptive:
                softmax = model.adaptive
                self.head_words = softmax.head_size
                self.clusters = list(zip(softmax.bounds[1:-1], softmax.bounds[2:], strict=True))
                self.head_weight = torch.cat([softmax.weight[: self.head_words], softmax.cluster_weight]).detach()
                self.head_bias = torch.cat([softmax.bias[: self.head_words], softmax.cluster_bias]).detach()
                self.output_weight = softmax.weight.detach()  # tails are row slices of it: no copy
                self.output_bias = softmax.bias.detach()
            else:
                self.head_words = self.vocab_size
                self.clusters = []
                self.head_weight = model.decoder.weight.detach()
                self.head_bias = model.decoder.bias.detach()
                self.output_weight, self.output_bias = self.head_weight, self.head_bias
        self._cluster_starts = [start for start, _ in self.clusters]
        # Scoring reads a whole text with oneDNN's LSTM (far cheaper per word than any one-word
        # loop), through a private module that shares the model's parameters and stays in eval.
        with torch.device("meta"):
            self._lstm = nn.LSTM(self.embedding_size, hidden, num_layers=self.num_layers, batch_first=True)
        for name in self._lstm._flat_weights_names:
            setattr(self._lstm, name, getattr(lstm, name))
        self._lstm.eval()

    @property
    def nbytes(self) -> int:
        """Bytes this holds besides the model's own weights (which it shares, tails and embedding included).

        The gates' reordered ``[W_ih | W_hh]`` and summed biases of every layer, the adaptive
        softmax's head (its words' rows and the cluster tokens', copied side by side; a full
        softmax uses the decoder's own weights) and the input table, if any. For the demo model
        (1 x 256, 6,924 words, a head of 599 words and 2 cluster tokens) 2.7 MB (2.6 MiB): 2.1 MB of
        gate weights and 0.6 MB of head.
        """
        own = [*self.layer_weights, *self.layer_biases]
        if self.adaptive:
            own += [self.head_weight, self.head_bias]
        if self.input_table is not None:
            own.append(self.input_table)
        return sum(tensor.numel() * tensor.element_size() for tensor in own)

    @property
    def input_table_bytes(self) -> int:
        """Memory held by layer 0's input table (0 when there is none)."""
        table = self.input_table
        return 0 if table is None else table.numel() * table.element_size()

    def init_state(self, batch_size: int) -> State:
        """Zero ``(h, c)``, each ``(L, B, H)``, on the model's device."""
        zeros = torch.zeros(self.num_layers, batch_size, self.hidden_size, device=self.device, dtype=self.dtype)
        return zeros, zeros.clone()

    # ---- the model's contract -------------------------------------------------------------

    def step(self, ids: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """One word per row, ``ids (B,)`` -> hidden features ``(B, H)`` and the new state.

        The model's :meth:`~lstm_core.model.network.LSTMLanguageModel.step` in eval mode. Pure: returns new
        tensors (a caller may keep old states, as an undo stack does); :meth:`cursor` is the
        in-place form for one row.
        """
        ids = ids.to(self.device).view(-1)
        if state is None:
            state = self.init_state(ids.numel())
        h, c = state
        hidden = self.hidden_size
        new_h, new_c = [], []
        x = h[0]  # replaced by each layer's output
        with torch.no_grad():
            for layer in range(self.num_layers):
                if layer == 0 and self.input_table is not None:
                    gates = torch.addmm(self.input_table[ids], h[0], self.recurrent_weight0.t())  # (B, 4H)
                else:
                    inputs = self.embedding[ids] if layer == 0 else x
                    joined = torch.cat([inputs, h[layer]], dim=1)  # (B, in + H)
                    gates = torch.addmm(self.layer_biases[layer], joined, self.layer_weights[layer].t())
                sigmoids = gates[:, : 3 * hidden].sigmoid()
                cell = gates[:, 3 * hidden :].tanh()
                c_layer = torch.addcmul(sigmoids[:, hidden : 2 * hidden] * c[layer], sigmoids[:, :hidden], cell)
                x = sigmoids[:, 2 * hidden :] * c_layer.tanh()
                new_h.append(x)
                new_c.append(c_layer)
        return x, (torch.stack(new_h), torch.stack(new_c))

    def log_probs(self, hidden: Tensor) -> Tensor:
        """Normalised log-probabilities ``(B, V)``, float32, of the next word after ``hidden (B, H)``."""
        with torch.no_grad():
            head = torch.log_softmax(torch.addmm(self.head_bias, hidden, self.head_weight.t()).float(), dim=1)
            if not self.adaptive:
                return head
            parts = [head[:, : self.head_words]]
            for cluster in range(len(self.clusters)):
                parts.append(self._tail_log_probs(hidden, cluster, head[:, self.head_words + cluster]))
            return torch.cat(parts, dim=1)

    def _tail_log_probs(self, hidden: Tensor, cluster: int, token_log_probs: Tensor) -> Tensor:
        """``hidden (R, H)``, the cluster token's head log-probs ``(R,)`` -> the cluster's words' log-probs."""
        start, end = self.clusters[cluster]
        logits = torch.addmm(self.output_bias[start:end], hidden, self.output_weight[start:end].t())
        return token_log_probs.unsqueeze(1) + torch.log_softmax(logits.float(), dim=1)

    # ---- fast entry points ----------------------------------------------------------------

    def cursor(self, state: State | None = None) -> Cursor:
        """A text at ``state`` (each ``(L, 1, H)``; None: the start), to be extended in place."""
        return Cursor(self, state)

    def score_ids(self, ids: Tensor) -> tuple[Tensor, Tensor]:
        """Each word's log-prob and rank given the words before it, for ``ids (N,)``, ``N >= 2``.

        Returns ``(log_probs (N - 1,) float32, ranks (N - 1,) int64)`` on the model's device: word
        ``n + 1``'s log-probability after words ``0..n``, and its rank, 1 + the number of words
        with a strictly higher probability there (what the model's full distribution gives). The
        LSTM reads the text in one pass from the zero state; see :meth:`score_hidden` for the rest.
        """
        ids = ids.to(self.device).view(-1)
        if ids.numel() < 2:
            raise ValueError(f"scoring needs at least two words, got {ids.numel()}")
        with torch.no_grad():
            hidden = self._lstm(self.embedding[ids[:-1]].unsqueeze(0))[0][0]  # (N - 1, H)
        return self.score_hidden(hidden, ids[1:])

    def score_hidden(self, hidden: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        """``hidden (N, H)``, ``targets (N,)`` -> each target's log-prob ``(N,)`` float32 and rank ``(N,)`` int64.

        With the adaptive softmax the full ``(N, V)`` distribution is never formed: a target's
        rank needs a tail cluster only where that cluster's token beats the target (no word
        inside can beat it otherwise), and a tail word's log-prob needs only its own cluster.
        Positions go a block at a time, so a long text needs no ``(N, V)`` memory either.
        """
        picked: list[Tensor] = []
        ranks: list[Tensor] = []
        score = self._score_adaptive if self.adaptive else self._score_full
        with torch.no_grad():
            for start in range(0, targets.numel(), _SCORE_BLOCK):
                block = slice(start, start + _SCORE_BLOCK)
                block_log_probs, block_ranks = score(hidden[block], targets[block])
                picked.append(block_log_probs)
                ranks.append(block_ranks)
        return torch.cat(picked), torch.cat(ranks).long()

    def _score_full(self, hidden: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        log_probs = self.log_probs(hidden)  # (n, V)
        target = log_probs.gather(1, targets.unsqueeze(1))  # (n, 1)
        return target.squeeze(1), (log_probs > target).sum(dim=1, dtype=torch.int32) + 1

    def _score_adaptive(self, hidden: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        """:meth:`score_ids` for one block: ``hidden (n, H)``, ``targets (n,)``.

        A tail's within-cluster log-probs are computed :data:`_TAIL_ROWS` rows at a time into one
        workspace, reused by every cluster: fresh ``(rows, cluster size)`` tensors for the logits,
        the log-probs, their sum with the token's and the comparison cost three times the product
        itself (the memory is new each time and must be faulted in). A word counts towards a rank when its
        within-cluster log-prob beats the target's log-prob minus the cluster token's, which is
        ``token + within > target`` moved across.
        """
        words = self.head_words
        head = torch.log_softmax(torch.addmm(self.head_bias, hidden, self.head_weight.t()).float(), dim=1)
        bounds = torch.tensor(self._cluster_starts, device=targets.device)
        cluster = torch.bucketize(targets, bounds, right=True)  # 0: head; i + 1: tail cluster i
        target = head.gather(1, torch.where(cluster == 0, targets, words + cluster - 1).unsqueeze(1)).squeeze(1)
        ranks = torch.ones_like(targets, dtype=torch.int32)
        size = _TAIL_ROWS * max(end - start for start, end in self.clusters)
        logits = torch.empty(size, device=hidden.device, dtype=hidden.dtype)
        within = torch.empty(size, device=hidden.device, dtype=torch.float32)
        above = torch.empty(size, device=hidden.device, dtype=torch.float32)  # 0/1: cheaper than bool here

        def count_above(rows: Tensor, index: int, bars: Tensor | None) -> Tensor:
            """Per row of ``rows``: the words of cluster ``index`` whose within-cluster log-prob beats ``bars (r,)``.

            Without ``bars`` the rows' targets are in this cluster: their own within-cluster
            log-prob is the bar, and their log-prob is set from it.
            """
            start, end = self.clusters[index]
            counts = []
            for chunk in rows.split(_TAIL_ROWS):
                shape = (chunk.numel(), end - start)
                chunk_logits = logits[: shape[0] * shape[1]].view(shape)
                torch.addmm(
                    self.output_bias[start:end], hidden[chunk], self.output_weight[start:end].t(), out=chunk_logits
                )
                chunk_within = within[: shape[0] * shape[1]].view(shape)
                torch.log_softmax(chunk_logits, 1, out=chunk_within)
                if bars is None:
                    bar = chunk_within.gather(1, (targets[chunk] - start).unsqueeze(1)).squeeze(1)
                    target[chunk] = head[chunk, words + index] + bar
                else:
                    bar = bars[chunk]
                chunk_above = above[: shape[0] * shape[1]].view(shape)
                torch.gt(chunk_within, bar.unsqueeze(1), out=chunk_above)
                counts.append(chunk_above.sum(dim=1))
            return torch.cat(counts).to(torch.int32)

        # Tail words first: their log-prob (and so the bar every other word must beat) needs their
        # own cluster, which then also gives the words above them in it.
        for index in range(len(self.clusters)):
            rows = torch.nonzero(cluster == index + 1).view(-1)
            if rows.numel():
                ranks.index_add_(0, rows, count_above(rows, index, None))
        ranks += (head[:, :words] > target.unsqueeze(1)).sum(dim=1, dtype=torch.int32)
        # Other clusters: only where the cluster's token itself beats the target can a word inside.
        for index in range(len(self.clusters)):
            token = head[:, words + index]
            rows = torch.nonzero((token > target) & (cluster != index + 1)).view(-1)
            if rows.numel():
                ranks.index_add_(0, rows, count_above(rows, index, target - token))
        return target, ranks


class Cursor:
    """One text being extended a word at a time: its LSTM state, next-word log-probs and buffers.

    :meth:`feed` advances the state in place; the next word's distribution is then computed
    lazily, piece by piece: :meth:`best_next` and top-k sampling compute a tail cluster only
    when it can hold the answer, :meth:`log_probs` everything. Tensors returned by
    :meth:`log_probs` and :attr:`hidden` are views of the cursor's buffers, valid until the next
    :meth:`feed`. One caller at a time; make one cursor per text.
    """

    def __init__(self, lm: FastLM, state: State | None = None) -> None:
        self._lm = lm
        hidden, layers, vocab = lm.hidden_size, lm.num_layers, lm.vocab_size
        device, dtype = lm.device, lm.dtype
        # Layer l reads [input | own h] from one buffer, so its gates are one product; layer 0
        # with the input table keeps only h.
        self._joined: list[Tensor] = []
        self._h: list[Tensor] = []
        self._c: list[Tensor] = []
        for layer in range(layers):
            width = hidden if layer == 0 and lm.input_table is not None else lm.layer_weights[layer].size(1)
            joined = torch.zeros(width, device=device, dtype=dtype)
            self._joined.append(joined)
            self._h.append(joined[width - hidden :])
            self._c.append(torch.zeros(hidden, device=device, dtype=dtype))
        if state is not None:
            h, c = state
            if h.shape != (layers, 1, hidden) or c.shape != (layers, 1, hidden):
                raise ValueError(f"a cursor's state is (h, c), each ({layers}, 1, {hidden}); got {tuple(h.shape)}")
            for layer in range(layers):
                self._h[layer].copy_(h[layer, 0])
                self._c[layer].copy_(c[layer, 0])
        self._gates = torch.empty(4 * hidden, device=device, dtype=dtype)
        self._sigmoids = self._gates[: 3 * hidden]
        self._cell = self._gates[3 * hidden :]
        self._input, self._forget, self._output = self._sigmoids.split(hidden)
        self._full = torch.empty(vocab, device=device, dtype=torch.float32)  # the log-probs, filled lazily
        self._work = torch.empty(vocab, device=device, dtype=torch.float32)  # filtered, scaled copies for choosing
        self._scores = torch.empty(vocab, device=device, dtype=torch.float32)  # their renormalised log-probs
        # Comparisons written as floats: a bool result costs three times as much at this size.
        self._at_least = torch.empty(len(lm.clusters), lm.head_words, device=device, dtype=torch.float32)
        self._logits = torch.empty(
            max(lm.head_words + len(lm.clusters), vocab - lm.head_words), device=device, dtype=torch.float32
        )
        # The head's log-probs: words then cluster tokens; for a full softmax, the log-probs themselves.
        self._head = (
            torch.empty(lm.head_words + len(lm.clusters), device=device, dtype=torch.float32)
            if lm.adaptive
            else self._full
        )
        self._probs = torch.empty(vocab, device=lm.device, dtype=torch.float64)
        self._cumulative = torch.empty(vocab, device=lm.device, dtype=torch.float64)
        self._head_ready = False
        self._tails_ready = [False] * len(lm.clusters)
        self._cluster_log_probs: list[float] = []

    @property
    def vocab_size(self) -> int:
        return self._lm.vocab_size

    @property
    def nbytes(self) -> int:
        """Bytes of the cursor's own buffers: the state, the gates, and a few vocabulary-sized vectors.

        Three float32 and two float64 vectors of ``V`` (log-probs, a filtered copy, its
        renormalised form, and the draw's probabilities and cumulative sums), the head's logits
        and log-probs, and the state: 0.23 MB for the demo model's 6,924 words. Freed with the cursor.
        """
        buffers = [*self._joined, *self._c, self._gates, self._full, self._work, self._scores, self._at_least]
        buffers += [self._logits, self._probs, self._cumulative]
        if self._head is not self._full:
            buffers.append(self._head)
        return sum(buffer.numel() * buffer.element_size() for buffer in buffers)

    # ---- the state ----

    @property
    def hidden(self) -> Tensor:
        """The last layer's output ``(H,)`` at the current position (a view)."""
        return self._h[-1]

    def state(self) -> State:
        """A copy of ``(h, c)``, each ``(L, 1, H)``."""
        return torch.stack(self._h).unsqueeze(1), torch.stack(self._c).unsqueeze(1)

    def feed(self, word_id: int) -> None:
        """Advance by one word: the LSTM reads ``word_id`` and the state moves on, in place."""
        lm = self._lm
        gates = self._gates
        for layer in range(lm.num_layers):
            joined = self._joined[layer]
            if layer == 0 and lm.input_table is not None:
                torch.addmv(lm.input_table[word_id], lm.recurrent_weight0, joined, out=gates)
            else:
                width = joined.numel() - lm.hidden_size
                joined[:width].copy_(lm.embedding[word_id] if layer == 0 else self._h[layer - 1])
                torch.addmv(lm.layer_biases[layer], lm.layer_weights[layer], joined, out=gates)
            self._sigmoids.sigmoid_()
            self._cell.tanh_()
            cell_state = self._c[layer]
            cell_state.mul_(self._forget).addcmul_(self._input, self._cell)
            h = self._h[layer]
            torch.tanh(cell_state, out=h)
            h.mul_(self._output)
        self._head_ready = False
        self._tails_ready = [False] * len(lm.clusters)

    # ---- the next word's distribution, piece by piece ----

    def _ensure_head(self) -> None:
        if self._head_ready:
            return
        lm = self._lm
        logits = self._logits[: self._head.numel()]
        torch.addmv(lm.head_bias, lm.head_weight, self.hidden, out=logits)
        torch.log_softmax(logits, 0, out=self._head)
        if lm.adaptive:
            self._full[: lm.head_words].copy_(self._head[: lm.head_words])
            self._cluster_log_probs = self._head[lm.head_words :].tolist()
        self._head_ready = True

    def _ensure_tail(self, cluster: int) -> Tensor:
        """The log-probs of tail ``cluster``'s words, computed into the full buffer once per position."""
        lm = self._lm
        start, end = lm.clusters[cluster]
        out = self._full[start:end]
        if not self._tails_ready[cluster]:
            logits = self._logits[: end - start]
            torch.addmv(lm.output_bias[start:end], lm.output_weight[start:end], self.hidden, out=logits)
            torch.log_softmax(logits, 0, out=out)
            out.add_(self._head[lm.head_words + cluster])
            self._tails_ready[cluster] = True
        return out

    def log_probs(self) -> Tensor:
        """The next word's normalised log-probabilities ``(V,)``, float32 (a view: clone to keep)."""
        self._ensure_head()
        for cluster in range(len(self._lm.clusters)):
            self._ensure_tail(cluster)
        return self._full

    # ---- choosing the next word ----

    def _split_banned(self, banned: Sequence[int]) -> list[list[int]]:
        """``banned`` ids grouped by part: ``[head ids, cluster 0 ids (within), ...]``."""
        lm = self._lm
        groups: list[list[int]] = [[] for _ in range(len(lm.clusters) + 1)]
        for word in banned:
            if not 0 <= word < lm.vocab_size:
                raise ValueError(f"banned word id {word} is outside the vocabulary (0 to {lm.vocab_size - 1})")
            part = bisect.bisect_right(lm._cluster_starts, word)
            groups[part].append(word - (lm.clusters[part - 1][0] if part else 0))
        return groups

    @staticmethod
    def _without(values: Tensor, banned: list[int], scratch: Tensor) -> Tensor:
        """``values`` itself, or a copy in ``scratch`` with the ``banned`` positions at ``-inf``."""
        if not banned:
            return values
        scratch.copy_(values)
        for index in banned:
            scratch[index] = _NEG_INF
        return scratch

    def best_next(self, banned: Sequence[int] = ()) -> int:
        """The most likely next word (lowest id on ties), never one of ``banned``: the full argmax.

        Computes the head, and a tail cluster only when its token's head log-prob beats the best
        word so far (a word inside scores that plus a non-positive within-cluster log-prob, and a
        tie goes to the lower id, which is the earlier one). If every word is banned, returns 0,
        as ``argmax`` of an all ``-inf`` row does.
        """
        lm = self._lm
        groups = self._split_banned(banned)
        self._ensure_head()
        head = self._without(self._head[: lm.head_words], groups[0], self._work[: lm.head_words])
        value, index = torch.max(head, 0)
        best, best_index = float(value), int(index)
        for cluster, (start, end) in enumerate(lm.clusters):
            if self._cluster_log_probs[cluster] <= best:
                continue
            tail = self._without(self._ensure_tail(cluster), groups[cluster + 1], self._work[start:end])
            value, index = torch.max(tail, 0)
            if float(value) > best:
                best, best_index = float(value), start + int(index)
        return best_index

    def sample_next(
        self,
        generator: torch.Generator,
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 1.0,
        banned: Sequence[int] = (),
        min_p: float = 0.0,
    ) -> int:
        """One word drawn as the samplers draw it: temperature, top-k, top-p, min-p, one uniform.

        The same distribution as the samplers' processors (``Temperature``, ``TopK``, ``TopP``,
        ``MinP``, in that order) followed by ``sample_index``, on the log-probs with ``banned``
        removed (as ``unknown='skip'`` removes ``<unk>``), and the same use of ``generator``:
        exactly one ``torch.rand(1, float64)`` per call, mapped through the cumulative
        distribution in vocabulary order, so a seed gives the same words (up to float rounding at
        the edges of a word's share of ``[0, 1)``, or of a filter's cut).

        With ``top_k`` on, only the ``top_k`` best words' values are needed after temperature, and
        a tail cluster is computed only when its token beats the ``top_k``-th best head word.
        """
        if not (math.isfinite(temperature) and temperature > 0):
            raise ValueError(f"temperature must be a number greater than 0, got {temperature!r}")
        if top_k < 0 or not 0 < top_p <= 1 or not 0 <= min_p <= 1:
            raise ValueError(
                f"top_k must be 0 (off) or more, top_p in (0, 1] and min_p in [0, 1]; got {top_k!r}, {top_p!r}, "
                f"{min_p!r}"
            )
        lm = self._lm
        if temperature <= GREEDY_TEMPERATURE:
            torch.rand(1, dtype=torch.float64, generator=generator)  # a one-hot draw still takes one
            return self.best_next(banned)
        groups = self._split_banned(banned)
        self._ensure_head()
        work = self._work
        work[: lm.head_words].copy_(self._head[: lm.head_words])
        for index in groups[0]:
            work[index] = _NEG_INF
        filtering = 0 < top_k < lm.vocab_size
        needed: Sequence[int] = range(len(lm.clusters))
        if filtering and top_k <= lm.head_words and lm.clusters:
            # A tail can hold one of the top k only if its token beats the k-th best head word,
            # that is, if fewer than k head words are at least as likely as the token.
            tokens = self._head[lm.head_words :].unsqueeze(1)  # (clusters, 1)
            at_least = torch.ge(work[: lm.head_words], tokens, out=self._at_least).sum(dim=1).tolist()
            needed = [cluster for cluster, count in enumerate(at_least) if count < top_k]
        last = needed[-1] if needed else -1
        scope = lm.clusters[last][1] if needed else lm.head_words  # words [0, scope) are filled in below
        for cluster in range(last + 1):
            start, end = lm.clusters[cluster]
            if cluster in needed:
                work[start:end].copy_(self._ensure_tail(cluster))
                for index in groups[cluster + 1]:
                    work[start + index] = _NEG_INF
            else:
                work[start:end].fill_(_NEG_INF)
        if filtering:
            return sample_top_k(work[:scope], top_k, generator, temperature, top_p, min_p)
        if temperature != 1.0:
            work.div_(temperature)
        scores = torch.log_softmax(work, 0, out=self._scores)
        if top_p >= 1.0:
            return _draw(cut_min_p(scores, min_p), generator, self._probs, self._cumulative)
        ids = nucleus_ids(scores, top_p)  # ascending
        scores = cut_min_p(torch.log_softmax(scores[ids], 0), min_p)
        count = ids.numel()
        return int(ids[_draw(scores, generator, self._probs[:count], self._cumulative[:count])])


def sample_top_k(
    scores: Tensor,
    top_k: int,
    generator: torch.Generator,
    temperature: float = 1.0,
    top_p: float = 1.0,
    min_p: float = 0.0,
) -> int:
    """One position of ``scores (n,)`` (log-probs, normalised or not) drawn after temperature, top-k, top-p and min-p.

    Exactly the samplers' processors (``Temperature``, ``TopK``, ``TopP``, ``MinP``) followed by
    ``sample_index`` (same words kept, ties at the top-k boundary to the lower position, one
    ``torch.rand(1, float64)`` from ``generator`` mapped through the kept words' cumulative mass in
    position order), up to float rounding. Needs ``0 < top_k <= n``.

    The ``k`` values are few, so past the top-k the work is a few Python floats: no tensor
    operation costs less than a microsecond or two. A tie at the boundary (seen in the ``k + 1``-th
    value) or a ``-inf`` among the ``k`` takes an exact tensor route instead.
    """
    values, ids = torch.topk(scores, min(top_k + 1, scores.numel()))  # highest first; one more shows a tie
    levels = values.tolist()
    if len(levels) > top_k and levels[top_k] == levels[top_k - 1]:
        ids = top_k_ids(scores, top_k)  # ascending
        kept = torch.log_softmax(scores[ids] / temperature, 0)
        if top_p < 1.0:
            keep = nucleus_ids(kept, top_p)
            ids, kept = ids[keep], torch.log_softmax(kept[keep], 0)
        kept = cut_min_p(kept, min_p)
        probs = torch.empty(ids.numel(), dtype=torch.float64, device=scores.device)
        return int(ids[_draw(kept, generator, probs, torch.empty_like(probs))])
    levels, positions = levels[:top_k], ids.tolist()[:top_k]
    highest = levels[0]
    masses = [math.exp((level - highest) / temperature) for level in levels]  # unnormalised, float64
    count = top_k
    if top_p < 1.0:
        # The nucleus: words while the mass before each is below top_p (of the top k's mass).
        limit = (top_p - TOP_P_TOLERANCE) * sum(masses)
        count, before = 0, 0.0
        for mass in masses:
            if before >= limit:
                break
            count += 1
            before += mass
        count = max(1, count)
        if count < top_k and levels[count - 1] == levels[count]:
            # It ends inside a run of equal values (whose masses are equal, so the count holds):
            # of those, the lower positions are in. Only equal values move, so levels[i] still
            # holds the value at place i.
            order = sorted(range(top_k), key=lambda i: (-levels[i], positions[i]))
            positions, masses = [positions[i] for i in order], [masses[i] for i in order]
    if min_p > 0.0:
        # min-p: the words whose log-ratio to the top word (after temperature) reaches log(min_p),
        # a prefix of the values (highest first) that never splits a run of equal ones.
        cut = math.log(min_p) - MIN_P_TOLERANCE
        count = sum(1 for level in levels[:count] if (level - highest) / temperature >= cut)
    chosen = sorted(zip(positions[:count], masses[:count], strict=True))  # position order
    cumulative = list(itertools.accumulate(mass for _, mass in chosen))
    draw = float(torch.rand(1, dtype=torch.float64, generator=generator)) * cumulative[-1]
    index = bisect.bisect_right(cumulative, draw)
    if index >= len(chosen):  # the draw rounded up to the total mass: the last possible word
        index = max(i for i, (_, mass) in enumerate(chosen) if mass > 0)
    return chosen[index][0]


def cut_min_p(log_probs: Tensor, min_p: float) -> Tensor:
    """``log_probs (n,)`` with ``-inf``, in place, for the words under ``min_p`` times the top word's probability.

    The samplers' ``filter_min_p`` comparison (in float64, with :data:`MIN_P_TOLERANCE`) without
    its renormalisation: a draw scales by the kept words' total anyway. Off (``min_p`` 0): untouched.
    """
    if min_p <= 0.0:
        return log_probs
    scores = log_probs.double()
    return log_probs.masked_fill_(scores < scores.max() + (math.log(min_p) - MIN_P_TOLERANCE), _NEG_INF)


def _draw(log_probs: Tensor, generator: torch.Generator, probs: Tensor, cumulative: Tensor) -> int:
    """One position of ``log_probs (n,)`` drawn with one uniform, as the samplers' ``sample_index`` does.

    The cumulative distribution is summed in float64 in position order; ``probs`` and
    ``cumulative`` are ``(n,)`` float64 buffers. ``log_probs`` is overwritten (with probabilities).
    """
    probs.copy_(log_probs.exp_())  # exp in float32 (several times cheaper than in float64), summed in float64
    torch.cumsum(probs, 0, out=cumulative)
    draw = torch.rand(1, dtype=torch.float64, generator=generator).to(cumulative.device) * cumulative[-1]
    index = int(torch.searchsorted(cumulative, draw, right=True))
    if index >= probs.numel():  # the draw rounded up to the total mass: the last possible word
        index = int(torch.nonzero(probs)[-1])
    return index


def top_k_ids(scores: Tensor, count: int) -> Tensor:
    """The ids of the ``count`` highest ``scores (V,)`` in ascending id order; boundary ties to lower ids."""
    values, ids = torch.topk(scores, count, sorted=False)
    boundary = values.min()
    if int((scores >= boundary).sum()) > count:  # a tie at the boundary: keep the lower ids
        candidates = torch.nonzero(scores >= boundary).view(-1)  # ascending
        order = torch.sort(scores[candidates], descending=True, stable=True).indices[:count]
        ids = candidates[order]
    return ids.sort().values


def nucleus_ids(log_probs: Tensor, top_p: float) -> Tensor:
    """Positions (ascending) of the top-p set of one normalised row ``(n,)``: the samplers' nucleus.

    The most likely words, ties to the lower position, until the mass taken (summed in float64)
    reaches ``top_p - TOP_P_TOLERANCE``; at least one. Only the best few words' values are sorted
    (64, then 512, then all), as a peaked distribution reaches ``top_p`` early.
    """
    finite = int(torch.isfinite(log_probs).sum())
    count = min(64, finite)
    while True:
        values = torch.topk(log_probs, count).values  # highest first
        probs = values.double().exp()
        mass_before = probs.cumsum(dim=0) - probs
        inside = max(1, int((mass_before < top_p - TOP_P_TOLERANCE).sum()))
        if inside < count or count >= finite:
            break
        smallest = float(probs[-1])
        at_least = count + (top_p - float(mass_before[-1]) - smallest) / smallest if smallest > 0 else math.inf
        count = min(512 if count < 512 and at_least <= 512 else finite, finite)  # 64, 512, all: never the same twice
    last = values[inside - 1]
    keep = log_probs > last
    missing = inside - int(keep.sum())
    tied = torch.nonzero(log_probs == last).view(-1)
    keep[tied[:missing]] = True  # the tied words of lowest position
    return torch.nonzero(keep).view(-1)


# ---- one FastLM per model, rebuilt when its weights change -----------------------------------

_CACHE: weakref.WeakKeyDictionary[nn.Module, tuple[tuple, FastLM]] = weakref.WeakKeyDictionary()
_CACHE_LOCK = threading.Lock()


def fast_lm(model: LSTMLanguageModel, input_table: bool | None = None) -> FastLM:
    """The :class:`FastLM` of ``model``, built on first use and again whenever its weights change.

    Kept in a weak cache (it goes when the model does); its signature check
    (:func:`weights_signature`) costs a few microseconds, so call this once per generation or
    scoring, not per word. A server thus holds one :class:`FastLM` per model it keeps
    (:attr:`FastLM.nbytes` besides the model: 2.7 MB for the demo model), and one
    :class:`Cursor` per text being generated (:attr:`Cursor.nbytes`: 0.23 MB), freed when that
    generation ends.
    """
    signature = (weights_signature(model), input_table)
    with _CACHE_LOCK:
        cached = _CACHE.get(model)
        if cached is not None and cached[0] == signature:
            return cached[1]
        built = FastLM(model, input_table)
        _CACHE[model] = (signature, built)
        return built


_REPLACEABLE = frozenset({"forward", "step", "log_probs"})


def fast_path(model: object) -> FastLM | None:
    """``model``'s :class:`FastLM` where it computes what the model computes, and pays, else None.

    That is an :class:`LSTMLanguageModel` itself (a subclass may compute otherwise) with float32
    weights on the CPU, whose ``forward``, ``step`` and ``log_probs`` are the class's own (a test
    or a wrapper may replace one on the instance). Anything else -- another
    :class:`~lstm_core.model.network.LanguageModel`, half-precision weights -- goes the protocol's way.
    So does a model on a GPU: :class:`FastLM` runs there and gives the same results, but a
    cursor reads a few numbers back to the host per word, which has not been measured against
    the model's own kernels there. Goes through :func:`fast_lm`: call it once per generation or
    scoring.
    """
    if type(model) is not LSTMLanguageModel or not _REPLACEABLE.isdisjoint(vars(model)):
        return None
    if any(parameter.dtype != torch.float32 or parameter.device.type != "cpu" for parameter in model.parameters()):
        return None
    return fast_lm(model)
