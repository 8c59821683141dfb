"""One text on the fast path, extended a word at a time: its state and next-word log-probs, on demand.

A :class:`Cursor` is what :meth:`~lstm_core.model.fast.FastLM.cursor` gives: it feeds one word
at a time into buffers it owns (so a step allocates almost nothing), and computes the next word's
distribution piece by piece, only when asked::

    feed(word)             the recurrent layers read the word; the state moves on, in place
    head_log_probs()       the head: its words' log-probs, then one per tail cluster's token
    tail_log_probs(i)      the words of tail cluster i (its token's log-prob plus their own)
    log_probs()            every word: the head and all the tails

Choosing a word from these pieces -- the argmax, a draw after the filters -- is sampling, in
:mod:`lstm_core.sampling.fast_choice`: it asks for a tail only where the tail can hold the choice.
The cursor also keeps the :class:`ChoiceBuffers` that choosing writes into, so that what a text
holds while it is written is counted in one place (:attr:`Cursor.nbytes`).

Shapes: ``V`` vocabulary size, ``H`` rnn_size, ``L`` layers. A full softmax is a head over the
whole vocabulary with no tails.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from lstm_core.model.network import State

if TYPE_CHECKING:
    from lstm_core.model.fast import FastLM


@dataclass(frozen=True)
class ChoiceBuffers:
    """Scratch a choice at one cursor writes into, reused at every position: nothing is allocated per word.

    ``work`` holds a filtered, scaled copy of the log-probs and ``scores`` their renormalised
    form, both ``(V,)`` float32; ``probs`` and ``cumulative`` the draw's probabilities and their
    running sums, ``(V,)`` float64; ``at_least`` ``(clusters, head words)`` float32 comparisons of
    the head's words with each cluster's token (a float result costs a third of a bool one here).
    """

    work: Tensor
    scores: Tensor
    probs: Tensor
    cumulative: Tensor
    at_least: Tensor

    @classmethod
    def for_lm(cls, lm: FastLM) -> ChoiceBuffers:
        vocab, device = lm.vocab_size, lm.device
        return cls(
            work=torch.empty(vocab, device=device, dtype=torch.float32),
            scores=torch.empty(vocab, device=device, dtype=torch.float32),
            probs=torch.empty(vocab, device=device, dtype=torch.float64),
            cumulative=torch.empty(vocab, device=device, dtype=torch.float64),
            at_least=torch.empty(len(lm.clusters), lm.head_words, device=device, dtype=torch.float32),
        )

    @property
    def nbytes(self) -> int:
        buffers = (self.work, self.scores, self.probs, self.cumulative, self.at_least)
        return sum(buffer.numel() * buffer.element_size() for buffer in buffers)


class Cursor:
    """One text being extended a word at a time: its state, next-word log-probs and buffers.

    :meth:`feed` advances the state in place; the next word's distribution is then computed
    lazily, piece by piece (:meth:`head_log_probs`, :meth:`tail_log_probs`, :meth:`log_probs`),
    each at most once per position. Tensors returned by them and :attr:`hidden` are views of the
    cursor's buffers, valid until the next :meth:`feed`: read them, do not change them. One
    caller at a time; make one cursor per text.
    """

    def __init__(self, lm: FastLM, state: State | None = None) -> None:
        self.lm = lm
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
                if lm.cell == "lstm":  # the other cells' c is zeros, read by nothing
                    self._c[layer].copy_(c[layer, 0])
        # The fused pre-activations of one layer, (kH,): LSTM rows i, f, o, g; GRU rows r, z, n's
        # input part, n's recurrent part; a plain RNN's one block (see FastLM).
        self._gates = torch.empty(lm.layer_biases[0].numel(), device=device, dtype=dtype)
        self._sigmoids = self._gates[: (3 if lm.cell == "lstm" else 2) * hidden]
        self._blocks = self._gates.split(hidden)  # views, one per block of rows
        self._full = torch.empty(vocab, device=device, dtype=torch.float32)  # the log-probs, filled lazily
        self._logits = torch.empty(
            max(lm.head_words + len(lm.clusters), vocab - lm.head_words), device=device, dtype=torch.float32
        )
        # The head's log-probs: words then cluster tokens; for a full softmax, the log-probs themselves.
        self._head = (
            torch.empty(lm.head_words + len(lm.clusters), device=device, dtype=torch.float32)
            if lm.adaptive
            else self._full
        )
        self.buffers = ChoiceBuffers.for_lm(lm)
        self._head_ready = False
        self._tails_ready = [False] * len(lm.clusters)
        self._token_log_probs: list[float] = []

    @property
    def vocab_size(self) -> int:
        return self.lm.vocab_size

    @property
    def nbytes(self) -> int:
        """Bytes of the cursor's own buffers: the state, the gates, and a few vocabulary-sized vectors.

        The log-probs, the head's logits and log-probs, the state, and the :class:`ChoiceBuffers`
        (three more float32 and two float64 vectors of ``V`` in all): 0.23 MB for the demo model's
        6,924 words. Freed with the cursor.
        """
        buffers = [*self._joined, *self._c, self._gates, self._full, self._logits]
        if self._head is not self._full:
            buffers.append(self._head)
        return sum(buffer.numel() * buffer.element_size() for buffer in buffers) + self.buffers.nbytes

    # ---- the state ----

    @property
    def hidden(self) -> Tensor:
        """The last layer's output ``(H,)`` at the current position (a view)."""
        return self._h[-1]

    def state(self) -> State:
        """A copy of ``(h, c)``, each ``(L, 1, H)`` (``c`` zeros for the GRU and the RNN)."""
        return torch.stack(self._h).unsqueeze(1), torch.stack(self._c).unsqueeze(1)

    def feed(self, word_id: int) -> None:
        """Advance by one word: the recurrent layers read ``word_id`` and the state moves on, in place."""
        lm = self.lm
        gates = self._gates
        for layer in range(lm.num_layers):
            joined = self._joined[layer]
            if layer == 0 and lm.input_table is not None:
                torch.addmv(lm.input_table[word_id], lm.recurrent_weight0, joined, out=gates)
            else:
                width = joined.numel() - lm.hidden_size
                joined[:width].copy_(lm.embedding[word_id] if layer == 0 else self._h[layer - 1])
                torch.addmv(lm.layer_biases[layer], lm.layer_weights[layer], joined, out=gates)
            h = self._h[layer]
            if lm.cell == "rnn":
                torch.tanh(gates, out=h)
                continue
            self._sigmoids.sigmoid_()
            if lm.cell == "gru":
                reset, update, from_input, from_hidden = self._blocks
                candidate = from_input.addcmul_(reset, from_hidden).tanh_()  # n = tanh(n_x + r n_h)
                h.sub_(candidate).mul_(update).add_(candidate)  # h = n + z (h - n)
                continue
            input_gate, forget_gate, output_gate, candidate = self._blocks
            candidate.tanh_()
            cell_state = self._c[layer]
            cell_state.mul_(forget_gate).addcmul_(input_gate, candidate)
            torch.tanh(cell_state, out=h)
            h.mul_(output_gate)
        self._head_ready = False
        self._tails_ready = [False] * len(lm.clusters)

    # ---- the next word's distribution, piece by piece ----

    def head_log_probs(self) -> Tensor:
        """The head's log-probs ``(head words + clusters,)``: its words', then each tail cluster token's.

        A tail word's log-prob is its token's plus a within-cluster log-prob that is never
        positive, so a token bounds every word of its cluster. Computed once per position.
        """
        if not self._head_ready:
            lm = self.lm
            logits = self._logits[: self._head.numel()]
            torch.addmv(lm.head_bias, lm.head_weight, self.hidden, out=logits)
            torch.log_softmax(logits, 0, out=self._head)
            if lm.adaptive:
                self._full[: lm.head_words].copy_(self._head[: lm.head_words])
                self._token_log_probs = self._head[lm.head_words :].tolist()
            self._head_ready = True
        return self._head

    def token_log_probs(self) -> list[float]:
        """Each tail cluster token's head log-prob, as Python floats (an upper bound on its words')."""
        self.head_log_probs()
        return self._token_log_probs

    def tail_log_probs(self, cluster: int) -> Tensor:
        """The log-probs of tail ``cluster``'s words, a view of the full buffer, computed once per position."""
        lm = self.lm
        start, end = lm.clusters[cluster]
        out = self._full[start:end]
        if not self._tails_ready[cluster]:
            head = self.head_log_probs()
            logits = self._logits[: end - start]
            torch.addmv(lm.output_bias[start:end], lm.output_weight[start:end], self.hidden, out=logits)
            torch.log_softmax(logits, 0, out=out)
            out.add_(head[lm.head_words + cluster])
            self._tails_ready[cluster] = True
        return out

    def log_probs(self) -> Tensor:
        """The next word's normalised log-probabilities ``(V,)``, float32 (a view: clone to keep)."""
        self.head_log_probs()
        for cluster in range(len(self.lm.clusters)):
            self.tail_log_probs(cluster)
        return self._full

    def parts(self, ids: Sequence[int]) -> list[list[int]]:
        """``ids`` grouped by the part of the output layer that computes them: ``[head ids, cluster 0's, ...]``.

        A cluster's ids are given within it (the first word of the cluster is 0). Refuses an id
        outside the vocabulary.
        """
        lm = self.lm
        groups: list[list[int]] = [[] for _ in range(len(lm.clusters) + 1)]
        for word in ids:
            if not 0 <= word < lm.vocab_size:
                raise ValueError(f"word id {word} is outside the vocabulary (0 to {lm.vocab_size - 1})")
            part = bisect.bisect_right(lm.cluster_starts, word)
            groups[part].append(word - (lm.clusters[part - 1][0] if part else 0))
        return groups
