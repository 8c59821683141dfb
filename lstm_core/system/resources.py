"""The CPUs and memory this process may use, read from where it runs, each with where the figure came from.

A container shares its host's kernel, so ``os.cpu_count()`` and the physical pages describe the
host: on a 64-core host a container given 2 CPUs and 2 GB would size 32 threads per run and admit
runs against hundreds of GB, and the kernel would then kill the app for memory. What the process
may really use is the tightest of:

* CPUs: the affinity mask (``taskset``, ``docker run --cpuset-cpus``), lowered by a CPU quota:
  cgroup v2 ``cpu.max`` (``"<quota> <period>"`` in microseconds, ``"max <period>"`` for none) or
  cgroup v1 ``cpu.cfs_quota_us / cpu.cfs_period_us`` (a quota of -1 for none). A quota may allow
  a fraction of a CPU (Streamlit Community Cloud gives as little as 0.078).
* memory: cgroup v2 ``memory.max`` (``"max"`` for none) or v1 ``memory.limit_in_bytes``, and
  never more than the physical memory.

The process's own cgroup comes from ``/proc/self/cgroup`` (v2: the ``0::/path`` line; v1: the
lines of the ``cpu`` and ``memory`` controllers), and its folder and every parent up to the
cgroup root are read, since a limit set on any of them applies. Inside a container the process's
path often does not exist under the mounted root (the root *is* its cgroup): missing folders are
skipped, so the root's files are what counts. Without any cgroup files (macOS, a bare machine) the
affinity and the physical memory are the answer.

A file that exists but does not hold what the kernel writes there is an :class:`InputError`
naming the file and its contents: a silent default could admit runs the container cannot hold.
Nothing here imports torch.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath

from lstm_core.errors import InputError

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_ROOT = Path("/proc")
V1_UNLIMITED_FROM = 2**62
"""cgroup v1 writes "no memory limit" as the largest page-aligned signed 64-bit number
(9,223,372,036,854,771,712 with 4 KiB pages); no machine has a quarter of that, so any value from
here up is that sentinel."""


@dataclass(frozen=True)
class Resources:
    """What this process may use: ``cpus`` (fractional under a quota) and ``memory_bytes`` (None
    only where the system says nothing), with a few words each on where the figure came from."""

    cpus: float
    memory_bytes: int | None
    cpus_from: str
    memory_from: str

    def as_dict(self) -> dict[str, float | int | str | None]:
        """The fields as JSON-ready values: ``{"cpus": 1.0, "memory_bytes": 1073741824, ...}``."""
        return asdict(self)


def physical_memory() -> int | None:
    """This machine's memory in bytes, where the system says (Linux, macOS)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def affinity_cpus() -> tuple[int, str]:
    """How many CPUs this process may run on, and where that came from."""
    if hasattr(os, "sched_getaffinity"):
        count = len(os.sched_getaffinity(0))
        return count, f"CPU affinity ({count} CPU{'s' if count != 1 else ''})"
    count = os.cpu_count() or 1
    return count, f"CPU count ({count} CPU{'s' if count != 1 else ''})"


def available_resources(
    cgroup_root: Path = CGROUP_ROOT,
    proc_root: Path = PROC_ROOT,
    affinity: int | None = None,
    physical: int | None = None,
) -> Resources:
    """The CPUs and memory this process may use (see the module's docstring for the rules).

    ``affinity`` (a CPU count) and ``physical`` (bytes) stand in for the system's own figures,
    and ``cgroup_root``/``proc_root`` for ``/sys/fs/cgroup`` and ``/proc``, so that a test can
    describe any container. Raises :class:`InputError` for a cgroup file that is not what the
    kernel writes.
    """
    cpus: float
    if affinity is None:
        count, cpus_from = affinity_cpus()
    else:
        count, cpus_from = affinity, f"CPU affinity ({affinity} CPU{'s' if affinity != 1 else ''})"
    cpus = float(count)
    if physical is None:
        physical = physical_memory()
    v2_path, v1_paths = _own_cgroups(proc_root / "self" / "cgroup")

    quotas: list[tuple[float, str]] = []
    limits: list[tuple[int, str]] = []
    for folder in _folders(cgroup_root, v2_path):
        quotas += filter(None, [_v2_cpu(folder / "cpu.max")])
        limits += filter(None, [_v2_memory(folder / "memory.max")])
    for folder in _v1_folders(cgroup_root, "cpu", v1_paths):
        quotas += filter(None, [_v1_cpu(folder / "cpu.cfs_quota_us", folder / "cpu.cfs_period_us")])
    for folder in _v1_folders(cgroup_root, "memory", v1_paths):
        limits += filter(None, [_v1_memory(folder / "memory.limit_in_bytes")])

    quota = min(quotas, default=None)
    if quota is not None and quota[0] < cpus:
        cpus, cpus_from = quota
    memory_bytes = physical
    memory_from = "physical memory" if physical is not None else "unknown (the system does not say)"
    limit = min(limits, default=None)
    if limit is not None and (physical is None or limit[0] < physical):
        memory_bytes, memory_from = limit
    elif limit is not None:
        memory_from = f"physical memory ({limit[1]} allows more)"
    return Resources(cpus, memory_bytes, cpus_from, memory_from)


# ---- finding the process's cgroups ---------------------------------------------------------


def _own_cgroups(path: Path) -> tuple[str, dict[str, tuple[str, str]]]:
    """The process's cgroup v2 path, and for the v1 ``cpu`` and ``memory`` controllers the
    hierarchy's controller list and the path (``{"cpu": ("cpu,cpuacct", "/docker/ab"), ...}``).

    ``/proc/self/cgroup`` has one ``hierarchy:controllers:path`` line per hierarchy: ``0::/path``
    for v2, ``4:cpu,cpuacct:/path`` for v1. Without the file, the v2 path is the root.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return "/", {}
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"cannot read {path}: {error}") from None
    v2_path = "/"
    v1_paths: dict[str, tuple[str, str]] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        parts = line.split(":", 2)
        if len(parts) != 3 or not parts[0].isdigit() or not parts[2].startswith("/"):
            raise InputError(f"{path} holds {line!r}, not a 'hierarchy:controllers:/path' line")
        hierarchy, controllers, cgroup = parts
        if hierarchy == "0" and not controllers:
            v2_path = cgroup
        for controller in controllers.split(","):
            if controller in ("cpu", "memory"):
                v1_paths[controller] = (controllers, cgroup)
    return v2_path, v1_paths


def _folders(root: Path, cgroup: str) -> list[Path]:
    """``root/a/b``, ``root/a``, ``root`` for the cgroup ``/a/b``: the existing ones, deepest first."""
    parts = PurePosixPath(cgroup).parts[1:]
    candidates = (root.joinpath(*parts[:depth]) for depth in range(len(parts), -1, -1))
    return [folder for folder in candidates if folder.is_dir()]


def _v1_folders(cgroup_root: Path, controller: str, v1_paths: dict[str, tuple[str, str]]) -> list[Path]:
    """The folders of a v1 controller's hierarchy (mounted at ``cgroup_root/cpu,cpuacct``, often
    with a ``cpu`` link to it) from the process's cgroup up to the hierarchy's root."""
    if controller not in v1_paths:
        return []
    controllers, cgroup = v1_paths[controller]
    mounts = [cgroup_root / name for name in dict.fromkeys([controllers, controller])]
    mount = next((folder for folder in mounts if folder.is_dir()), None)
    return _folders(mount, cgroup) if mount is not None else []


# ---- reading the files ---------------------------------------------------------------------


def _read(path: Path) -> str | None:
    """The file's text, stripped; None if it does not exist."""
    try:
        return path.read_text(encoding="utf-8").strip()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"cannot read {path}: {error}") from None


def _whole_number(path: Path, text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise InputError(f"{path} holds {text!r}, not {what}") from None


def _v2_cpu(path: Path) -> tuple[float, str] | None:
    text = _read(path)
    if text is None:
        return None
    expected = "a CPU quota ('max 100000' or '<quota> <period>' in microseconds)"
    fields = text.split()
    if len(fields) != 2:
        raise InputError(f"{path} holds {text!r}, not {expected}")
    period = _whole_number(path, fields[1], expected)
    if period <= 0:
        raise InputError(f"{path} holds {text!r}, not {expected}")
    if fields[0] == "max":
        return None
    quota = _whole_number(path, fields[0], expected)
    if quota <= 0:
        raise InputError(f"{path} holds {text!r}, not {expected}")
    return quota / period, f"cgroup v2 cpu.max ({text})"


def _v1_cpu(quota_path: Path, period_path: Path) -> tuple[float, str] | None:
    quota_text = _read(quota_path)
    if quota_text is None:
        return None
    quota = _whole_number(quota_path, quota_text, "a CPU quota in microseconds (-1 for none)")
    if quota == -1:
        return None
    if quota <= 0:
        raise InputError(f"{quota_path} holds {quota_text!r}, not a CPU quota in microseconds (-1 for none)")
    period_text = _read(period_path)
    if period_text is None:
        raise InputError(f"{quota_path} sets a CPU quota but {period_path} is missing")
    period = _whole_number(period_path, period_text, "a CPU period in microseconds")
    if period <= 0:
        raise InputError(f"{period_path} holds {period_text!r}, not a CPU period in microseconds")
    return quota / period, f"cgroup v1 cpu.cfs_quota_us / cpu.cfs_period_us ({quota} / {period})"


def _v2_memory(path: Path) -> tuple[int, str] | None:
    text = _read(path)
    if text is None or text == "max":
        return None
    limit = _whole_number(path, text, "a memory limit in bytes or 'max'")
    if limit < 0:
        raise InputError(f"{path} holds {text!r}, not a memory limit in bytes or 'max'")
    return limit, "cgroup v2 memory.max"


def _v1_memory(path: Path) -> tuple[int, str] | None:
    text = _read(path)
    if text is None:
        return None
    limit = _whole_number(path, text, "a memory limit in bytes")
    if limit < 0:
        raise InputError(f"{path} holds {text!r}, not a memory limit in bytes")
    if limit >= V1_UNLIMITED_FROM:
        return None
    return limit, "cgroup v1 memory.limit_in_bytes"
