"""How much memory a training run will need, worked out from its config before anything is built.

A hosted server admits a run only if its estimate fits the per-run cap (and the command line only
if it fits the machine), so a setting such as batch 256 x sequence 200 with the full softmax is
refused with the reason, instead of the server being killed for memory. What grows with the
settings, per training process:

* the runtime: Python, PyTorch and its thread pools, before any data (a constant, measured);
* the data: the id streams of the three splits, 8 bytes a word;
* the parameters ``P``: weights, gradients and the optimizer's state (Adam keeps two numbers a
  parameter), plus the copies made while a checkpoint is written (weights and optimizer state),
  and with weight averaging the average and the raw weights' copy beside it in a checkpoint;
* the activations of one training window of ``N = batch_size x training_seq_len`` words, kept
  for the backward pass: the embeddings, the recurrent cell's gates and states in every layer, and above
  all the output layer: ``N x V`` scores for the full softmax, held about three times over
  (the scores' log-softmax, its gradient, and the gradient of the scores). The adaptive softmax
  scores every word against the head only, plus each tail for the words that fall in it.

The constants below were fitted to the peak resident memory of training processes on this
project's 2-core development machine (PyTorch 2.13, CPU; ``tests/test_memory.py`` checks the
three presets within 30%, ``bench/bench_train.py memory`` prints the table). A GPU's memory
follows the same terms, without the runtime.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

from lstm_core.config import Config

MB = 1_000_000
RUNTIME_BYTES = 310 * MB
"""A training process before its data and model: Python, PyTorch (225 MB after ``import torch``
here), the allocator's and thread pools' working memory."""
OUTPUT_COPIES = 3.0
"""How many ``N x V`` float32 arrays the output layer holds at its peak (scores or their
log-softmax, and two gradients)."""
LSTM_FLOATS_PER_UNIT = 10.0
"""Floats kept per word, layer and hidden unit by the LSTM for its backward pass (four gates, the
cell and hidden states, and the input projection)."""
CELL_FLOATS_PER_UNIT = {"lstm": LSTM_FLOATS_PER_UNIT, "gru": 7.5, "rnn": 2.5}
"""The same for each cell. The LSTM's is fitted; the GRU's (three gate blocks, no cell state) and the
plain RNN's (one block) are scaled from it by their blocks of ``H`` rows, not measured."""
EVAL_ROWS = 16


@dataclass(frozen=True)
class MemoryEstimate:
    """The parts of a training process's peak memory, in bytes."""

    runtime: int
    data: int
    parameters: int
    activations: int
    parameter_count: int

    @property
    def total(self) -> int:
        return self.runtime + self.data + self.parameters + self.activations

    def describe(self) -> str:
        """One line: the total and its parts."""
        return (
            f"about {format_bytes(self.total)} (model, gradients and optimizer {format_bytes(self.parameters)}, "
            f"one batch's activations {format_bytes(self.activations)}, data {format_bytes(self.data)}, "
            f"runtime {format_bytes(self.runtime)})"
        )


def format_bytes(size: float) -> str:
    """``0.4 MB``, ``812 MB``, ``4.3 GB``, ``2,240 TB``: a size in the unit a reader takes in at a glance."""
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if size >= scale or unit == "MB":
            value = size / scale
            return f"{value:,.1f} {unit}" if value < 10 else f"{value:,.0f} {unit}"
    raise AssertionError("unreachable")


def output_width(config: Config, vocab_counts: Sequence[int]) -> float:
    """How many scores the output layer computes per word, on average.

    Full softmax: the whole vocabulary. Adaptive: the head (its words and one score per tail
    cluster) for every word, plus a tail's size for the share of words that fall in that tail.
    """
    vocab_size = max(2, len(vocab_counts))
    if config.output_layer == "full":
        return float(vocab_size)
    from lstm_core.model.network import choose_cutoffs

    cutoffs = choose_cutoffs(vocab_counts)
    bounds = [0, *cutoffs, vocab_size]
    total = float(sum(vocab_counts)) or 1.0
    width = float(bounds[1] + len(bounds) - 2)
    for low, high in itertools.pairwise(bounds[1:]):
        width += (high - low) * sum(vocab_counts[low:high]) / total
    return width


def estimate_memory(
    config: Config, vocab_counts: Sequence[int], tokens: int, parameters: int | None = None
) -> MemoryEstimate:
    """The peak memory of training ``config`` on ``tokens`` words with this vocabulary.

    ``vocab_counts`` are the vocabulary's word counts in id order (``Vocab.counts``: they place
    the adaptive softmax's clusters); ``parameters`` the model's size when the caller has it
    (otherwise it is counted on PyTorch's meta device, which allocates nothing).
    """
    if parameters is None:
        from lstm_core.model.network import count_parameters

        parameters = count_parameters(config, len(vocab_counts), vocab_counts)
    count = parameters
    optimizer_floats = 0 if config.optimizer == "sgd" else 2
    # weights + gradients + optimizer state, and while saving: a copy of the weights and the state;
    # weight averaging adds the average and, while saving, the copy of the raw weights beside it
    averaging_floats = 2 if config.weight_average != "off" else 0
    parameter_bytes = 4 * count * (2 + 2 * optimizer_floats + 1 + averaging_floats)
    words = config.batch_size * config.training_seq_len
    width = output_width(config, vocab_counts)
    output = OUTPUT_COPIES * 4 * words * width
    lstm = CELL_FLOATS_PER_UNIT[config.cell] * 4 * words * config.rnn_size * config.num_layers
    embeddings = 2 * 4 * words * config.embedding_dim
    evaluation = 2 * 4 * EVAL_ROWS * config.training_seq_len * width
    return MemoryEstimate(
        runtime=RUNTIME_BYTES,
        data=8 * tokens,
        parameters=parameter_bytes,
        activations=int(output + lstm + embeddings + evaluation),
        parameter_count=count,
    )


def memory_advice(config: Config) -> str:
    """What to change to need less memory, in the order that helps most."""
    advice = []
    if config.output_layer == "full":
        advice.append("the adaptive output layer")
    advice.append("a smaller batch_size or training_seq_len")
    advice.append("a smaller rnn_size or fewer layers")
    advice.append("a larger min_word_freq (a smaller vocabulary)")
    return "Choose " + ", ".join(advice[:-1]) + " or " + advice[-1]


def check_memory(estimate: MemoryEstimate, limit: int | None, what: str = "this server's limit per run") -> str | None:
    """A message refusing the run if its estimate passes ``limit`` bytes, else None."""
    if limit is None or estimate.total <= limit or math.isinf(limit):
        return None
    return f"This run would need {estimate.describe()}; {what} is {format_bytes(limit)}."
