"""The CPUs and memory a process may use (lstm_core/system/resources.py), from fake and real cgroups."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lstm_core.errors import InputError
from lstm_core.system.resources import Resources, available_resources

ROOT = Path(__file__).resolve().parent.parent
GIB = 1024**3
PHYSICAL = 16 * GIB
V1_UNLIMITED = 9_223_372_036_854_771_712  # what v1 writes for "no limit", with 4 KiB pages


def container(tmp_path: Path, own_cgroups: str | None, files: dict[str, str]) -> tuple[Path, Path]:
    """A fake ``/sys/fs/cgroup`` holding ``files`` (paths relative to it) and a fake ``/proc`` whose
    ``self/cgroup`` says ``own_cgroups`` (no such file for None)."""
    cgroup_root, proc_root = tmp_path / "cgroup", tmp_path / "proc"
    cgroup_root.mkdir(parents=True)
    (proc_root / "self").mkdir(parents=True)
    if own_cgroups is not None:
        (proc_root / "self" / "cgroup").write_text(own_cgroups)
    for name, text in files.items():
        path = cgroup_root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
    return cgroup_root, proc_root


def resources(tmp_path: Path, own_cgroups: str | None, files: dict[str, str], affinity: int = 4) -> Resources:
    cgroup_root, proc_root = container(tmp_path, own_cgroups, files)
    return available_resources(cgroup_root, proc_root, affinity=affinity, physical=PHYSICAL)


def test_without_cgroup_files_the_affinity_and_the_physical_memory_are_the_answer(tmp_path):
    found = resources(tmp_path, None, {}, affinity=3)
    assert found == Resources(3.0, PHYSICAL, "CPU affinity (3 CPUs)", "physical memory")


def test_a_cgroup_v2_quota_and_memory_limit_lower_the_affinity_and_the_physical_memory(tmp_path):
    found = resources(tmp_path, "0::/\n", {"cpu.max": "150000 100000", "memory.max": str(2 * GIB)})
    assert found == Resources(1.5, 2 * GIB, "cgroup v2 cpu.max (150000 100000)", "cgroup v2 memory.max")


def test_max_in_cgroup_v2_means_no_limit(tmp_path):
    found = resources(tmp_path, "0::/\n", {"cpu.max": "max 100000", "memory.max": "max"}, affinity=2)
    assert found == Resources(2.0, PHYSICAL, "CPU affinity (2 CPUs)", "physical memory")


def test_a_quota_above_the_affinity_leaves_the_affinity_and_a_fraction_of_a_cpu_is_kept(tmp_path):
    assert resources(tmp_path / "wide", "0::/\n", {"cpu.max": "800000 100000"}, affinity=2).cpus == 2.0
    small = resources(tmp_path / "small", "0::/\n", {"cpu.max": "7800 100000"}, affinity=2)
    assert small.cpus == pytest.approx(0.078) and small.cpus_from == "cgroup v2 cpu.max (7800 100000)"


def test_a_memory_limit_above_the_physical_memory_is_not_believed(tmp_path):
    found = resources(tmp_path, "0::/\n", {"memory.max": str(64 * GIB)})
    assert found.memory_bytes == PHYSICAL
    assert found.memory_from == "physical memory (cgroup v2 memory.max allows more)"


def test_the_tightest_limit_of_the_cgroup_and_its_parents_wins(tmp_path):
    files = {
        "cpu.max": "max 100000",
        "memory.max": "max",
        "app.slice/cpu.max": "300000 100000",
        "app.slice/memory.max": str(2 * GIB),
        "app.slice/web/cpu.max": "50000 100000",
        "app.slice/web/memory.max": str(3 * GIB),
        "other.slice/memory.max": str(GIB),  # a sibling's limit does not apply
    }
    found = resources(tmp_path, "0::/app.slice/web\n", files)
    assert (found.cpus, found.memory_bytes) == (0.5, 2 * GIB)


def test_inside_a_container_the_mounted_root_holds_its_limits_whatever_path_proc_names(tmp_path):
    # Without a cgroup namespace, /proc names the host's path, which does not exist in the container's mount.
    files = {"cpu.max": "100000 100000", "memory.max": str(GIB)}
    found = resources(tmp_path, "0::/system.slice/docker-0123abcd.scope\n", files)
    assert (found.cpus, found.memory_bytes) == (1.0, GIB)


V1_CGROUPS = "12:memory:/docker/0123abcd\n4:cpu,cpuacct:/docker/0123abcd\n1:name=systemd:/docker/0123abcd\n0::/\n"


def test_cgroup_v1_quota_and_memory_limit_are_read_from_their_controllers(tmp_path):
    files = {
        "cpu,cpuacct/docker/0123abcd/cpu.cfs_quota_us": "50000",
        "cpu,cpuacct/docker/0123abcd/cpu.cfs_period_us": "100000",
        "memory/docker/0123abcd/memory.limit_in_bytes": str(512 * 1024**2),
        "memory/memory.limit_in_bytes": str(V1_UNLIMITED),
    }
    found = resources(tmp_path, V1_CGROUPS, files)
    expected = Resources(
        0.5,
        512 * 1024**2,
        "cgroup v1 cpu.cfs_quota_us / cpu.cfs_period_us (50000 / 100000)",
        "cgroup v1 memory.limit_in_bytes",
    )
    assert found == expected


def test_cgroup_v1_without_a_quota_or_with_the_unlimited_sentinel_has_no_limit(tmp_path):
    files = {
        "cpu,cpuacct/cpu.cfs_quota_us": "-1",
        "cpu,cpuacct/cpu.cfs_period_us": "100000",
        "memory/memory.limit_in_bytes": str(V1_UNLIMITED),
        "memory/docker/0123abcd/memory.limit_in_bytes": str(V1_UNLIMITED),
    }
    found = resources(tmp_path, V1_CGROUPS, files, affinity=2)
    assert found == Resources(2.0, PHYSICAL, "CPU affinity (2 CPUs)", "physical memory")


def test_a_cgroup_v1_hierarchy_mounted_under_one_controllers_name_is_found(tmp_path):
    files = {"cpu/cpu.cfs_quota_us": "100000", "cpu/cpu.cfs_period_us": "100000"}
    assert resources(tmp_path, "3:cpu,cpuacct:/\n", files).cpus == 1.0


@pytest.mark.parametrize(
    ("file", "text", "message"),
    [
        ("cpu.max", "lots", "cpu.max holds 'lots', not a CPU quota"),
        ("cpu.max", "150000 0", "cpu.max holds '150000 0', not a CPU quota"),
        ("cpu.max", "-5 100000", "cpu.max holds '-5 100000', not a CPU quota"),
        ("memory.max", "2G", "memory.max holds '2G', not a memory limit in bytes or 'max'"),
        ("memory/memory.limit_in_bytes", "", "memory.limit_in_bytes holds '', not a memory limit in bytes"),
        ("cpu,cpuacct/cpu.cfs_quota_us", "half", "cpu.cfs_quota_us holds 'half', not a CPU quota"),
    ],
)
def test_a_malformed_cgroup_file_is_a_clear_error_naming_the_file_and_what_it_held(tmp_path, file, text, message):
    cgroup_root, proc_root = container(tmp_path, "4:memory:/\n3:cpu,cpuacct:/\n0::/\n", {file: text})
    with pytest.raises(InputError, match="^" + re.escape(str(cgroup_root / file))) as raised:
        available_resources(cgroup_root, proc_root, affinity=2, physical=PHYSICAL)
    assert message in str(raised.value)


def test_a_malformed_proc_cgroup_file_is_a_clear_error(tmp_path):
    cgroup_root, proc_root = container(tmp_path, "not a cgroup line\n", {})
    with pytest.raises(InputError, match=r"self/cgroup holds 'not a cgroup line', not a 'hierarchy:controllers:/path'"):
        available_resources(cgroup_root, proc_root, affinity=2, physical=PHYSICAL)


def test_a_v1_quota_without_its_period_is_a_clear_error(tmp_path):
    cgroup_root, proc_root = container(tmp_path, "3:cpu:/\n", {"cpu/cpu.cfs_quota_us": "50000"})
    with pytest.raises(InputError, match=r"sets a CPU quota but .*cpu.cfs_period_us is missing"):
        available_resources(cgroup_root, proc_root, affinity=2, physical=PHYSICAL)


def test_without_a_fake_affinity_the_process_own_affinity_is_counted(tmp_path):
    cgroup_root, proc_root = container(tmp_path, None, {})
    found = available_resources(cgroup_root, proc_root)
    assert found.cpus == len(os.sched_getaffinity(0))
    assert found.memory_bytes == os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


READ = "import json; from lstm_core.system.resources import available_resources as r; print(json.dumps(r().as_dict()))"


def run_reader(command: list[str]) -> dict:
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.skipif(shutil.which("taskset") is None, reason="no taskset here")
def test_the_real_reader_counts_the_cpus_taskset_allows():
    found = run_reader(["taskset", "-c", "0", sys.executable, "-c", READ])
    assert (found["cpus"], found["cpus_from"]) == (1.0, "CPU affinity (1 CPU)")


def test_the_real_reader_sees_a_cgroup_v2_quota_of_one_cpu_and_one_gib():
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("mounting a fake /sys/fs/cgroup needs root and unshare")
    mount = "mount -t tmpfs none /sys/fs/cgroup"
    probe = subprocess.run(["unshare", "-m", "sh", "-c", mount], capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        pytest.skip(f"this machine refuses a private mount: {probe.stderr.strip()}")
    limits = 'echo "100000 100000" > /sys/fs/cgroup/cpu.max && echo 1073741824 > /sys/fs/cgroup/memory.max'
    script = f'{mount} && {limits} && exec "$0" -c "$1"'
    found = run_reader(["unshare", "-m", "sh", "-c", script, sys.executable, READ])
    assert found == {
        "cpus": 1.0,
        "memory_bytes": 1_073_741_824,
        "cpus_from": "cgroup v2 cpu.max (100000 100000)",
        "memory_from": "cgroup v2 memory.max",
    }
