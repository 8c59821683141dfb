"""Training one model on several processes: torchrun starts them, DistributedDataParallel joins them.

    torchrun --nproc_per_node=N -m lstm_core train ...

Each process (a *rank*) runs the same :class:`~lstm_core.training.trainer.Trainer` with a
:class:`DistributedContext`: its rank, the number of ranks, its device and the process group.
A single process is the world of size 1, and every method here is then a no-op, so the trainer
has one code path. How the ranks share the work::

    single process, batch_size 4:     rows 0 1 2 3 of the contiguous streams (see batching.py)
    2 ranks, batch_size 4:            rank 0 trains rows 0 1, rank 1 trains rows 2 3

Rank ``r`` of ``N`` trains rows ``[r*B/N, (r+1)*B/N)`` of exactly the streams one process would
build, so together the ranks see the single-process batch. Each rank's loss is the mean over its
own ``B/N x T`` words and DistributedDataParallel averages the gradients over the ranks, which is
the gradient of the mean over all ``B x T`` words: the ranks take the steps one process would
take, up to float rounding (sums in another order). ``batch_size`` must therefore divide by the
number of ranks (:func:`check_batch_split` refuses it otherwise; an uneven split would weight the
words of the smaller shares more).

The backend is NCCL for CUDA tensors and Gloo for CPU tensors (one group with both where CUDA
is there, so small CPU messages such as the run's setup need no GPU copy). Rank ``r`` on a
machine uses ``cuda:LOCAL_RANK``. Every collective waits at most the group's timeout for the
other ranks; a rank that dies is noticed sooner by torchrun's agent, which ends the others.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import re
import socket
import time
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from lstm_core.errors import InputError
from lstm_core.system.processes import process_alive, process_start_time, process_stat
from lstm_core.system.runtime import resolve_device
from lstm_core.training.events import StopReason

if TYPE_CHECKING:
    from torch.distributed import ProcessGroup

DEFAULT_TIMEOUT_MINUTES = 5.0
"""How long a rank waits for the others at a collective before the run fails. Long enough for
rank 0 to prepare a large text and save a large checkpoint while the others wait; short enough
that a rank that hangs (alive but stuck) ends the run within minutes, not PyTorch's default 30."""
_HOST_BYTES = 64
STOP_PRECEDENCE: tuple[StopReason, ...] = ("interrupted", "stopped", "idle")
"""When ranks were asked to stop for different reasons at once, the first of these is the run's."""


@dataclass(frozen=True)
class Peer:
    """One rank's process, as every rank learns it when the run starts: to say which one was lost."""

    rank: int
    host: str
    pid: int
    start: int | None  # see processes.process_start_time: with the pid, it names the process for good
    machine: int = 0  # tells machines apart where host names repeat (see _machine_id)


def _buffer_sync_argument(ddp: type) -> str:
    """The name of DistributedDataParallel's switch for syncing buffers in each forward pass:
    ``forward_sync_buffers`` since torch 2.13 (which deprecates the old name), ``broadcast_buffers``
    before (the torch of a machine's own image may be older than the pinned one)."""
    parameters = inspect.signature(ddp).parameters
    return "forward_sync_buffers" if "forward_sync_buffers" in parameters else "broadcast_buffers"


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands in the run: ``rank`` of ``size``, its device, its process group.

    ``group`` is None for a single process (``size`` 1); then every collective returns its
    input unchanged and :meth:`wrap` returns the module itself.
    """

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    group: ProcessGroup | None = None
    peers: tuple[Peer, ...] = ()

    @classmethod
    def single(cls, device: torch.device) -> DistributedContext:
        """The world of one process, on ``device``."""
        return cls(device=device)

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that writes the run's files and reports its events."""
        return self.rank == 0

    @property
    def backend(self) -> str | None:
        """``nccl`` or ``gloo``: what carries this rank's training tensors (None for one process)."""
        if self.group is None:
            return None
        return "nccl" if self.device.type == "cuda" else "gloo"

    def on_device(self, name: str) -> DistributedContext:
        """This context with the device a config's ``device`` means for this rank (see :func:`rank_device`)."""
        device = resolve_device(name) if self.group is None else rank_device(name, self.local_rank)
        return replace(self, device=device)

    # ---- the data ----

    def training_rows(self, batch_size: int) -> slice:
        """This rank's rows of the ``(batch_size, n)`` training streams: ``[r*B/N, (r+1)*B/N)``."""
        check_batch_split(batch_size, self.size)
        share = batch_size // self.size
        return slice(self.rank * share, (self.rank + 1) * share)

    def share(self, total: int) -> tuple[int, int]:
        """``[first, last)`` of ``total`` items split as evenly as possible (the first ranks get
        one more; a rank may get none). For validation rows, which need not divide evenly."""
        return self.rank * total // self.size, (self.rank + 1) * total // self.size

    # ---- collectives (all ranks must call them, in the same order) ----

    def sum(self, tensor: Tensor) -> Tensor:
        """``tensor`` summed over the ranks, in place (every rank gets the sum)."""
        if self.group is not None:
            import torch.distributed as dist

            dist.all_reduce(tensor, op=dist.ReduceOp.SUM, group=self.group)
        return tensor

    def mean(self, tensor: Tensor) -> Tensor:
        """``tensor`` averaged over the ranks, in place."""
        return self.sum(tensor).div_(self.size) if self.group is not None else tensor

    def gather(self, tensor: Tensor) -> list[Tensor]:
        """Every rank's ``tensor`` (the same shape on all), in rank order, on every rank."""
        if self.group is None:
            return [tensor]
        import torch.distributed as dist

        parts = [torch.empty_like(tensor) for _ in range(self.size)]
        dist.all_gather(parts, tensor.contiguous(), group=self.group)
        return parts

    def agree_to_end(
        self, stop: StopReason | None, out_of_time: bool, clock: float
    ) -> tuple[StopReason | None, bool, float]:
        """What every rank decides at a step where the run may end: (the stop reason, or None;
        whether the time is up; the run's clock), from this rank's own ``stop``, ``out_of_time`` and ``clock``.

        A stop asked of any rank (a signal reaches each) stops them all, for the first reason of
        :data:`STOP_PRECEDENCE` asked; rank 0's clock alone is the run's, so it alone decides the time
        limit and the time budget's schedule. So every rank leaves the loop at the same step. One
        process gets its own values back.
        """
        if self.group is None:
            return stop, out_of_time, clock
        # (one count per stop reason, rank 0's "out of time", rank 0's clock): summed over the ranks
        flags = torch.zeros(len(STOP_PRECEDENCE) + 2, dtype=torch.float64, device=self.device)
        if stop is not None:
            flags[STOP_PRECEDENCE.index(stop)] = 1
        if self.is_main:
            flags[-2] = float(out_of_time)
            flags[-1] = clock
        asked = self.sum(flags).tolist()
        agreed = next((reason for reason, count in zip(STOP_PRECEDENCE, asked, strict=False) if count), None)
        return agreed, bool(asked[-2]), asked[-1]

    def broadcast_bytes(self, data: bytes | None) -> bytes:
        """Rank 0's ``data`` on every rank (the others pass None). Sent as CPU tensors (Gloo):
        first the length, then the bytes; nothing is pickled."""
        if self.group is None:
            if data is None:
                raise ValueError("a single process has no rank 0 to receive from")
            return data
        import torch.distributed as dist

        length = torch.tensor([len(data) if self.is_main and data is not None else 0], dtype=torch.int64)
        dist.broadcast(length, src=0, group=self.group)
        if self.is_main:
            buffer = torch.frombuffer(bytearray(data or b""), dtype=torch.uint8)
        else:
            buffer = torch.empty(int(length.item()), dtype=torch.uint8)
        if buffer.numel():
            dist.broadcast(buffer, src=0, group=self.group)
        return buffer.numpy().tobytes()

    def wrap(self, module: nn.Module, find_unused_parameters: bool = False) -> nn.Module:
        """``module`` under DistributedDataParallel (which averages its gradients over the ranks
        during the backward pass), or ``module`` itself for one process.

        ``find_unused_parameters`` is needed when a step may leave parameters without a gradient
        on some rank (the adaptive softmax's tail clusters, when a rank's words miss a cluster);
        DDP then counts them as zero on that rank instead of waiting for them.
        """
        if self.group is None:
            return module
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [self.device.index] if self.device.type == "cuda" else None
        # No syncing of buffers: the model's only buffer is a constant (the adaptive cutoffs).
        options: dict[str, Any] = {_buffer_sync_argument(DistributedDataParallel): False}
        return DistributedDataParallel(
            module,
            device_ids=device_ids,
            process_group=self.group,
            find_unused_parameters=find_unused_parameters,
            **options,
        )

    def lost_rank_message(self, error: BaseException, wait_s: float = 3.0) -> str:
        """What to say when a collective failed because another rank is gone or stopped answering.

        The collective's own error names an address, not a rank. Ranks on this machine are
        looked up by their process: one that has ended is named (waiting up to ``wait_s`` for it,
        since its connections may close a moment before it does). A rank elsewhere, or one that
        hangs without ending, cannot be told from here; torchrun's summary and the other
        machines' output name it.
        """
        machine = _machine_id()
        others = [peer for peer in self.peers if peer.rank != self.rank]
        local = [peer for peer in others if peer.machine == machine]
        deadline = time.monotonic() + wait_s
        while True:
            ended = [peer for peer in local if not process_alive(peer.pid, peer.start)]
            if ended or time.monotonic() >= deadline:
                break
            time.sleep(0.05)
        detail = _short_error(error)
        if ended:
            names = ", ".join(f"rank {peer.rank} (pid {peer.pid})" for peer in ended)
            verb = "has" if len(ended) == 1 else "have"
            return f"{names} {verb} ended unexpectedly, so this run on {self.size} processes stopped ({detail})"
        suspended = [peer for peer in local if _process_state(peer.pid) in ("T", "t")]
        if suspended:
            names = ", ".join(f"rank {peer.rank} (pid {peer.pid})" for peer in suspended)
            verb = "is" if len(suspended) == 1 else "are"
            return f"{names} {verb} suspended (stopped by a signal) and did not answer in time ({detail})"
        remote = sorted({peer.host for peer in others if peer.machine != machine})
        where = f" or on {', '.join(remote)} (torchrun's output there names a rank that ended)" if remote else ""
        return (
            f"another rank failed or did not answer in time, and every rank on this machine is still running: "
            f"one hangs here{where} ({detail})"
        )

    def close(self) -> None:
        """Leave the process group (a no-op for one process)."""
        if self.group is not None:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()


def check_batch_split(batch_size: int, size: int) -> None:
    """Refuse a ``batch_size`` that does not divide among ``size`` ranks, naming sizes that do."""
    if size > 1 and batch_size % size:
        lower = batch_size - batch_size % size
        higher = lower + size
        choices = f"{lower} or {higher}" if lower > 0 else f"{higher}"
        raise InputError(
            f"batch_size {batch_size} does not divide among {size} processes: each trains an equal share of "
            f"the streams, so use a multiple of {size} (e.g. {choices})"
        )


def rank_seed(seed: int, rank: int, step: int = 0) -> int:
    """The seed of rank ``rank``'s random stream (dropout), so that ranks draw different masks.

    Rank 0 at step 0 keeps the run's own seed. The others get a seed derived from (seed, rank,
    step): the step is there for a resume on a different number of ranks, where a rank without
    a saved random state starts a fresh stream instead of repeating the one it began the run with.
    """
    if rank == 0 and step == 0:
        return seed
    digest = hashlib.sha256(f"lstm-playhouse:{seed}:{rank}:{step}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1  # below 2**63, as torch.manual_seed wants


def torchrun_ranks() -> tuple[int, int, int] | None:
    """``(rank, world size, local rank)`` when torchrun (or a launcher like it) started this
    process as one of several; None for a single process (including torchrun with one process)."""
    names = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
    if not all(name in os.environ for name in names):
        return None
    try:
        rank, size, local_rank = (int(os.environ[name]) for name in names)
    except ValueError:
        raise InputError("RANK, WORLD_SIZE and LOCAL_RANK must be whole numbers (they are set by torchrun)") from None
    if size <= 1:
        return None
    if not (0 <= rank < size and local_rank >= 0):
        raise InputError(f"RANK {rank} is not within WORLD_SIZE {size} (they are set by torchrun)")
    return rank, size, local_rank


def local_world_size(size: int) -> int:
    """How many of the ``size`` processes torchrun starts on this machine (``LOCAL_WORLD_SIZE``)."""
    try:
        return max(1, min(size, int(os.environ.get("LOCAL_WORLD_SIZE", size))))
    except ValueError:
        return size


def rank_device(name: str, local_rank: int) -> torch.device:
    """The device a config's ``device`` means for the rank with this ``local_rank``.

    CUDA means ``cuda:LOCAL_RANK`` (one GPU per process, as torchrun's ``--nproc_per_node``
    counts them); the CPU is the CPU. An explicit ``cuda:N`` is refused: under torchrun the
    local rank picks the GPU. Apple's MPS has no distributed backend; ``auto`` falls back to
    the CPU there and an explicit ``mps`` is refused.
    """
    if name == "mps":
        raise InputError("Apple's MPS cannot train with several processes (PyTorch has no backend for it); use cpu")
    if name.startswith("cuda:"):
        raise InputError(
            f"device {name!r}: with several processes each one uses the GPU of its local rank; "
            "use --device cuda (or auto)"
        )
    device = resolve_device(name)
    if device.type == "mps":
        device = torch.device("cpu")
    if device.type == "cuda":
        count = torch.cuda.device_count()
        if local_rank >= count:
            raise InputError(
                f"this machine has {count} CUDA device(s), but torchrun started a process with local rank "
                f"{local_rank} on it; use --nproc_per_node {count} or fewer"
            )
        return torch.device("cuda", local_rank)
    return device


def start(timeout_s: float = DEFAULT_TIMEOUT_MINUTES * 60) -> DistributedContext:
    """Join the process group torchrun set up (its address and port are in the environment).

    Returns a context on the CPU; :meth:`DistributedContext.on_device` then picks the rank's
    device once the run's config is known. Where CUDA is there, the group carries CUDA tensors
    with NCCL and CPU tensors with Gloo; elsewhere everything goes through Gloo.
    """
    ranks = torchrun_ranks()
    if ranks is None:
        return DistributedContext()
    import torch.distributed as dist

    if not dist.is_available():
        raise InputError("this PyTorch build has no torch.distributed, so it cannot train with several processes")
    rank, size, local_rank = ranks
    backend = "gloo"
    if torch.cuda.is_available() and dist.is_nccl_available():
        backend = "cpu:gloo,cuda:nccl"
        if local_rank < torch.cuda.device_count():
            torch.cuda.set_device(local_rank)  # NCCL's communicator binds to the current device
    dist.init_process_group(backend=backend, rank=rank, world_size=size, timeout=timedelta(seconds=timeout_s))
    context = DistributedContext(rank=rank, size=size, local_rank=local_rank, group=dist.group.WORLD)
    return replace(context, peers=_gather_peers(context))


def _gather_peers(context: DistributedContext) -> tuple[Peer, ...]:
    """Every rank's host, pid, process start time and machine, gathered once (CPU tensors, no pickling)."""
    pid = os.getpid()
    start = process_start_time(pid)
    host = socket.gethostname().encode("utf-8")[:_HOST_BYTES]
    mine = torch.zeros(4 + _HOST_BYTES, dtype=torch.int64)
    mine[0], mine[1], mine[2], mine[3] = pid, -1 if start is None else start, _machine_id(), len(host)
    mine[4 : 4 + len(host)] = torch.tensor(list(host), dtype=torch.int64)
    peers = []
    for rank, row in enumerate(context.gather(mine)):
        values = row.tolist()
        name = bytes(values[4 : 4 + values[3]]).decode("utf-8", errors="replace")
        peers.append(Peer(rank, name, values[0], None if values[1] < 0 else values[1], values[2]))
    return tuple(peers)


def _machine_id() -> int:
    """A number for this machine: from Linux's boot id (host names repeat across containers and
    clusters, and a pid means something only on its own machine), else from the host name."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as file:
            key = file.read().strip()
    except OSError:
        key = socket.gethostname()
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little") >> 1


def _process_state(pid: int) -> str | None:
    """The one-letter state of a process from Linux's ``/proc`` (``T``: stopped), or None."""
    fields = process_stat(pid)
    return fields[0] if fields else None


def _short_error(error: BaseException) -> str:
    """The gist of a backend's error: its first sentence, without the source location in front."""
    text = (str(error).strip().splitlines() or [type(error).__name__])[0]
    text = re.sub(r"^\[[^\]]*\]\s*", "", text)  # "[.../gloo/transport/tcp/pair.cc:537] "
    return text.split(". ")[0][:200]


def is_lost_rank_error(error: BaseException) -> bool:
    """Whether ``error`` came from a collective whose other side is gone or did not answer in time."""
    import torch.distributed as dist

    if dist.is_available() and isinstance(error, dist.DistError):
        return True
    text = str(error).lower()
    signs = ("gloo", "nccl", "by peer", "pair closure", "timed out waiting")
    return isinstance(error, RuntimeError) and any(sign in text for sign in signs)
