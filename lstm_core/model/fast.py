"""Lean inference for a trained model: one word at a time, and whole texts scored, with exact results.

Generation feeds one word per model call, and at that size the cost is not arithmetic (a 1 x 256
step is a few hundred thousand multiply-adds) but everything around it: a fresh tensor for every
intermediate, oneDNN's fixed cost per ``nn.LSTM`` call, the adaptive softmax's full distribution
when the head alone decides the word. :class:`FastLM` is built once per trained model and answers
the same questions as the model (same probabilities, to float rounding) with less of that, for
each of the three cells (:mod:`lstm_core.model.cells`):

* **Fused gates.** Each layer keeps ``[W_ih | W_hh]`` side by side, so one matrix-vector product
  gives all gates of a layer. An LSTM's gate rows are reordered from PyTorch's (input, forget,
  cell, output) to (input, forget, output, cell), so one ``sigmoid_`` and one ``tanh_`` cover
  them. A GRU's rows become ``(r, z, n from x, n from h)``: its candidate needs the input's and
  the recurrent part apart (``r`` multiplies only the second), so the last two blocks hold
  ``[W_in | 0]`` and ``[0 | W_hn]``. A plain RNN has one block.
* **Input table** (optional, see :data:`INPUT_TABLE_BUDGET`). For layer 0 the input projection
  of word ``w`` is always ``W_ih @ embedding[w]`` plus the biases: a fixed ``(V, kH)`` table
  (``k`` blocks: 4 for the LSTM and the GRU, 1 for the RNN), so a step needs only the recurrent
  product. It costs ``V x kH`` floats (29 MB for 6,924 words and an LSTM of ``H`` = 256) and its
  build costs one ``(V, E) x (E, kH)`` product.
* **Head first.** With the adaptive softmax a tail word's log-prob is its cluster token's head
  log-prob plus a within-cluster log-prob that is never positive. So a cluster whose token is no
  better than the best (greedy) or the ``k``-th best (top-k) head word cannot contain the answer,
  and its tail product (the bulk of the output layer) need not be computed. A
  :class:`~lstm_core.model.cursor.Cursor` computes the head and each tail only when asked; the
  choice that asks (:mod:`lstm_core.sampling.fast_choice`) is sampling's, not the model's.
* **Buffers.** A :class:`~lstm_core.model.cursor.Cursor` (one text being extended) owns its state
  and scratch tensors and writes into them with ``out=`` and in-place operations, so a step
  allocates almost nothing.

Shapes: ``V`` vocabulary size, ``E`` embedding size, ``H`` rnn_size, ``L`` layers, ``B`` rows,
``N`` words of a scored text. States are the model's ``(h, c)``, each ``(L, B, H)`` (``c`` zeros for
the GRU and the RNN, as the model gives it).

:class:`FastLM` holds only read-only tensors and can be shared between threads; a
:class:`~lstm_core.model.cursor.Cursor` belongs to one caller. :func:`fast_lm` caches one :class:`FastLM` per model
and rebuilds it when the model's weights change (training, ``load_state_dict``, ``.to()``).
Generation and scoring (:mod:`lstm_core.sampling`, :func:`lstm_core.evaluation.scoring.score`) take
this path through :func:`fast_path`, which says for which models it stands in.
"""

from __future__ import annotations

import threading
import weakref

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from lstm_core.config import Cell
from lstm_core.model import cells
from lstm_core.model.cursor import Cursor
from lstm_core.model.network import LSTMLanguageModel, State

INPUT_TABLE_BUDGET = 8 * 2**20
"""Bytes up to which :class:`FastLM` builds layer 0's input table unless told otherwise.

The table saves one ``4H x E`` product per word fed: with the 1 x 256 demo model and 1 thread a
step went from 36 to 27 microseconds, a greedy word (step plus output layer) about 7% faster. But
it costs ``V x 4H`` floats, 29 MB for the demo model (three times the model itself) for every
model a server keeps, and 47 ms to build. Small models get it; bigger ones when asked
(``input_table=True``)."""

_SCORE_BLOCK = 2048
"""Positions per block while scoring, so a long text never needs its whole ``(N, V)`` at once."""

_TAIL_ROWS = 256
"""Rows per tail product while scoring: its logits, log-probs and comparisons stay in the cache
(256 x 3,733 words is 3.8 MB) instead of going out to memory between passes."""


def _gate_rows_reordered(tensor: Tensor, hidden_size: int) -> Tensor:
    """Rows ``(i, f, g, o)`` of a ``(4H, ...)`` or ``(4H,)`` tensor -> ``(i, f, o, g)``, a new tensor."""
    i, f, g, o = tensor.split(hidden_size, dim=0)
    return torch.cat([i, f, o, g])


def fused_layer(cell: Cell, weights: list[Tensor], hidden_size: int) -> tuple[Tensor, Tensor]:
    """One layer's ``[W_ih, W_hh, b_ih, b_hh]`` -> ``(weight (kH, in + H), bias (kH,))``: the rows one
    product with ``[x | h]`` turns into every gate (the module's docstring gives each cell's rows)."""
    w_ih, w_hh, b_ih, b_hh = weights
    if cell == "lstm":
        joined = torch.cat([w_ih, w_hh], dim=1)
        return _gate_rows_reordered(joined, hidden_size), _gate_rows_reordered(b_ih + b_hh, hidden_size)
    if cell == "rnn":
        return torch.cat([w_ih, w_hh], dim=1), b_ih + b_hh
    size = 2 * hidden_size  # the GRU: r and z sum both parts; n keeps them apart
    from_input = torch.cat([w_ih, torch.zeros_like(w_ih[:hidden_size])])  # (4H, in): W_ir, W_iz, W_in, 0
    from_hidden = torch.cat([w_hh[:size], torch.zeros_like(w_hh[:hidden_size]), w_hh[size:]])  # W_hr, W_hz, 0, W_hn
    bias = torch.cat([b_ih[:size] + b_hh[:size], b_ih[size:], b_hh[size:]])
    return torch.cat([from_input, from_hidden], dim=1), bias


def advance(cell: Cell, gates: Tensor, h: Tensor, c: Tensor, hidden_size: int) -> tuple[Tensor, Tensor]:
    """Rows of fused pre-activations ``gates (B, kH)`` (:func:`fused_layer`) and ``h, c (B, H)`` -> new ``h, c``."""
    size = hidden_size
    if cell == "lstm":
        sigmoids = gates[:, : 3 * size].sigmoid()
        c = torch.addcmul(sigmoids[:, size : 2 * size] * c, sigmoids[:, :size], gates[:, 3 * size :].tanh())
        return sigmoids[:, 2 * size :] * c.tanh(), c
    if cell == "rnn":
        return gates.tanh(), c
    reset, update = gates[:, : 2 * size].sigmoid().split(size, dim=1)
    candidate = torch.addcmul(gates[:, 2 * size : 3 * size], reset, gates[:, 3 * size :]).tanh()
    return torch.lerp(candidate, h, update), c  # (1 - z) n + z h


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
    entry points are :meth:`cursor` (a text extended word by word in place, its next word's
    distribution computed piece by piece), :meth:`score_ids` and :meth:`score_hidden`.
    """

    def __init__(self, model: LSTMLanguageModel, input_table: bool | None = None) -> None:
        recurrent = model.recurrent
        if recurrent.bidirectional or recurrent.proj_size or not recurrent.batch_first:
            raise ValueError("FastLM needs the project's recurrent layers: one direction, no projection, batch first")
        if model.embedding.weight.dtype != torch.float32:
            raise ValueError(
                f"FastLM needs float32 weights (Checkpoint.build_model gives them), got {model.embedding.weight.dtype}"
            )
        self.vocab_size = model.vocab_size
        self.cell = model.cell
        self.hidden_size = hidden = model.rnn_size
        self.num_layers = model.num_layers
        self.embedding_size = model.embedding.embedding_dim
        self.adaptive = model.output_layer == "adaptive"
        weight = model.embedding.weight
        self.device = weight.device
        self.dtype = torch.float32
        blocks = 1 if self.cell == "rnn" else 4
        table_bytes = self.vocab_size * blocks * hidden * weight.element_size()
        if input_table is None:
            input_table = table_bytes <= INPUT_TABLE_BUDGET
        with torch.no_grad():
            self.embedding = weight.detach()
            # Per layer: the fused (W_ih | W_hh), (kH, in + H), and its biases, (kH,): see fused_layer.
            self.layer_weights: list[Tensor] = []
            self.layer_biases: list[Tensor] = []
            for layer in range(self.num_layers):
                weights = [w.detach() for w in cells.layer_weights(recurrent, layer)]
                fused_weight, fused_bias = fused_layer(self.cell, weights, hidden)
                self.layer_weights.append(fused_weight)
                self.layer_biases.append(fused_bias)
            # Layer 0's input projection of every word, (V, kH), and its recurrent weights alone, (kH, H).
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
        self.cluster_starts = [start for start, _ in self.clusters]
        # Scoring reads a whole text with oneDNN's kernel (far cheaper per word than any one-word
        # loop), through a private module that shares the model's parameters and stays in eval.
        with torch.device("meta"):
            self._recurrent = cells.recurrent_module(self.cell, self.embedding_size, hidden, self.num_layers, 0.0)
        for name in self._recurrent._flat_weights_names:
            setattr(self._recurrent, name, getattr(recurrent, name))
        self._recurrent.eval()

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
        new_h, new_c = [], []
        x = h[0]  # replaced by each layer's output
        with torch.no_grad():
            for layer in range(self.num_layers):
                if layer == 0 and self.input_table is not None:
                    gates = torch.addmm(self.input_table[ids], h[0], self.recurrent_weight0.t())  # (B, kH)
                else:
                    inputs = self.embedding[ids] if layer == 0 else x
                    joined = torch.cat([inputs, h[layer]], dim=1)  # (B, in + H)
                    gates = torch.addmm(self.layer_biases[layer], joined, self.layer_weights[layer].t())
                x, c_layer = advance(self.cell, gates, h[layer], c[layer], self.hidden_size)
                new_h.append(x)
                new_c.append(c_layer if self.cell == "lstm" else torch.zeros_like(x))
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
        recurrent layers read the text in one pass from the zero state; see :meth:`score_hidden` for the rest.
        """
        ids = ids.to(self.device).view(-1)
        if ids.numel() < 2:
            raise ValueError(f"scoring needs at least two words, got {ids.numel()}")
        with torch.no_grad():
            hidden = self._recurrent(self.embedding[ids[:-1]].unsqueeze(0))[0][0]  # (N - 1, H)
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
        bounds = torch.tensor(self.cluster_starts, device=targets.device)
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


# ---- one FastLM per model, rebuilt when its weights change -----------------------------------

_CACHE: weakref.WeakKeyDictionary[nn.Module, tuple[tuple, FastLM]] = weakref.WeakKeyDictionary()
_CACHE_LOCK = threading.Lock()


def fast_lm(model: LSTMLanguageModel, input_table: bool | None = None) -> FastLM:
    """The :class:`FastLM` of ``model``, built on first use and again whenever its weights change.

    Kept in a weak cache (it goes when the model does); its signature check
    (:func:`weights_signature`) costs a few microseconds, so call this once per generation or
    scoring, not per word. A server thus holds one :class:`FastLM` per model it keeps
    (:attr:`FastLM.nbytes` besides the model: 2.7 MB for the demo model), and one
    :class:`~lstm_core.model.cursor.Cursor` per text being generated (its ``nbytes``: 0.23 MB),
    freed when that generation ends.
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
