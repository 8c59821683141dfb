"""``resources``: the CPUs and memory this process may use, where each figure came from, and what the app then allows.

For an operator checking a container before (or after) deploying: ``--json`` prints exactly
``{"cpus": 1.0, "memory_bytes": 1073741824, "cpus_from": "...", "memory_from": "..."}`` for
another program to read; without it, the same in words and the app's caps on this host (its
``LSTM_PLAYHOUSE_*`` settings from the environment applied). A cgroup file that is not what the
kernel writes is one ``error:`` line and exit code 2.
"""

from __future__ import annotations

import argparse
import json

from lstm_core.cli.flags import UsageError
from lstm_core.runs import capacity
from lstm_core.runs.limits import RunLimits, SettingError
from lstm_core.system.resources import available_resources


def add_parser(commands: argparse._SubParsersAction) -> None:
    """The ``resources`` command and its flag."""
    resources = commands.add_parser(
        "resources", help="the CPUs and memory this process may use (its container's), and what the app allows"
    )
    resources.add_argument("--json", action="store_true", help="machine-readable output: the figures and their sources")
    resources.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the figures (JSON, or lines for a person followed by the app's caps here)."""
    found = available_resources()
    if args.json:
        print(json.dumps(found.as_dict()))
        return 0
    try:
        limits = RunLimits.from_environment(resources=found)
    except SettingError as error:
        raise UsageError(str(error)) from None
    for line in capacity.resource_lines(found):
        print(line)
    print("The app's caps here (LSTM_PLAYHOUSE_* settings applied):")
    for line in capacity.caps_lines(limits, found):
        print(f"  {line}")
    return 0
