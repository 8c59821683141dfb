"""Flags built from the settings dataclasses, and what every command shares: errors and exit codes.

Every :class:`~lstm_core.config.Config` field is a ``train`` flag (``--rnn-size 256``) and every
:class:`~lstm_core.sampling.options.SamplingOptions` field a ``generate`` flag (``--top-p 0.9``),
built from the dataclasses (:func:`add_dataclass_flags`) so the command line can never drift from
them. Bad input ends with one line on stderr and exit code 2 (:data:`EXIT_USAGE`); a run that fails
(e.g. a diverging loss) exits with 1 (:data:`EXIT_FAILED`).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from typing import Any, TextIO

from lstm_core.config import PRESETS, Config
from lstm_core.errors import InputError
from lstm_core.fields import describe_field, describe_fields
from lstm_core.sampling.options import SamplingOptions

EXIT_USAGE = 2
EXIT_FAILED = 1


class UsageError(Exception):
    """Bad flags or input: reported in one line, exit code 2."""


def flag_name(name: str) -> str:
    """A field's flag: ``rnn_size`` -> ``--rnn-size``."""
    return "--" + name.replace("_", "-")


def add_dataclass_flags(group: argparse._ActionsContainer, cls: type, show_defaults: bool = False) -> None:
    """One flag per field of the settings dataclass ``cls`` (``rnn_size`` -> ``--rnn-size``).

    Types and help come from the field (:func:`~lstm_core.fields.describe_fields`): ``bool`` is
    ``--x / --no-x``, a ``Literal`` gives the choices, a tuple takes one or more values. Every
    flag defaults to None, so :func:`given_flags` can tell what the user set from what they left;
    ``show_defaults`` adds the dataclass's default to the help (not for ``Config``, whose
    defaults come from the chosen preset).
    """
    for info in describe_fields(cls):
        shown = show_defaults and info.default is not None
        help_text = f"{info.help} (default: {info.default})" if shown else info.help
        kwargs: dict[str, Any] = {"dest": info.name, "default": None, "help": help_text}
        if info.type is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif info.choices:
            kwargs["choices"] = info.choices
        elif info.type is tuple:
            kwargs["nargs"] = "+"
            kwargs["metavar"] = "TEXT"
        else:
            kwargs["type"] = info.type
            kwargs["metavar"] = info.type.__name__.upper()
        group.add_argument(flag_name(info.name), **kwargs)


def given_flags(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The fields of ``cls`` whose flags the user gave, with their values."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if getattr(args, f.name) is not None}


def config_from_args(args: argparse.Namespace, base: Config | None = None) -> Config:
    """The preset (or ``base``) with every config flag the user gave applied on top."""
    config = base if base is not None else PRESETS[args.preset]
    changes = given_flags(args, Config)
    return config.replace(**changes) if changes else config


def sampling_options_from_args(args: argparse.Namespace, warn: TextIO | None = None) -> SamplingOptions:
    """The :class:`SamplingOptions` the ``generate`` flags ask for.

    Without ``--method``, a sampling flag (``--temperature``, ``--top-k``, ``--top-p``,
    ``--min-p``: the fields that apply to ``sample`` only) means sampling, and ``--temperature 0``
    means greedy, as in most tools. A flag that does not apply to the method given (sampling
    flags with ``--method greedy``, beam flags without ``--method beam``) is left out, with a
    one-line warning on ``warn`` (stderr), rather than silently doing nothing.
    """
    given = given_flags(args, SamplingOptions)
    applies_to: dict[str, tuple[str, ...]] = {
        info.name: info.extra.get("applies_to") or () for info in describe_fields(SamplingOptions)
    }
    if "method" not in given:
        sampling = [name for name in given if applies_to[name] == ("sample",)]
        if given.get("temperature") == 0:
            given["method"] = "greedy"
            del given["temperature"]
        elif sampling:
            given["method"] = "sample"
    method = given.get("method", describe_field(SamplingOptions, "method").default)
    ignored = [name for name in given if applies_to[name] and method not in applies_to[name]]
    if ignored:
        flags = ", ".join(flag_name(name) for name in ignored)
        wanted = " or ".join(sorted({m for name in ignored for m in applies_to[name]}))
        print(
            f"warning: {flags} ignored with --method {method} (only --method {wanted} uses them)",
            file=warn if warn is not None else sys.stderr,
        )
        given = {name: value for name, value in given.items() if name not in ignored}
    try:
        return SamplingOptions(**given)
    except InputError as error:
        raise UsageError(str(error)) from None


def names(value: str | None) -> list[str] | None:
    """A comma-separated list of names (``--plays hamlet,macbeth``), or None when not given."""
    return [name.strip() for name in value.split(",") if name.strip()] if value else None


def set_threads(threads: int | None) -> None:
    """``--threads N``: PyTorch's CPU threads for this process (left to PyTorch when not given)."""
    if threads is not None:
        if threads < 1:
            raise UsageError(f"--threads must be 1 or more, got {threads}")
        import torch

        torch.set_num_threads(threads)


def check_positive(value: float | None, flag: str) -> None:
    """Refuse a number flag that is given but not a finite positive number."""
    if value is not None and not (math.isfinite(value) and value > 0):
        raise UsageError(f"{flag} must be a positive number, got {value:g}")
