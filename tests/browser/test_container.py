"""The Docker image's start command, run here the way the image runs it, then stopped the way ``docker stop`` stops it.

Docker cannot run on this machine, so the test plays the container: it reads the start command
(``ENTRYPOINT`` + ``CMD``), the environment (``ENV``) and the health check from the Dockerfile
(tests/test_docker.py), copies the build context as ``.dockerignore`` chooses it and makes it
read-only, builds the plays' cache as the image's build step does, and runs exactly that command
as an unprivileged user (``nobody`` when the tests run as root) with an empty data folder where
the image has its volume. The image's paths map to temporary folders, and ``docker run -e`` style
settings keep this shared machine quiet (one thread, no downloads). tini's part, which the test
plays itself: ``-g`` sends SIGTERM to the server's whole process group, so the training process
saves before it exits; the run must then resume after the same command starts again.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from app.visitor import Workspace
from bench.bench_app import free_port
from lstm_core.runs import folder as run_files
from tests.browser.conftest import ROOT, START_TIMEOUT_S, new_visitor
from tests.browser.test_runs import PROGRESS, key_of, wait_for
from tests.test_docker import Image, context_files, read_dockerfile

pytestmark = pytest.mark.slow

# The image's folders and what stands for them here.
IMAGE_DATA, IMAGE_PREBUILT = "/data", "/opt/lstm-playhouse"


def stop_timeout_s() -> float:
    """The ``--stop-timeout`` the README's ``docker run`` gives: the grace before docker's SIGKILL."""
    found = re.search(r"docker run [^\n]*--stop-timeout (\d+)", (ROOT / "README.md").read_text(encoding="utf-8"))
    assert found, "the README's docker run command sets no --stop-timeout"
    return float(found.group(1))


@dataclass
class Container:
    """The image's filesystem and user, stood in for by temporary folders and ``nobody``."""

    image: Image
    base: Path
    user: pwd.struct_passwd | None  # None: run as the current user
    read_anywhere: bool = False  # see reachable_python()

    @property
    def code(self) -> Path:
        return self.base / "app"

    @property
    def data(self) -> Path:
        return self.base / "data"

    def local(self, value: str) -> str:
        """An image path in a value, as the folder that stands for it here."""
        for inside, here in ((IMAGE_PREBUILT, self.base / "prebuilt"), (IMAGE_DATA, self.data)):
            value = re.sub(rf"(?<![\w/]){re.escape(inside)}(?=/|$|\s)", str(here), value)
        return value

    def environment(self, port: int) -> dict[str, str]:
        env = {key: self.local(value) for key, value in self.image.env.items()}
        return {
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "HOME": str(self.base / "home"),
            "LANG": "C.UTF-8",
            **env,
            # What `docker run -p PORT:PORT -e ...` would set on this shared machine.
            "STREAMLIT_SERVER_PORT": str(port),
            "LSTM_PLAYHOUSE_THREADS": "1",
            "LSTM_PLAYHOUSE_GUTENBERG_URL": f"http://127.0.0.1:{free_port()}/pg100.txt",
        }

    def run(self, command: list[str], env: dict[str, str], **options) -> subprocess.Popen:
        """``command`` in the image's working folder, as the image's user, in a process group of its own."""
        if self.user is not None:
            user = [f"--reuid={self.user.pw_uid}", f"--regid={self.user.pw_gid}", "--clear-groups"]
            if self.read_anywhere:
                user += ["--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search"]
            command = ["setpriv", *user, "--", *command]  # setpriv execs the command: the same process
        return subprocess.Popen(command, cwd=self.code, env=env, start_new_session=True, **options)


@pytest.fixture
def container() -> Iterator[Container]:
    image = read_dockerfile()
    # Not under pytest's own temporary folder: that is private to the user running the tests.
    base = Path(tempfile.mkdtemp(prefix="lstm-playhouse-container-"))
    base.chmod(0o755)
    user = None
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("the tests run as root and there is no setpriv to become an unprivileged user")
        user = pwd.getpwnam("nobody")
    made = Container(image, base, user)
    try:
        for name in context_files():
            (made.code / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, made.code / name)
        for folder in (made.data, base / "home"):
            folder.mkdir()
            if user is not None:
                os.chown(folder, user.pw_uid, user.pw_gid)
        # The image's build step for the plays' cache (run as root at build time, like docker build).
        (build,) = [run for run in image.runs if "lstm_core.text.plays_cache" in run]
        first = build.split("&&")[0]
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        env.pop("PYTHONPATH", None)
        subprocess.run(["/bin/sh", "-c", made.local(first)], cwd=made.code, env=env, check=True, timeout=300)
        for path in [made.code, *made.code.rglob("*")]:
            path.chmod(0o555 if path.is_dir() else 0o444)
        yield made
    finally:
        for path in [base, *base.rglob("*")]:
            if not path.is_symlink():
                path.chmod(0o755 if path.is_dir() else 0o644)
        shutil.rmtree(base, ignore_errors=True)


class StartedImage:
    """The image's start command, running (tini's role is the test's)."""

    def __init__(self, container: Container, port: int, log: Path) -> None:
        self.container, self.port, self.url = container, port, f"http://127.0.0.1:{port}"
        self.env = container.environment(port)
        command = container.image.start_command
        assert command[:3] == ["tini", "-g", "--"], command
        self.log = log.open("ab")
        self.process = container.run(command[3:], self.env, stdout=self.log, stderr=subprocess.STDOUT)

    def healthy(self) -> bool:
        """The image's own HEALTHCHECK command, run as the container would run it."""
        check = self.container.run(self.container.image.healthcheck, self.env, stderr=subprocess.DEVNULL)
        return check.wait(timeout=30) == 0

    def wait_healthy(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self.healthy():
            assert self.process.poll() is None, f"the server exited with {self.process.returncode}; see {self.log.name}"
            assert time.monotonic() < deadline, f"no health within {START_TIMEOUT_S} s; see {self.log.name}"
            time.sleep(0.5)

    def terminate_group(self) -> float:
        """SIGTERM to the whole process group, as ``tini -g`` passes on ``docker stop``; the seconds
        until every process of the group has ended."""
        started = time.monotonic()
        os.killpg(self.process.pid, signal.SIGTERM)
        self.process.wait(timeout=stop_timeout_s())
        while True:  # its training processes, which outlive the server by the time they take to save
            try:
                os.killpg(self.process.pid, 0)
            except ProcessLookupError:
                return time.monotonic() - started
            assert time.monotonic() - started < stop_timeout_s(), "the group outlived docker's --stop-timeout"
            time.sleep(0.1)

    def close(self) -> None:
        try:
            if self.process.poll() is None:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)  # a straggler of a failed test
            self.log.close()


def uid_of(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text(encoding="utf-8")
    return int(re.search(r"^Uid:\s+(\d+)", status, re.MULTILINE).group(1))


def runs_in(container: Container, page: Page) -> list[run_files.RunSummary]:
    return run_files.list_runs(Workspace.for_key(key_of(page), container.data).runs)


# What the server does: `python` from PATH, which starts itself again for a training process.
PROBE = "import subprocess, sys, streamlit; sys.exit(subprocess.run([sys.executable, '-c', 'import torch']).returncode)"


def reachable_python(container: Container) -> None:
    """Make sure the image's user can run this environment's Python, or skip.

    Where that Python lives under a folder only root may enter (``/root``, as on the project's
    development machines), the user is given one capability, reading and searching any folder,
    which allows no writing: the code stays read-only and the data folder is still the user's own.
    """
    env = container.environment(free_port())
    for read_anywhere in (False, True):
        container.read_anywhere = read_anywhere
        if container.run(["python", "-c", PROBE], env, stderr=subprocess.DEVNULL).wait(timeout=300) == 0:
            return
    pytest.skip(f"{sys.executable} cannot be run by the unprivileged user {container.user.pw_name} here")


def test_the_image_start_command_serves_trains_saves_on_sigterm_and_resumes(browser, container, tmp_path):
    if container.user is not None:
        reachable_python(container)
    port = free_port()
    server = StartedImage(container, port, tmp_path / "server.log")
    try:
        server.wait_healthy()
        expected_uid = container.user.pw_uid if container.user is not None else os.geteuid()
        assert uid_of(server.process.pid) == expected_uid
        with new_visitor(browser, "container_first_start") as page:
            page.goto(f"{server.url}/generate")
            expect(page.get_by_role("heading", name="Generate")).to_be_visible()
            expect(page.get_by_text(re.compile(r"^Demo model \(shipped"))).to_be_visible()
            expect(page.locator(".generated").first).to_have_text(re.compile(r"^thou art more \S+"))
            page.get_by_role("link", name="Train").click()
            expect(page.get_by_role("heading", name="Train")).to_be_visible()
            page.get_by_role("button", name="Quick", exact=True).click()
            page.get_by_role("button", name="Start training").click()
            expect(page.get_by_text(PROGRESS)).to_be_visible()
            wait_for(lambda: bool(runs_in(container, page)) and runs_in(container, page)[0].step >= 10)
            address = page.url
            (run,) = runs_in(container, page)
            assert run.pid is not None and uid_of(run.pid) == expected_uid
        # The app read the plays' cache the image built; the empty volume got none of its own.
        assert not (container.data / "cache").exists()

        signalled = time.time()
        took = server.terminate_group()
        summary = run_files.read_run(run.path)
        assert summary.state == "interrupted" and summary.has_last, summary
        assert (run.path / run_files.LAST_CHECKPOINT).stat().st_mtime >= signalled, "saved on SIGTERM"
        reading = " (reading any folder)" if container.read_anywhere else ""
        print(
            f"as uid {expected_uid}{reading}: the group ended {took:.1f} s after SIGTERM, saved at step {summary.step}"
        )
        server.close()

        server = StartedImage(container, port, tmp_path / "server.log")
        server.wait_healthy()
        with new_visitor(browser, "container_second_start") as page:
            page.goto(address)
            expect(page.get_by_role("heading", name="Train")).to_be_visible()
            interrupted = re.compile(r"^Interrupted \(the server was stopping\)\. You can resume it\.")
            expect(page.get_by_test_id("stProgress").get_by_text(interrupted)).to_be_visible()
            page.get_by_role("button", name="Resume").click()
            expect(page.get_by_text(PROGRESS)).to_be_visible()
            wait_for(lambda: run_files.read_run(run.path).step > summary.step)
            assert run_files.read_run(run.path).active
    finally:
        server.close()
