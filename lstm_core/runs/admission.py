"""Whether a training run may start: every reason to refuse it, in plain words, before anything is built.

One function decides, for every caller: the command line (before it builds the model), the app's
run starter (before it writes a run folder) and the Train page (before it offers Start). So a
config that one of them refuses, each refuses with the same sentence, and a rule changed here
changes for all three. The rules, in the order their problems are listed:

* enough training words for one window of the batch: ``batch_size x (training_seq_len + 1)``;
* under torchrun, a batch that divides among the processes, and a device each process can use;
* no more parameters than the cap, where there is one (a shared server's);
* a memory estimate (:mod:`lstm_core.model.memory`) within the limit: a given one, or the memory
  this machine gives the process (its container's limit where it has one,
  :mod:`lstm_core.system.resources`) shared by the processes torchrun starts on it.

Each problem names the setting to change. Importing this module does not import torch (the
server's first page imports it); counting parameters does, once a config is checked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lstm_core.config import Config
from lstm_core.errors import InputError
from lstm_core.model.memory import check_memory, estimate_memory, memory_advice
from lstm_core.system.resources import available_resources
from lstm_core.text.cleaning import split_sizes

if TYPE_CHECKING:
    from lstm_core.data.dataset import Dataset

SERVER_LIMIT = "this server's limit per run"
"""How a problem names a shared server's memory cap per run."""


@dataclass(frozen=True)
class TokenCounts:
    """How many words the run's data holds: its training part, and all of it (train, valid, test)."""

    train: int
    total: int

    @classmethod
    def of_dataset(cls, dataset: Dataset) -> TokenCounts:
        """The counts of a prepared dataset."""
        return cls(dataset.train.numel(), dataset.train.numel() + dataset.valid.numel() + dataset.test.numel())

    @classmethod
    def of_split(cls, total: int, fractions: tuple[float, float, float]) -> TokenCounts:
        """The counts a text of ``total`` words will have once split by ``fractions`` (train, valid,
        test), for a caller that has not prepared the dataset yet (the Train page): the same split
        the dataset will get, so the page counts the words the run's process will."""
        return cls(split_sizes(total, fractions)[0], total)


@dataclass(frozen=True)
class AdmissionLimits:
    """The limits a run is admitted against.

    ``memory_limit`` is the bytes one training process may use, and ``memory_limit_name`` how a
    problem names it ("the limit given by --memory-limit-mb"); without one, the limit is this
    machine's memory, shared by the ``processes_here`` processes torchrun starts on it.
    ``processes`` is the number of processes in all (torchrun's world size): the batch is split
    among them, and the memory estimate is for one process with its share. ``local_rank`` picks
    this process's GPU.
    """

    memory_limit: int | None = None
    memory_limit_name: str = SERVER_LIMIT
    max_parameters: int | None = None
    processes: int = 1
    processes_here: int = 1
    local_rank: int = 0

    def memory(self) -> tuple[int | None, str]:
        """The bytes one process may use (None: unknown, so not checked) and how a problem names them."""
        if self.memory_limit is not None:
            return self.memory_limit, self.memory_limit_name
        machine = available_resources().memory_bytes  # the container's limit where it has one
        here = self.processes_here
        if here <= 1:
            return machine, "this machine's memory"
        return (machine // here if machine else machine), f"this machine's memory shared by {here} processes"


def words_problem(config: Config, train_tokens: int) -> str | None:
    """Why the training words cannot fill one window of the batch (None if they can)."""
    from lstm_core.data.batching import min_tokens  # torch, as data/ is; only once a config is checked

    needed = min_tokens(config.batch_size, config.training_seq_len)
    if train_tokens >= needed:
        return None
    return (
        f"The training part of this text has {train_tokens:,} words; batch_size {config.batch_size} x "
        f"(training_seq_len {config.training_seq_len} + 1) needs at least {needed:,} words. "
        "Lower the batch size or sequence length, or choose more text."
    )


def _split_problems(config: Config, limits: AdmissionLimits) -> list[str]:
    """Under torchrun: the batch must divide among the processes, and the device must make sense."""
    if limits.processes <= 1:
        return []
    from lstm_core.training.distributed import check_batch_split, rank_device

    problems = []
    for check in (
        lambda: check_batch_split(config.batch_size, limits.processes),
        lambda: rank_device(config.device, limits.local_rank),
    ):
        try:
            check()
        except InputError as error:
            problems.append(str(error))
    return problems


def admission_problems(
    config: Config, vocab_counts: Sequence[int], tokens: TokenCounts, limits: AdmissionLimits
) -> list[str]:
    """Every reason to refuse training ``config`` on this data within ``limits`` (empty: admitted).

    ``vocab_counts`` are the vocabulary's word counts in id order (``Vocab.counts``): they size the
    model and place its adaptive softmax's clusters.
    """
    from lstm_core.model.network import count_parameters  # torch, once a config is checked

    problems = [problem for problem in [words_problem(config, tokens.train)] if problem]
    problems += _split_problems(config, limits)
    parameters = count_parameters(config, len(vocab_counts), vocab_counts)
    if limits.max_parameters is not None and parameters > limits.max_parameters:
        problems.append(
            f"This model would have {parameters:,} parameters; this server allows {limits.max_parameters:,}. "
            "Choose a smaller rnn_size, embedding_size or fewer layers (or a larger min_word_freq)."
        )
    processes = max(1, limits.processes)
    share = config.replace(batch_size=max(1, config.batch_size // processes)) if processes > 1 else config
    estimate = estimate_memory(share, vocab_counts, tokens.total, parameters)
    memory_limit, name = limits.memory()
    memory = check_memory(estimate, memory_limit, name)
    if memory:
        problems.append(f"{memory} {memory_advice(config)}.")
    return problems
