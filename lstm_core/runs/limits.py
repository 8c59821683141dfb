"""A shared server's caps on training runs, read from ``LSTM_PLAYHOUSE_*`` settings.

Each cap comes from the environment (``LSTM_PLAYHOUSE_MAX_RUNS=3``), else from a ``secrets_get``
callable the caller passes (the app passes Streamlit's secrets file), else its default. A value
that is not usable is a :class:`SettingError` naming the variable, so a misconfigured server says
so instead of running with a cap nobody chose. Nothing here imports Streamlit or torch.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lstm_core.runs.admission import SERVER_LIMIT, AdmissionLimits

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
    def from_environment(cls, secrets_get: Callable[[str], Any] | None = None) -> RunLimits:
        """The caps from the environment or secrets; threads default to the cores shared by the runs.

        With ``max_runs`` runs at once, each gets ``cores // max_runs`` threads (at least one), so
        that the runs never ask for more threads than there are cores (threads fighting over cores
        make small steps many times slower).
        """
        defaults = cls()

        def get(name: str) -> float:
            return _setting(name, getattr(defaults, name), secrets_get)

        max_runs = int(get("max_runs"))
        fair_share = max(1, (os.cpu_count() or 1) // max_runs)
        return cls(
            max_runs=max_runs,
            runs_per_visitor=int(get("runs_per_visitor")),
            max_minutes=get("max_minutes"),
            max_parameters=int(get("max_parameters")),
            run_memory_mb=get("run_memory_mb"),
            idle_minutes=get("idle_minutes"),
            threads=int(_setting("threads", fair_share, secrets_get)),
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
