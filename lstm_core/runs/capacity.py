"""How many runs this host holds, and with what: the caps' defaults from the CPUs and memory the process may use.

A server sizes its runs from what its container gives it (:func:`lstm_core.system.resources.available_resources`),
never from the host's totals, and says why in plain words:

* the server keeps :data:`SERVER_MEMORY_MB` for itself (its pages, caches and the demo model);
* each run may use :data:`RUN_MEMORY_MB`, or what is left beside the server when that is less;
* as many runs train at once as fit in what is left, at least one and at most one per whole CPU;
* each run gets an equal share of the whole CPUs as PyTorch threads, at least one.

When what a run may use is less than any training process needs before its model and data
(:data:`lstm_core.model.memory.RUNTIME_BYTES`: Python and PyTorch), this host cannot train at all:
:func:`training_problem` says so, and the pages that only read models (Generate, Inside) work as
usual. An ``LSTM_PLAYHOUSE_*`` setting always wins over these defaults
(:meth:`lstm_core.runs.limits.RunLimits.from_environment`). Nothing here imports torch.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from lstm_core.model.memory import RUNTIME_BYTES, format_bytes
from lstm_core.system.resources import Resources

if TYPE_CHECKING:
    from lstm_core.runs.limits import RunLimits

MB = 1_000_000
GIB = 1024**3
SERVER_MEMORY_MB = 400.0
"""The memory the server keeps for itself beside its runs. Its processes held 330-355 MB with ten
visitors moving the temperature and 345-446 MB after a walk over every page (PSS; bench/RESULTS.md,
"Visitors moving the temperature while two runs train" and "Cold start and page switches"): 400 MB
covers the usual figures, and a run's own process rarely reaches its cap."""
RUN_MEMORY_MB = 1000.0
"""One run's memory cap where the host has room for it: a *Quick* run's working set is about 480 MB
and *Best*'s 650-700 MB (docs/deploying.md, "Memory")."""


def whole_cpus(resources: Resources) -> int:
    """The CPUs rounded down, at least one: a quota of 1.5 CPUs runs one thread at full speed."""
    return max(1, math.floor(resources.cpus))


def room_for_runs_mb(resources: Resources) -> float | None:
    """The MB left for runs beside the server (never below 0); None when the memory is unknown."""
    if resources.memory_bytes is None:
        return None
    return max(0.0, resources.memory_bytes / MB - SERVER_MEMORY_MB)


def default_run_memory_mb(resources: Resources) -> float:
    """One run's memory cap: :data:`RUN_MEMORY_MB`, or all the room beside the server when that is less."""
    room = room_for_runs_mb(resources)
    return RUN_MEMORY_MB if room is None else min(RUN_MEMORY_MB, room)


def runs_that_fit(resources: Resources, run_memory_mb: float) -> int | None:
    """How many runs of ``run_memory_mb`` fit beside the server (None: the memory is unknown)."""
    room = room_for_runs_mb(resources)
    if room is None:
        return None
    return math.floor(room / run_memory_mb) if run_memory_mb > 0 else 0


def default_max_runs(resources: Resources, run_memory_mb: float) -> int:
    """Runs at once: as many as fit beside the server, at least one, at most one per whole CPU."""
    cpus = whole_cpus(resources)
    fit = runs_that_fit(resources, run_memory_mb)
    return max(1, min(cpus, cpus if fit is None else fit))


def default_threads(resources: Resources, max_runs: int) -> int:
    """PyTorch threads per run: the whole CPUs shared by the runs, at least one (threads fighting
    over cores make small steps many times slower)."""
    return max(1, whole_cpus(resources) // max(1, max_runs))


# ---- in words --------------------------------------------------------------------------------


def format_cpus(cpus: float) -> str:
    """``1 CPU``, ``2 CPUs``, ``0.078 CPUs``."""
    return f"{cpus:g} CPU" + ("" if cpus == 1 else "s")


def format_memory(memory_bytes: int | None) -> str:
    """A container's memory as it is usually given (binary units): ``1.0 GiB``, ``640 MiB``."""
    if memory_bytes is None:
        return "unknown memory"
    if memory_bytes >= GIB:
        return f"{memory_bytes / GIB:,.1f} GiB"
    return f"{memory_bytes / 1024**2:,.0f} MiB"


def describe_host(resources: Resources) -> str:
    """``1 CPU and 1.0 GiB``: what this server may use, in a few words."""
    return f"{format_cpus(resources.cpus)} and {format_memory(resources.memory_bytes)}"


def resource_lines(resources: Resources) -> list[str]:
    """What this server may use, with where each figure came from: one line for the CPUs, one for the memory."""
    memory = format_memory(resources.memory_bytes)
    if resources.memory_bytes is not None:
        memory += f" ({resources.memory_bytes:,} bytes)"
    return [
        f"CPUs: {resources.cpus:g}, from {resources.cpus_from}",
        f"Memory: {memory}, from {resources.memory_from}",
    ]


def one_run_reason(limits: RunLimits, resources: Resources) -> str | None:
    """Why only one run trains at a time here, in words for a visitor (None when more may).

    ``this server has 1 CPU and 1.0 GiB: one run at a time`` when the CPUs decide; the room beside
    the server when the memory does; the server's settings when neither does. None too where no run
    can train here (:func:`training_problem` says that instead).
    """
    if limits.max_runs != 1 or training_problem(limits) is not None:
        return None
    host = f"this server has {describe_host(resources)}"
    if whole_cpus(resources) == 1:
        return f"{host}: one run at a time"
    fit = runs_that_fit(resources, limits.run_memory_mb)
    if fit is not None and fit <= 1:
        return (
            f"{host}, room for one run of up to {format_bytes(limits.run_memory_mb * MB)} beside the "
            f"{format_bytes(SERVER_MEMORY_MB * MB)} the server keeps: one run at a time"
        )
    return "this server's settings allow one run at a time"


def training_problem(limits: RunLimits, resources: Resources | None = None) -> str | None:
    """Why no run can train on this host (None if one can): a run may use less memory than any
    training process needs before its model and data.

    Decided from ``limits`` alone; ``resources``, where the caller has them, say where the
    shortage comes from when the cap is this host's default rather than a setting.
    """
    per_run = limits.run_memory_mb * MB
    if per_run >= RUNTIME_BYTES:
        return None
    need = f"less than the {format_bytes(RUNTIME_BYTES)} any training process needs before its model and data"
    if resources is not None and limits.run_memory_mb == default_run_memory_mb(resources):
        why = (
            f"it has {describe_host(resources)}, and beside the {format_bytes(SERVER_MEMORY_MB * MB)} the server "
            f"keeps for itself a run would have {format_bytes(per_run)}, {need}"
        )
    else:
        why = f"a run may use {format_bytes(per_run)} here, {need}"
    return (
        f"This server cannot train: {why}. The Generate and Inside the LSTM pages work as usual, "
        "with the demo model or one you upload."
    )


def caps_lines(limits: RunLimits, resources: Resources) -> list[str]:
    """What each run may use here, one line each: runs at once (and why only one, when so), threads
    and memory per run; or the one line saying this host cannot train."""
    problem = training_problem(limits, resources)
    if problem is not None:
        return [problem]
    reason = one_run_reason(limits, resources)
    return [
        f"Runs at once: {limits.max_runs}" + (f" ({reason})" if reason else ""),
        f"Threads per run: {limits.threads}",
        f"Memory per run: up to {format_bytes(limits.run_memory_mb * MB)}",
    ]
