"""How a process's memory is allocated: PyTorch's huge pages, and glibc's freed blocks.

Torch-free, so that a process can choose before PyTorch loads (PyTorch reads its setting once).
"""

from __future__ import annotations

import ctypes
import functools
import os
import platform
import sys

# PyTorch's switch for aligning blocks of 2 MB or more and asking Linux for transparent huge pages.
HUGE_PAGES_VARIABLE = "THP_MEM_ALLOC_ENABLE"


def use_huge_pages() -> None:
    """Let PyTorch back its big blocks with transparent huge pages, unless the environment says
    otherwise; call it before PyTorch loads (the command line does, first of all).

    A training step writes hundreds of MB of fresh activations: with 2 MB pages instead of 4 KB
    the kernel takes 512 times fewer page faults for them, and the ``default`` preset made 1.14x
    the steps per second (``bench/RESULTS.md``). Where the system has huge pages off (``never`` in
    ``/sys/kernel/mm/transparent_hugepage/enabled``) it changes nothing.
    """
    os.environ.setdefault(HUGE_PAGES_VARIABLE, "1")


# glibc's mallopt parameters: the size from which an allocation gets pages of its own (mmap), and
# how much free memory at the heap's top it keeps.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
FREED_MEMORY_THRESHOLD = 128 * 1024


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """This process's C library where it is glibc (whose allocator the functions below tune)."""
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
        libc.malloc_trim.argtypes = (ctypes.c_size_t,)
    except (OSError, AttributeError):
        return None
    return libc


def return_freed_memory() -> bool:
    """From now on give big freed blocks back to the system at once, and give back what the heap
    holds free now; True where this could be done (glibc), False elsewhere.

    A training step allocates and frees the same large tensors again and again. glibc first
    gives a block of 128 KiB or more pages of its own and unmaps them when it is freed, but each
    such free raises that size (up to 32 MiB), so soon every tensor comes from the heap, which
    keeps freed memory and fragments: the ``default`` preset's process, whose working set is
    about 650 MB, settled at 1.6 GB (970 MB with huge pages; ``bench/RESULTS.md``). Fixing the
    size keeps it near the working set, but each step then maps its tensors afresh, at 0.73x the
    steps per second (with huge pages); so training does it only when its memory limit comes
    near (:class:`lstm_core.system.runtime.MemoryWatchdog`).
    """
    libc = _glibc()
    if libc is None:
        return False
    done = bool(libc.mallopt(_M_MMAP_THRESHOLD, FREED_MEMORY_THRESHOLD))
    done = bool(libc.mallopt(_M_TRIM_THRESHOLD, FREED_MEMORY_THRESHOLD)) and done
    trim_heap()
    return done


def trim_heap() -> None:
    """Give the free pages the heap holds back to the system (glibc; elsewhere nothing)."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)
