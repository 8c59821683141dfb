"""Command line: ``python -m lstm_core train | evaluate | generate | export | plays``.

Each command is a module of this package with its own subparser (``add_parser``) and its ``run``;
this module assembles them. Bad input (:class:`~lstm_core.cli.flags.UsageError`, or an
:class:`~lstm_core.errors.InputError` from the core) ends with one line on stderr and exit code 2;
a run that fails (e.g. a diverging loss) exits with 1; any other exception is a bug and keeps its
traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from lstm_core.cli import (
    evaluate_command,
    export_command,
    generate_command,
    plays_command,
    train_command,
)
from lstm_core.cli.flags import EXIT_USAGE, UsageError
from lstm_core.errors import InputError

COMMANDS = (train_command, evaluate_command, generate_command, export_command, plays_command)
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


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. Bad input (:class:`UsageError`, or an :class:`InputError` from the core)
    ends with one line and exit code 2; any other exception is a bug and keeps its traceback."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (UsageError, InputError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("\naborted", file=sys.stderr)
        return 130
