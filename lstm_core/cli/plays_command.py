"""``plays``: the names of the bundled plays, one a line (what ``--plays`` takes)."""

from __future__ import annotations

import argparse

from lstm_core.text.corpus import list_plays


def add_parser(commands: argparse._SubParsersAction) -> None:
    """The ``plays`` command (no flags)."""
    plays = commands.add_parser("plays", help="list the bundled plays")
    plays.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print every bundled play's name."""
    for name in list_plays():
        print(name)
    return 0
