"""Containers for the tests: fake resources, no caps set, and a real cgroup v2 view of a quota.

A fake :class:`Resources` value stands for what a container gives the process. :func:`under_cgroup`
runs a command with a private ``/sys/fs/cgroup`` holding a ``cpu.max`` and a ``memory.max``
(TESTING.md's ``unshare -m`` recipe, as root), so the real reader sees that quota; where this machine
cannot do that, the test is skipped with the reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from lstm_core.system.resources import Resources

ROOT = Path(__file__).resolve().parent.parent
GIB = 1024**3
ONE_CPU_ONE_GIB = Resources(1.0, GIB, "cgroup v2 cpu.max (100000 100000)", "cgroup v2 memory.max")
FOUR_CPUS_EIGHT_GB = Resources(4.0, 8 * 10**9, "CPU affinity (4 CPUs)", "cgroup v2 memory.max")
TINY_QUOTA = Resources(0.5, 600 * 1024**2, "cgroup v2 cpu.max (50000 100000)", "cgroup v2 memory.max")
"""Half a CPU and 600 MiB: 229 MB beside the server, less than a training process needs before its model."""
MOUNT = "mount -t tmpfs none /sys/fs/cgroup"


def clear_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """No ``LSTM_PLAYHOUSE_*`` cap set (the data folder kept): every default is the one sized to the resources."""
    for name in list(os.environ):
        if name.startswith("LSTM_PLAYHOUSE_") and name != "LSTM_PLAYHOUSE_DATA":
            monkeypatch.delenv(name)


def cgroup_view_problem() -> str | None:
    """Why this machine cannot give a command a private ``/sys/fs/cgroup`` (None if it can)."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return "mounting a fake /sys/fs/cgroup needs root and unshare"
    probe = subprocess.run(["unshare", "-m", "sh", "-c", MOUNT], capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        return f"this machine refuses a private mount: {probe.stderr.strip()}"
    return None


def cgroup_prefix(cpu_max: str, memory_max: str) -> list[str]:
    """What to put before a command so that it runs under a private ``/sys/fs/cgroup`` holding
    ``cpu_max`` and ``memory_max`` (the mount is gone when the command ends); skips the test where
    this machine cannot do that."""
    problem = cgroup_view_problem()
    if problem is not None:
        pytest.skip(problem)
    files = f'echo "{cpu_max}" > /sys/fs/cgroup/cpu.max && echo "{memory_max}" > /sys/fs/cgroup/memory.max'
    return ["unshare", "-m", "sh", "-c", f'{MOUNT} && {files} && exec "$@"', "sh"]


def under_cgroup(cpu_max: str, memory_max: str, command: list[str], data: Path) -> subprocess.CompletedProcess:
    """``command`` run to its end under a cgroup v2 view (:func:`cgroup_prefix`), with no
    ``LSTM_PLAYHOUSE_*`` caps set and ``data`` as its data folder."""
    prefix = cgroup_prefix(cpu_max, memory_max)
    env = {name: value for name, value in os.environ.items() if not name.startswith("LSTM_PLAYHOUSE_")}
    env |= {"LSTM_PLAYHOUSE_DATA": str(data), "PYTHONPATH": str(ROOT)}
    return subprocess.run([*prefix, *command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
