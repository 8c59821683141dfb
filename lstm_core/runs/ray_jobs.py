"""Ray's Jobs API as the runs need it: a job's state, a submission, a stop; every call bounded in time.

The app talks to a Ray cluster only through its dashboard's HTTP Jobs API
(:class:`ray.job_submission.JobSubmissionClient`, at ``LSTM_PLAYHOUSE_RAY_ADDRESS``), never as a Ray
driver: a web server needs no Ray processes of its own, only the ``ray`` package (the
``lstm-playhouse[ray]`` extra). Where the cluster requires Ray's token authentication, the client
sends the token Ray finds in this process's environment (``RAY_AUTH_MODE=token`` with
``RAY_AUTH_TOKEN`` or ``RAY_AUTH_TOKEN_PATH``).

Pages ask for the state of every training run they show every two seconds, so :func:`job_state`
keeps each answer for :data:`STATE_TTL_S`, and each request gives up after
:data:`REQUEST_TIMEOUT_S`: a cluster that does not answer makes a page say so, not hang.
Importing this module imports Ray (about a second); only a Ray runner or a Ray run's reader does.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import requests
from ray.job_submission import JobStatus, JobSubmissionClient

from lstm_core.runs.runner import ProcessState, RunnerUnavailable

REQUEST_TIMEOUT_S = 5.0
"""How long one request to the cluster may take before the cluster counts as not answering."""
STATE_TTL_S = 1.0
"""How long a job's state is reused: the pages of every visitor ask again within this."""
QUIET_S = 5.0
"""After a cluster failed to answer, how long it is taken as not answering without asking again,
so that a page showing several of its runs waits for one timeout, not one per run."""


class JobNotFound(LookupError):
    """The cluster answered that it knows no job by this id."""


class _Client(JobSubmissionClient):
    """The Jobs API client with a timeout on every request (Ray's own has none: a cluster host
    that drops packets would hold a page until TCP gives up), and a missing job as its own error."""

    def _do_request(self, method: str, endpoint: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", REQUEST_TIMEOUT_S)
        return super()._do_request(method, endpoint, **kwargs)

    def _raise_error(self, r: requests.Response) -> None:
        if r.status_code == 404:
            raise JobNotFound(r.text)
        super()._raise_error(r)


_lock = threading.Lock()
_clients: dict[str, _Client] = {}
_states: dict[tuple[str, str], tuple[float, ProcessState]] = {}
_silent: dict[str, tuple[float, str]] = {}
"""Clusters that did not answer: when, and why."""


def _why(error: BaseException) -> str:
    """A short reason for a failed request, for the page: the error's first line."""
    text = str(error).strip().splitlines()
    return text[0][:200] if text else type(error).__name__


def client(address: str) -> JobSubmissionClient:
    """The cluster's Jobs API client (one per address, kept once it has connected: making one
    checks the cluster's Ray version). Raises :class:`RunnerUnavailable` when the cluster does not
    answer, or refuses this server's token."""
    with _lock:
        found = _clients.get(address)
    if found is not None:
        return found
    try:
        made = _Client(address)
    except Exception as error:  # ConnectionError, a timeout, an authentication error: no answer to use
        raise RunnerUnavailable(f"the training cluster at {address} is not answering: {_why(error)}") from None
    with _lock:
        return _clients.setdefault(address, made)


def _from_status(status: JobStatus, info: Any) -> ProcessState:
    if not status.is_terminal():
        return ProcessState(alive=True)  # PENDING (waiting for CPUs and memory) or RUNNING
    code = getattr(info, "driver_exit_code", None)
    detail = f"{status.value.lower()} on the cluster"
    if status == JobStatus.FAILED and getattr(info, "message", None):
        detail = f"{detail}: {_why(Exception(info.message))}"
    return ProcessState(alive=False, returncode=code if isinstance(code, int) else None, detail=detail)


def job_state(address: str, job_id: str, *, now: float | None = None) -> ProcessState:
    """What the cluster at ``address`` says of job ``job_id`` (kept for :data:`STATE_TTL_S`):
    alive, ended (with the training process's exit code where Ray has it), lost (the cluster knows
    no such job), or not answered (with why)."""
    now = time.monotonic() if now is None else now
    key = (address, job_id)
    with _lock:
        cached = _states.get(key)
        silent = _silent.get(address)
    if cached is not None and now - cached[0] < STATE_TTL_S:
        return cached[1]
    if silent is not None and now - silent[0] < QUIET_S:
        return ProcessState(alive=False, answered=False, detail=silent[1])
    try:
        info = client(address).get_job_info(job_id)
        state = _from_status(JobStatus(info.status), info)
    except JobNotFound:
        state = ProcessState(alive=False, lost=True, detail="the cluster knows no such job")
    except RunnerUnavailable as error:
        state = ProcessState(alive=False, answered=False, detail=_why(error).split(": ", 1)[-1])
    except Exception as error:  # connection refused or reset, a timeout, a server error
        state = ProcessState(alive=False, answered=False, detail=_why(error))
    with _lock:
        _states[key] = (now, state)
        if state.answered:
            _silent.pop(address, None)
        else:
            _silent[address] = (now, state.detail)
    return state


def forget(address: str, job_id: str) -> None:
    """Drop the kept state of a job (after it was submitted or stopped here), and of its cluster
    having been silent (a submission just went through)."""
    with _lock:
        _states.pop((address, job_id), None)
        _silent.pop(address, None)


def submit(address: str, job_id: str, entrypoint: str, *, cpus: int, memory: int, env: dict[str, str]) -> None:
    """Submit ``entrypoint`` as job ``job_id``, asking for ``cpus`` CPUs and ``memory`` bytes (Ray
    starts it once a node has both free). Raises :class:`RunnerUnavailable` when the cluster does
    not take it."""
    try:
        client(address).submit_job(
            entrypoint=entrypoint,
            submission_id=job_id,
            entrypoint_num_cpus=cpus,
            entrypoint_memory=memory,
            runtime_env={"env_vars": env},
        )
    except RunnerUnavailable:
        raise
    except (ConnectionError, requests.RequestException) as error:
        raise RunnerUnavailable(f"the training cluster at {address} is not answering: {_why(error)}") from None
    except Exception as error:  # it answered, and refused the job
        raise RunnerUnavailable(f"the training cluster at {address} did not take the run: {_why(error)}") from None
    forget(address, job_id)


def stop(address: str, job_id: str) -> bool:
    """Ask the cluster to end job ``job_id`` (Ray sends SIGTERM, then SIGKILL a few seconds later);
    False when the cluster did not answer or the job had ended."""
    try:
        stopped = bool(client(address).stop_job(job_id))
    except Exception:
        return False
    forget(address, job_id)
    return stopped
