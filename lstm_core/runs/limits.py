"""A shared server's caps on training runs, read from ``LSTM_PLAYHOUSE_*`` settings.

Each cap comes from the environment (``LSTM_PLAYHOUSE_MAX_RUNS=3``), else from a ``secrets_get``
callable the caller passes (the app passes Streamlit's secrets file), else its default. The
defaults of the runs at once, the threads and the memory per run come from what this process may
use (:mod:`lstm_core.runs.capacity`, from the container's CPUs and memory). A value that is not
usable is a :class:`SettingError` naming the variable, so a misconfigured server says so instead
of running with a cap nobody chose. Nothing here imports Streamlit or torch.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lstm_core.runs import capacity
from lstm_core.runs.admission import SERVER_LIMIT, AdmissionLimits
from lstm_core.system.resources import Resources, available_resources

NICE = 10
"""How much lower a training process's CPU priority is than the server's (``os.nice``) by default;
``LSTM_PLAYHOUSE_NICE`` sets it (0 to 19; 0 gives the runs the server's priority)."""
MAX_NICE = 19


class SettingError(ValueError):
    """A cap set by the environment or the secrets file is not a usable value."""


def _raw(key: str, secrets_get: Callable[[str], Any] | None) -> Any:
    """The setting's raw value: the environment first, then the secrets (None when neither has it)."""
    raw: Any = os.environ.get(key)
    if raw is None and secrets_get is not None:
        raw = secrets_get(key)
    return raw


def _setting(name: str, default: float, secrets_get: Callable[[str], Any] | None = None) -> float:
    """A number from the environment (``LSTM_PLAYHOUSE_<NAME>``), else the secrets, else the default."""
    key = f"LSTM_PLAYHOUSE_{name.upper()}"
    raw = _raw(key, secrets_get)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise SettingError(f"{key} must be a number, got {raw!r}") from None
    if not value > 0:
        raise SettingError(f"{key} must be positive, got {raw!r}")
    return value


def _nice(secrets_get: Callable[[str], Any] | None) -> int:
    """``LSTM_PLAYHOUSE_NICE``: a whole number from 0 to 19 (0 is allowed here, unlike the caps)."""
    key = "LSTM_PLAYHOUSE_NICE"
    raw = _raw(key, secrets_get)
    if raw is None or raw == "":
        return NICE
    try:
        value = int(str(raw))
    except ValueError:
        raise SettingError(f"{key} must be a whole number from 0 to {MAX_NICE}, got {raw!r}") from None
    if not 0 <= value <= MAX_NICE:
        raise SettingError(f"{key} must be a whole number from 0 to {MAX_NICE}, got {raw!r}")
    return value


@dataclass(frozen=True)
class RunLimits:
    """Caps for a shared server. Each can be set by an environment variable (see docs/deploying.md)."""

    max_runs: int = 2
    runs_per_visitor: int = 1
    max_minutes: float = 30.0
    max_parameters: int = 20_000_000
    run_memory_mb: float = 1000.0
    idle_minutes: float = 5.0
    threads: int = 1
    keep_days: float = 7.0
    disk_mb: float = 2000.0
    nice: int = NICE

    @classmethod
    def from_environment(
        cls, secrets_get: Callable[[str], Any] | None = None, resources: Resources | None = None
    ) -> RunLimits:
        """The caps from the environment or secrets, else defaults sized to this process's ``resources``
        (read from where it runs when not given; see :mod:`lstm_core.runs.capacity`).

        In order, each default from the caps before it: the memory per run (what is left beside the
        server, up to 1,000 MB), the runs at once (as many as fit in that memory, at least one,
        at most one per whole CPU), the threads per run (the whole CPUs shared by the runs, at
        least one). A setting wins over its default and sizes the defaults after it. Raises
        :class:`~lstm_core.errors.InputError` for a cgroup file that is not what the kernel writes.
        """
        defaults = cls()
        found = resources if resources is not None else available_resources()

        def get(name: str) -> float:
            return _setting(name, getattr(defaults, name), secrets_get)

        run_memory_mb = _setting("run_memory_mb", capacity.default_run_memory_mb(found), secrets_get)
        max_runs = int(_setting("max_runs", capacity.default_max_runs(found, run_memory_mb), secrets_get))
        return cls(
            max_runs=max_runs,
            runs_per_visitor=int(get("runs_per_visitor")),
            max_minutes=get("max_minutes"),
            max_parameters=int(get("max_parameters")),
            run_memory_mb=run_memory_mb,
            idle_minutes=get("idle_minutes"),
            threads=int(_setting("threads", capacity.default_threads(found, max_runs), secrets_get)),
            keep_days=get("keep_days"),
            disk_mb=get("disk_mb"),
            nice=_nice(secrets_get),
        )

    def admission(self) -> AdmissionLimits:
        """What a run on this server is admitted against: the parameter cap and the memory per run."""
        return AdmissionLimits(
            memory_limit=int(self.run_memory_mb * 1_000_000),
            memory_limit_name=SERVER_LIMIT,
            max_parameters=self.max_parameters,
        )


# ---- the runner: where runs train ----------------------------------------------------------------

RUNNERS = ("local", "ray")
"""``LSTM_PLAYHOUSE_RUNNER``: ``local`` (each run a child process of the web server, the default)
or ``ray`` (each run a job on the Ray cluster at ``LSTM_PLAYHOUSE_RAY_ADDRESS``)."""


@dataclass(frozen=True)
class RunnerSettings:
    """Where this server's runs train: ``kind`` (one of :data:`RUNNERS`) and, for ``ray``, the
    cluster's dashboard address (``http://HOST:8265``, the Jobs API)."""

    kind: str = "local"
    ray_address: str | None = None

    @classmethod
    def from_environment(cls, secrets_get: Callable[[str], Any] | None = None) -> RunnerSettings:
        """``LSTM_PLAYHOUSE_RUNNER`` and ``LSTM_PLAYHOUSE_RAY_ADDRESS`` from the environment or the
        secrets, checked: ``ray`` needs an address and the ``ray`` package (a
        :class:`SettingError` says which is missing, so every page can say it)."""
        raw = _raw("LSTM_PLAYHOUSE_RUNNER", secrets_get)
        kind = str(raw).strip().lower() if raw not in (None, "") else "local"
        if kind not in RUNNERS:
            raise SettingError(f"LSTM_PLAYHOUSE_RUNNER must be one of {', '.join(RUNNERS)}, got {raw!r}")
        address_raw = _raw("LSTM_PLAYHOUSE_RAY_ADDRESS", secrets_get)
        address = str(address_raw).strip() if address_raw not in (None, "") else None
        if kind == "local":
            return cls(kind, address)
        if address is None:
            raise SettingError(
                "LSTM_PLAYHOUSE_RUNNER is 'ray' but LSTM_PLAYHOUSE_RAY_ADDRESS is not set: give the Ray "
                "cluster's dashboard address, for example http://127.0.0.1:8265"
            )
        if not address.startswith(("http://", "https://")):
            raise SettingError(
                f"LSTM_PLAYHOUSE_RAY_ADDRESS must be the Ray dashboard's http:// or https:// address, got {address!r}"
            )
        if importlib.util.find_spec("ray") is None:
            raise SettingError(
                "LSTM_PLAYHOUSE_RUNNER is 'ray' but Ray is not installed here: pip install 'lstm-playhouse[ray]' "
                "(or ray[default])"
            )
        return cls(kind, address.rstrip("/"))
