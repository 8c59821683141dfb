"""The Docker image as its Dockerfile describes it: how it starts, as whom, where its data lives.

Docker cannot build or run here (no daemon), so these tests read the Dockerfile with a small
parser, and tests/browser/test_container.py runs the image's start command for real, as an
unprivileged user on a read-only copy of the code chosen by ``.dockerignore``.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Image:
    """What a Dockerfile says about the image it builds (the parts a test can check or run)."""

    env: dict[str, str] = field(default_factory=dict)
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    healthcheck: list[str] = field(default_factory=list)
    user: str = "root"
    workdir: str = "/"
    volumes: list[str] = field(default_factory=list)
    exposed: list[str] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)

    @property
    def start_command(self) -> list[str]:
        return [*self.entrypoint, *self.cmd]


def instructions(text: str) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` pairs, continuation lines joined and comments left out."""
    found: list[tuple[str, str]] = []
    pending = ""
    for line in text.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if pending and line.lstrip().startswith("#"):
            continue  # a comment inside a continued instruction
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        whole = (pending + line).strip()
        pending = ""
        name, _, arguments = whole.partition(" ")
        found.append((name.upper(), arguments.strip()))
    assert not pending, "the Dockerfile ends inside a continued instruction"
    return found


def command_form(arguments: str) -> list[str]:
    """An exec-form (JSON) command as it is; a shell-form one as ``/bin/sh -c`` runs it."""
    if arguments.startswith("["):
        command = json.loads(arguments)
        assert all(isinstance(part, str) for part in command), arguments
        return command
    return ["/bin/sh", "-c", arguments]


def read_dockerfile(path: Path = ROOT / "Dockerfile") -> Image:
    image = Image()
    for name, arguments in instructions(path.read_text(encoding="utf-8")):
        if name == "ENV":
            words = shlex.split(arguments)
            if all("=" in word for word in words):
                image.env.update(word.split("=", 1) for word in words)
            else:  # the old form: ENV KEY value
                image.env[words[0]] = " ".join(words[1:])
        elif name == "ENTRYPOINT":
            image.entrypoint, image.cmd = command_form(arguments), []  # a new ENTRYPOINT resets CMD
        elif name == "CMD":
            image.cmd = command_form(arguments)
        elif name == "HEALTHCHECK":
            command = arguments.partition(" CMD ")[2]  # after the options
            image.healthcheck = command_form(command.strip())
        elif name == "USER":
            image.user = arguments
        elif name == "WORKDIR":
            image.workdir = str(PurePosixPath(image.workdir, arguments))
        elif name == "VOLUME":
            image.volumes += json.loads(arguments) if arguments.startswith("[") else arguments.split()
        elif name == "EXPOSE":
            image.exposed += [port.split("/")[0] for port in arguments.split()]
        elif name == "RUN":
            image.runs.append(arguments)
    return image


def ignore_patterns(path: Path = ROOT / ".dockerignore") -> list[re.Pattern[str]]:
    """``.dockerignore``'s patterns as expressions over paths relative to the context (``**`` any
    folders, ``*`` and ``?`` within one name); exceptions (``!``) are not used here."""
    patterns = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        assert not line.startswith("!"), "this parser knows no exceptions"
        expression = ""
        for part in re.split(r"(\*\*/|\*\*|\*|\?)", line.strip("/")):
            expression += {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}.get(part, re.escape(part))
        patterns.append(re.compile(expression))
    return patterns


def context_files(root: Path = ROOT) -> list[str]:
    """The files ``docker build`` sends from ``root`` (relative paths): all but what ``.dockerignore`` names."""
    patterns = ignore_patterns(root / ".dockerignore")

    def ignored(relative: str) -> bool:
        return any(pattern.fullmatch(relative) for pattern in patterns)

    kept = []
    for folder, names, files in os.walk(root):
        base = Path(folder).relative_to(root)
        names[:] = [name for name in names if not ignored((base / name).as_posix())]
        kept += [(base / name).as_posix() for name in files if not ignored((base / name).as_posix())]
    return sorted(kept)


def test_the_parser_reads_both_env_forms_continuations_and_both_command_forms(tmp_path):
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(
        'FROM scratch\n# a comment\nENV A=1 \\\n    B="two words"\nENV C three four\nWORKDIR /app\n'
        'ENTRYPOINT ["tini", "--"]\nCMD python -m app\nUSER 1000\n'
        'HEALTHCHECK --interval=5s CMD ["python", "-c", "pass"]\nVOLUME ["/data"]\nEXPOSE 8501/tcp\n'
    )
    image = read_dockerfile(dockerfile)
    assert image.env == {"A": "1", "B": "two words", "C": "three four"}
    assert image.start_command == ["tini", "--", "/bin/sh", "-c", "python -m app"]
    assert image.healthcheck == ["python", "-c", "pass"]
    assert (image.user, image.workdir, image.volumes, image.exposed) == ("1000", "/app", ["/data"], ["8501"])


def test_the_ignore_patterns_keep_out_folders_at_the_root_and_names_at_any_depth(tmp_path):
    (tmp_path / ".dockerignore").write_text("runs\n**/__pycache__\n*.log\n")
    for name in ("app/a.py", "app/__pycache__/a.pyc", "runs/r/status.json", "app/runs/x.py", "x.log", "app/y.log"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("")
    assert context_files(tmp_path) == [".dockerignore", "app/a.py", "app/runs/x.py", "app/y.log"]


def test_the_image_starts_the_app_under_tini_as_a_user_with_its_data_in_a_volume():
    image = read_dockerfile()
    assert image.entrypoint == ["tini", "-g", "--"]  # SIGTERM to the whole process group: every run saves
    streamlit = ["python", "-m", "streamlit", "run", "streamlit_app.py"]
    assert image.cmd[: len(streamlit)] == streamlit
    assert {"--server.address=0.0.0.0", "--server.headless=true"} <= set(image.cmd)
    assert image.user not in ("root", "0")
    assert image.env["LSTM_PLAYHOUSE_DATA"] in image.volumes
    assert image.exposed == [image.env["STREAMLIT_SERVER_PORT"]]
    assert image.healthcheck[:2] == ["python", "-c"] and "/_stcore/health" in image.healthcheck[2]
    prebuilt = PurePosixPath(image.env["LSTM_PLAYHOUSE_PREBUILT_PLAYS"])
    (build,) = [run for run in image.runs if "lstm_core.text.plays_cache" in run]
    assert f"LSTM_PLAYHOUSE_DATA={prebuilt.parent.parent} " in build  # built where the app will read it


def test_the_build_context_leaves_out_environments_runs_caches_and_version_control():
    files = context_files()
    assert {"streamlit_app.py", "requirements.txt", "models/demo.pt", ".streamlit/config.toml"} <= set(files)
    assert any(name.startswith("lstm_core/sampling/") for name in files)
    unwanted = re.compile(r"^(\.venv|\.git|runs|test-artifacts|tests|build)/|__pycache__|\.pyc$|_cache/")
    assert [name for name in files if unwanted.search(name)] == []
