"""Command line: ``python -m lstm_core train | evaluate | generate | export | plays | resources``.

Each command is a module of this package with its own subparser (``add_parser``) and its ``run``;
this module assembles them. Bad input (:class:`~lstm_core.cli.flags.UsageError`, or an
:class:`~lstm_core.errors.InputError` from the core) ends with one line on stderr and exit code 2;
a run that fails (e.g. a diverging loss) exits with 1; any other exception is a bug and keeps its
traceback. Output piped into a program that stops reading early (``... --json | head -c 10``)
ends the command quietly, with exit code 0: the reader has what it wanted.
"""

from __future__ import annotations

import argparse
import os
import select
import sys
from collections.abc import Sequence

from lstm_core.cli import (
    evaluate_command,
    export_command,
    generate_command,
    plays_command,
    resources_command,
    train_command,
)
from lstm_core.cli.flags import EXIT_USAGE, UsageError
from lstm_core.errors import InputError

COMMANDS = (train_command, evaluate_command, generate_command, export_command, plays_command, resources_command)
"""The commands' modules, in the order ``--help`` lists them."""


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command."""
    parser = argparse.ArgumentParser(
        prog="python -m lstm_core",
        description="Train a word-level LSTM language model on Shakespeare, evaluate it, and make it write.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(commands)
    return parser


def stdout_reader_gone() -> bool:
    """Whether stdout is a pipe whose reader has closed it (``poll`` flags its write end)."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))
    except (OSError, ValueError, AttributeError):  # no fileno (a test's capture), or no poll here
        return False


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. Bad input (:class:`UsageError`, or an :class:`InputError` from the core)
    ends with one line and exit code 2; any other exception is a bug and keeps its traceback."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = int(args.func(args))
        sys.stdout.flush()  # here, not at exit, so that a closed pipe is caught below
        return code
    except BrokenPipeError:
        if not stdout_reader_gone():
            raise  # another pipe broke (a socket, a child process): a failure, not a reader's choice
        # Send what Python still holds for stdout nowhere, so that the interpreter's own flush at
        # exit cannot fail again and print a traceback.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (UsageError, InputError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("\naborted", file=sys.stderr)
        return 130
