"""Devices, precision, seeds and threads: chosen once at the edge and passed in."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator

import numpy as np
import torch


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
        raise ValueError(
            f"device {name!r} was asked for, but CUDA is not available on this machine; use 'auto' or 'cpu'"
        )
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"device {name!r} does not exist: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError("device 'mps' was asked for, but Apple's MPS is not available on this machine")
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
