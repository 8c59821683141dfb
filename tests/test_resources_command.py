"""``python -m lstm_core resources``: the four figures as JSON, the same in words with the app's caps,
a malformed cgroup file as one error line, and output piped into a program that stops reading early.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from functools import partial

import pytest

from lstm_core.cli import resources_command
from lstm_core.cli.main import main
from lstm_core.system import resources as reader
from lstm_core.system.resources import Resources
from tests.containers import ONE_CPU_ONE_GIB, ROOT, TINY_QUOTA, clear_settings, under_cgroup

CPU_MAX_ERROR = "holds 'lots', not a CPU quota ('max 100000' or '<quota> <period>' in microseconds)"


@pytest.fixture
def no_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    clear_settings(monkeypatch)


def fake_reader(monkeypatch: pytest.MonkeyPatch, found: Resources) -> None:
    monkeypatch.setattr(resources_command, "available_resources", lambda: found)


def test_resources_json_is_the_four_figures_and_nothing_else(monkeypatch, capsys):
    fake_reader(monkeypatch, ONE_CPU_ONE_GIB)
    assert main(["resources", "--json"]) == 0
    printed = capsys.readouterr().out
    assert json.loads(printed) == {
        "cpus": 1.0,
        "memory_bytes": 1_073_741_824,
        "cpus_from": "cgroup v2 cpu.max (100000 100000)",
        "memory_from": "cgroup v2 memory.max",
    }
    assert printed.count("\n") == 1  # one line, for a program to read


def test_resources_in_words_say_the_sources_and_what_each_run_may_use(no_settings, monkeypatch, capsys):
    fake_reader(monkeypatch, ONE_CPU_ONE_GIB)
    assert main(["resources"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "CPUs: 1, from cgroup v2 cpu.max (100000 100000)",
        "Memory: 1.0 GiB (1,073,741,824 bytes), from cgroup v2 memory.max",
        "The app's caps here (LSTM_PLAYHOUSE_* settings applied):",
        "  Runs at once: 1 (this server has 1 CPU and 1.0 GiB: one run at a time)",
        "  Threads per run: 1",
        "  Memory per run: up to 674 MB",
    ]
    fake_reader(monkeypatch, TINY_QUOTA)
    assert main(["resources"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("  This server cannot train: it has 0.5 CPUs")


def test_a_malformed_cgroup_file_is_one_error_line_and_exit_code_2(monkeypatch, capsys, tmp_path):
    cgroup_root, proc_root = tmp_path / "cgroup", tmp_path / "proc"
    cgroup_root.mkdir()
    (cgroup_root / "cpu.max").write_text("lots\n")
    monkeypatch.setattr(
        resources_command, "available_resources", partial(reader.available_resources, cgroup_root, proc_root)
    )
    for flags in (["--json"], []):
        assert main(["resources", *flags]) == 2
        out, err = capsys.readouterr()
        assert out == ""
        assert err == f"error: {cgroup_root / 'cpu.max'} {CPU_MAX_ERROR}\n"


def test_a_bad_setting_in_the_human_form_is_one_error_line(no_settings, monkeypatch, capsys):
    fake_reader(monkeypatch, ONE_CPU_ONE_GIB)
    monkeypatch.setenv("LSTM_PLAYHOUSE_MAX_RUNS", "two")
    assert main(["resources"]) == 2
    assert capsys.readouterr().err == "error: LSTM_PLAYHOUSE_MAX_RUNS must be a number, got 'two'\n"


def lstm_core_command(*flags: str, stdout: int | None = subprocess.PIPE) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lstm_core", *flags], cwd=ROOT, stdout=stdout, stderr=subprocess.PIPE, timeout=60
    )


@pytest.mark.slow  # starts the command as a process
def test_resources_json_piped_into_a_program_reads_as_json_and_matches_the_reader():
    done = lstm_core_command("resources", "--json")
    assert done.returncode == 0 and done.stderr == b""
    assert json.loads(done.stdout) == reader.available_resources().as_dict()
    head = subprocess.run(
        f"{sys.executable} -m lstm_core resources --json | head -c 10",
        shell=True,
        cwd=ROOT,
        capture_output=True,
        timeout=60,
    )
    assert head.returncode == 0 and head.stderr == b""
    assert head.stdout == done.stdout[:10]


@pytest.mark.slow  # starts the command as a process
def test_a_pipe_closed_before_the_output_ends_the_command_quietly():
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before a byte is written: every write fails
    try:
        done = lstm_core_command("resources", "--json", stdout=write_end)
    finally:
        os.close(write_end)
    assert (done.returncode, done.stderr) == (0, b"")


# ---- under a real cgroup v2 view (root, a private mount) --------------------------------------------


@pytest.mark.slow  # starts the command as a process
def test_under_one_cpu_and_one_gib_the_command_reports_them(tmp_path):
    done = under_cgroup(
        "100000 100000", "1073741824", [sys.executable, "-m", "lstm_core", "resources", "--json"], tmp_path / "data"
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "cpus": 1.0,
        "memory_bytes": 1_073_741_824,
        "cpus_from": "cgroup v2 cpu.max (100000 100000)",
        "memory_from": "cgroup v2 memory.max",
    }


@pytest.mark.slow  # starts the command as a process
def test_under_a_malformed_cpu_max_the_command_says_so_in_one_line(tmp_path):
    done = under_cgroup(
        "lots", "1073741824", [sys.executable, "-m", "lstm_core", "resources", "--json"], tmp_path / "data"
    )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.splitlines() == [f"error: /sys/fs/cgroup/cpu.max {CPU_MAX_ERROR}"]
