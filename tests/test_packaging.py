"""The project as others install it: the requirements files, and a wheel that holds the whole package.

``requirements.txt`` (the app's install, the Docker image's) takes every package from PyPI, as CI's
``requirements-dev.txt`` does by including it; the ``Pipfile`` (Streamlit Community Cloud's) lists
the same packages with PyTorch's CPU build from PyTorch's index, and ``pyproject.toml`` the same
again: the first tests keep the lists the same and the other index out of what CI installs.

The checkout and an editable install hide a package that is missing from the wheel (the tests
import ``lstm_core`` from the checkout), so the wheel test builds the wheel offline, installs it
into a fresh virtual environment outside the checkout and runs ``lstm-playhouse`` from a temporary
folder, with nothing of the checkout on ``sys.path``. The new environment reuses this one's
installed dependencies (a ``.pth`` file naming its site-packages), so nothing is downloaded.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import site
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from tests.conftest import TINY_TEXT

ROOT = Path(__file__).resolve().parent.parent
NOT_SOURCES_AT_ROOT = {".git", ".venv", "build", "dist", "runs", "test-artifacts"}
NOT_SOURCES = shutil.ignore_patterns("*.egg-info", "__pycache__", ".*_cache", ".hypothesis")
TINY = ["--rnn-size", "16", "--batch-size", "4", "--training-seq-len", "8", "--epochs", "1", "--min-word-freq", "0"]
TINY += ["--eval-every", "0", "--sample-length", "3", "--threads", "1"]


def requirements(path: Path) -> dict[str, str]:
    """``{name: specifier}`` of a requirements file's packages (options and comments left out)."""
    found = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            requirement = Requirement(line)
            found[requirement.name] = str(requirement.specifier)
    return found


def options(path: Path) -> list[str]:
    """A requirements file's option lines (an index, a file it includes)."""
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.startswith("-")]


def test_what_ci_installs_comes_from_pypi_and_community_cloud_gets_the_cpu_build():
    # CI, the README's install and the Docker image read requirements.txt (through requirements-dev.txt
    # for CI), which must name no other index: CI reaches only PyPI.
    assert options(ROOT / "requirements.txt") == []
    assert options(ROOT / "requirements-dev.txt") == ["-r requirements.txt"]
    # Community Cloud reads the Pipfile before requirements.txt: torch from PyTorch's CPU index.
    pipfile = tomllib.loads((ROOT / "Pipfile").read_text(encoding="utf-8"))
    indexes = {source["name"]: source["url"] for source in pipfile["source"]}
    torch = pipfile["packages"]["torch"]
    assert indexes[torch["index"]] == "https://download.pytorch.org/whl/cpu"
    assert pipfile["requires"]["python_version"] == "3.11"


def test_the_requirements_pipfile_and_pyproject_list_the_same_packages():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared = {
        Requirement(line).name: str(Requirement(line).specifier)
        for line in [*project["dependencies"], *project["optional-dependencies"]["app"]]
    }
    app = requirements(ROOT / "requirements.txt")
    assert app == declared
    pipfile = tomllib.loads((ROOT / "Pipfile").read_text(encoding="utf-8"))["packages"]
    cloud = {name: spec if isinstance(spec, str) else spec["version"] for name, spec in pipfile.items()}
    assert {name: str(Requirement(f"{name}{spec}").specifier) for name, spec in cloud.items()} == app


def test_ci_installs_the_ray_extra_so_the_ray_runners_tests_run():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    (extra,) = [Requirement(line) for line in project["optional-dependencies"]["ray"]]
    lines = [line.split("#", 1)[0].strip() for line in (ROOT / "requirements-dev.txt").read_text().splitlines()]
    (installed,) = [Requirement(line) for line in lines if line.startswith("ray")]
    assert installed.extras == extra.extras == {"default"}
    assert installed.specifier == extra.specifier


def not_sources(folder: str, names: list[str]) -> set[str]:
    """What a copy of the checkout leaves out: environments, build output, runs, caches."""
    ignored = set(NOT_SOURCES(folder, names))
    return ignored | (NOT_SOURCES_AT_ROOT & set(names)) if Path(folder) == ROOT else ignored


def run(command: list[str], cwd: Path, env: dict[str, str], timeout: float = 300) -> str:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{command} failed with {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.mark.slow
def test_the_wheel_holds_every_module_and_its_command_trains_and_generates_outside_the_checkout(tmp_path):
    clean = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONHOME")}
    # Build from a copy: an in-tree build leaves build/ behind, whose stale files a later wheel would ship.
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=not_sources)
    run(
        [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation", "-w", "dist"],
        tmp_path,
        clean,
    )
    (wheel,) = (tmp_path / "dist").glob("lstm_playhouse-*.whl")

    with zipfile.ZipFile(wheel) as archive:
        shipped = set(archive.namelist())
    modules = {path.relative_to(ROOT).as_posix() for path in (ROOT / "lstm_core").rglob("*.py")}
    assert modules, "no modules found under lstm_core/"
    assert sorted(modules - shipped) == []

    environment = tmp_path / "env"
    run([sys.executable, "-m", "venv", "--without-pip", str(environment)], tmp_path, clean)
    python = environment / "bin" / "python"
    site_packages = Path(
        run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], tmp_path, clean).strip()
    )
    # This environment's dependencies, after the new environment's own packages (a .pth line is appended).
    (site_packages / "test-environment-dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", str(wheel)],
        tmp_path,
        clean,
    )

    work = tmp_path / "work"
    work.mkdir()
    env = {**clean, "PATH": f"{environment / 'bin'}{os.pathsep}{clean.get('PATH', '')}"}
    env["LSTM_PLAYHOUSE_DATA"] = str(tmp_path / "data")
    where = run([str(python), "-c", "import sys, lstm_core; print(lstm_core.__file__); print(sys.path)"], work, env)
    package_file, path = where.splitlines()
    assert Path(package_file).is_relative_to(site_packages)
    # The checkout itself is not importable (its .venv may sit inside it, as in CI, and is fine).
    entries = [Path(entry or work).resolve() for entry in ast.literal_eval(path)]
    assert ROOT.resolve() not in entries

    command = str(environment / "bin" / "lstm-playhouse")
    assert "hamlet" in run([command, "plays"], work, env)
    (work / "sonnet.txt").write_text(TINY_TEXT, encoding="utf-8")
    summary = json.loads(
        run(
            [command, "train", "--corpus", "file", "--text-file", "sonnet.txt", "--out", "run", *TINY, "--json"],
            work,
            env,
        )
    )
    assert summary["reason"] == "finished" and summary["steps"] > 0
    generated = run(
        [command, "generate", "--checkpoint", "run/last.pt", "--prime", "thou art more", "-n", "5", "--json"], work, env
    )
    (first,) = json.loads(generated)
    assert first["text"].startswith("thou art more") and len(first["continuation"]) == 5
