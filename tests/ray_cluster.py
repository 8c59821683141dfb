"""A real Ray head on this machine for the Ray runner's tests and benchmark: 127.0.0.1, free ports.

``ray start --head --block`` runs in a session of its own, so that stopping it ends every process
it started (``ray stop`` would end every Ray process of this user on the machine, other people's
clusters too). The head requires Ray's token authentication, as a deployment should: the token is
put in this process's environment (``RAY_AUTH_MODE``, ``RAY_AUTH_TOKEN``), which the Jobs API
client and every app server started from here read; Ray reads the mode once, when it is first
imported, so :func:`use_token` must come first.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from bench.bench_app import free_port, session_pids

START_TIMEOUT_S = 120.0
TOKEN = os.environ.get("RAY_AUTH_TOKEN") or secrets.token_hex(16)
"""One token for the whole test session and the processes it starts (which inherit it): Ray's
client reads it once per process."""


def use_token() -> dict[str, str]:
    """Put the session's token in this process's environment (what a web server of a deployment
    has), and return those variables for the processes started from here."""
    env = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": TOKEN}
    os.environ.update(env)
    return env


def ray_installed() -> bool:
    try:
        import ray.job_submission  # noqa: F401
    except ImportError:
        return False
    return True


class LocalRayHead:
    """One Ray head node with two CPUs; ``address`` is its dashboard (the Jobs API)."""

    def __init__(self, temp_dir: Path, log_path: Path, dashboard_port: int | None = None, cpus: int = 2) -> None:
        self.temp_dir = temp_dir
        self.log_path = log_path
        self.dashboard_port = dashboard_port or free_port()
        self.cpus = cpus
        self.address = f"http://127.0.0.1:{self.dashboard_port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> LocalRayHead:
        """Start the head and wait until its Jobs API answers (about 5 s here)."""
        ray = Path(sys.executable).with_name("ray")
        command = [str(ray), "start", "--head", "--block", "--node-ip-address", "127.0.0.1"]
        command += ["--port", str(free_port()), "--dashboard-port", str(self.dashboard_port)]
        command += ["--num-cpus", str(self.cpus), "--include-dashboard", "true", "--dashboard-host", "127.0.0.1"]
        command += ["--disable-usage-stats", "--temp-dir", str(self.temp_dir)]
        command += ["--object-store-memory", str(100_000_000)]
        for flag in (
            "--ray-client-server-port",
            "--dashboard-agent-listen-port",
            "--dashboard-agent-grpc-port",
            "--node-manager-port",
            "--object-manager-port",
            "--metrics-export-port",
            "--runtime-env-agent-port",
        ):
            command += [flag, str(free_port())]  # no fixed default port: two heads may run at once
        env = {**os.environ, **use_token()}
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        headers = {"Authorization": f"Bearer {TOKEN}"}
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ray start exited with {self.process.returncode}; see {self.log_path}")
            try:
                if requests.get(f"{self.address}/api/jobs/", headers=headers, timeout=2).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"the Ray head did not answer on {self.address} within {START_TIMEOUT_S:g} s")

    def pids(self) -> list[int]:
        """The head's processes (its session's); the jobs' own processes have sessions of their own."""
        return session_pids(self.process.pid) if self.process is not None else []

    def stop(self) -> None:
        """Stop every process of the head (the jobs' processes end with it)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=3)  # `ray start --block` itself outlives SIGTERM: no need to wait long
        for pid in self.pids():  # the processes that outlived their group's SIGTERM
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)
        self.process = None

    def remove(self) -> None:
        """Stop the head for good and delete its temporary folder (its logs and sockets)."""
        self.stop()
        shutil.rmtree(self.temp_dir, ignore_errors=True)
