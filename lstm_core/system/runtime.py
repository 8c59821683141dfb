"""Devices, precision, seeds and threads: chosen once at the edge and passed in."""

from __future__ import annotations

import contextlib
import math
import os
import random
import threading
import time
from collections.abc import Callable, Iterator

import numpy as np
import torch

from lstm_core.errors import InputError
from lstm_core.system.allocator import return_freed_memory, trim_heap


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then Apple's MPS, then the CPU; an explicit choice must exist."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(
            f"device {name!r} was asked for, but CUDA is not available on this machine; use 'auto' or 'cpu'"
        )
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise InputError(f"device {name!r} does not exist: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise InputError("device 'mps' was asked for, but Apple's MPS is not available on this machine")
    return device


def cpu_supports_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX-512 BF16 or AMX); emulated bf16 is slower."""
    capability = getattr(torch.backends.cpu, "get_cpu_capability", lambda: "")()
    if capability not in ("AVX512", "AVX512_BF16", "AMX"):
        return False
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as file:
            flags = file.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype to use, or None for plain float32.

    ``auto`` means bf16 where the hardware computes it natively (CUDA with bf16 support, or a
    CPU with AVX-512 BF16 / AMX), else fp32. An explicit ``bf16`` is honoured where autocast
    supports it at all.
    """
    if precision == "fp32":
        return None
    if device.type == "cuda":
        # float16 would also need loss scaling; GPUs without bf16 simply train in fp32.
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    if device.type == "cpu":
        if precision == "bf16" or cpu_supports_bf16():
            return torch.bfloat16
        return None
    return None  # MPS: autocast support varies; stay in fp32


@contextlib.contextmanager
def autocast(device: torch.device, dtype: torch.dtype | None) -> Iterator[None]:
    """Mixed precision for the forward pass when ``dtype`` is set; a no-op otherwise."""
    if dtype is None:
        yield
        return
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and PyTorch together."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# ---- memory limits for a training process -----------------------------------------------------


def _statm_bytes(field: int) -> int | None:
    """Field ``field`` of ``/proc/self/statm`` (0: address space, 1: resident) in bytes, or None
    where the system does not say (not Linux)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as file:
            return int(file.read().split()[field]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def resident_bytes() -> int | None:
    """This process's resident memory in bytes (Linux ``/proc``), or None where it is not known."""
    return _statm_bytes(1)


def _virtual_bytes() -> int | None:
    return _statm_bytes(0)


class MemoryWatchdog:
    """Ends this process when its resident memory passes ``limit`` bytes, after trying to stay
    under it.

    A thread reads the resident size every ``interval`` seconds. Past ``pressure`` times the
    limit it makes the allocator give freed memory back (:func:`return_freed_memory`: slower
    steps, but a process whose heap holds freed blocks comes back to its working set), calls
    ``on_pressure(resident)`` once to say so, and from then on trims the heap again, at most
    every ``trim_every`` seconds, while it stays past that line. Past the limit it calls
    ``on_exceed(resident)`` (to record why) and exits the process with ``exit_code`` at once, so
    a run that outgrows its estimate ends itself and no one else. A single allocation far past
    the limit is stopped earlier by :meth:`limit_address_space`.
    """

    def __init__(
        self,
        limit: int,
        on_exceed: Callable[[int], None],
        *,
        exit_code: int,
        interval: float = 0.1,
        on_pressure: Callable[[int], None] | None = None,
        pressure: float = 0.9,
        trim_every: float = 1.0,
    ) -> None:
        self.limit = limit
        self.on_exceed = on_exceed
        self.exit_code = exit_code
        self.interval = interval
        self.on_pressure = on_pressure
        self.pressure_line = int(limit * pressure)
        self.trim_every = trim_every
        self.returning_memory = False
        self._headroom: int | None = None
        self._thread = threading.Thread(target=self._watch, name="memory-watchdog", daemon=True)

    def start(self) -> MemoryWatchdog:
        if resident_bytes() is not None:
            self._thread.start()
        return self

    def _watch(self) -> None:
        last_trim = -math.inf
        while True:
            resident = resident_bytes() or 0
            if resident > self.limit:
                try:
                    self.on_exceed(resident)
                finally:
                    os._exit(self.exit_code)
            now = time.monotonic()
            if resident > self.pressure_line and now - last_trim >= self.trim_every:
                last_trim = now
                if self.returning_memory:
                    trim_heap()
                else:
                    self.returning_memory = True
                    if return_freed_memory() and self.on_pressure is not None:
                        self.on_pressure(resident)
                if self._headroom is not None:
                    # The heap keeps the address space of the pages it gave back, and big blocks
                    # now map more: the limit moves with it, still a single allocation's stop.
                    self.limit_address_space(self._headroom)
            time.sleep(self.interval)

    def limit_address_space(self, headroom: int = 768 * 1024 * 1024) -> None:
        """Make an allocation that would take the process far past the limit fail at once.

        The address space may grow by what the resident size still may, plus ``headroom`` for
        what a process maps without using (thread stacks, allocator arenas: about 600 MB more
        than the resident size for a PyTorch training process here). An allocation past that
        raises an out-of-memory error in the process instead of reaching the machine. The
        watchdog moves this limit when it makes the allocator give memory back (above).
        """
        self._headroom = headroom
        virtual, resident = _virtual_bytes(), resident_bytes()
        if virtual is None or resident is None:
            return
        import resource

        allowed = virtual + max(0, self.limit - resident) + headroom
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        if hard != resource.RLIM_INFINITY:
            allowed = min(allowed, hard)
        resource.setrlimit(resource.RLIMIT_AS, (allowed, hard))
