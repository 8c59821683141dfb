"""Field metadata: one description of each setting, read by the command line and the app's widgets.

A frozen dataclass of settings (:class:`~lstm_core.config.Config`,
:class:`~lstm_core.sampling.options.SamplingOptions`) declares each field with ``metadata=meta(...)``:
a help text and, for numbers, the range, step and scale a widget offers. The field's type gives
the rest: ``bool`` is a switch, a ``Literal`` lists the choices, ``X | None`` may be left unset.
:func:`describe_fields` turns both into one :class:`FieldInfo` per field, so the CLI's flags and
the app's widgets are built from the same description and can never drift from the dataclass.

The bounds are what a widget offers, not what is legal: validation stays with the dataclass.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal


def meta(
    help: str,
    low: float | None = None,
    high: float | None = None,
    *,
    step: float | None = None,
    log: bool = False,
    values: Sequence[float] | None = None,
    label: str | None = None,
    choice_labels: Mapping[str, str] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Metadata for one settings field.

    * ``help``: one line for ``--help`` and the widget's tooltip.
    * ``low``, ``high``: the range a widget offers; ``step``: its increment (default: 1 for whole
      numbers, a hundredth of the range otherwise); ``log``: the values are spread on a log scale.
    * ``values``: the nice values a widget offers between ``low`` and ``high`` (e.g. layer sizes
      16, 32, 64 ...) instead of every step.
    * ``label``: the widget's label (default: the field's name); ``choice_labels``: words for a
      ``Literal``'s choices.
    * ``extra``: anything else a reader of this field needs (e.g. which methods an option applies to).
    """
    return {
        "help": help,
        "low": low,
        "high": high,
        "step": step,
        "log": log,
        "values": tuple(values) if values is not None else None,
        "label": label,
        "choice_labels": dict(choice_labels) if choice_labels is not None else None,
        **extra,
    }


@dataclass(frozen=True)
class FieldInfo:
    """One settings field: its type, reduced to what an interface needs, and its metadata."""

    name: str
    type: type
    """``bool``, ``int``, ``float``, ``str`` or ``tuple`` (a ``Literal`` of strings is ``str``)."""
    choices: tuple[str, ...]
    """The ``Literal``'s values, in declaration order; empty for other types."""
    optional: bool
    """Whether None is allowed (``int | None``)."""
    default: Any
    help: str
    low: float | None
    high: float | None
    step: float | None
    log: bool
    values: tuple[float, ...] | None
    label: str
    choice_labels: dict[str, str]
    extra: dict[str, Any]


_KNOWN_KEYS = {"help", "low", "high", "step", "log", "values", "label", "choice_labels"}


def _reduce(hint: Any, name: str) -> tuple[type, tuple[str, ...], bool]:
    """``hint`` -> (base type, Literal choices, optional)."""
    optional = False
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        members = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        optional = len(members) < len(typing.get_args(hint))
        assert len(members) == 1, f"{name}: a settings field has one type (or that type | None)"
        hint = members[0]
    if typing.get_origin(hint) is Literal:
        choices = typing.get_args(hint)
        assert all(isinstance(c, str) for c in choices), f"{name}: Literal choices must be strings"
        return str, choices, optional
    if typing.get_origin(hint) is tuple:
        return tuple, (), optional
    assert hint in (bool, int, float, str), f"{name}: unsupported settings type {hint!r}"
    return hint, (), optional


def describe_fields(cls: type) -> tuple[FieldInfo, ...]:
    """One :class:`FieldInfo` per field of the dataclass ``cls``, in declaration order."""
    hints = typing.get_type_hints(cls)
    out = []
    for spec in dataclasses.fields(cls):
        kind, choices, optional = _reduce(hints[spec.name], spec.name)
        data = dict(spec.metadata)
        default = spec.default
        if default is dataclasses.MISSING and spec.default_factory is not dataclasses.MISSING:
            default = spec.default_factory()
        out.append(
            FieldInfo(
                name=spec.name,
                type=kind,
                choices=choices,
                optional=optional,
                default=default,
                help=data.get("help", ""),
                low=data.get("low"),
                high=data.get("high"),
                step=data.get("step"),
                log=bool(data.get("log", False)),
                values=data.get("values"),
                label=data.get("label") or spec.name,
                choice_labels=dict(data.get("choice_labels") or {}),
                extra={key: value for key, value in data.items() if key not in _KNOWN_KEYS},
            )
        )
    return tuple(out)


def describe_field(cls: type, name: str) -> FieldInfo:
    """The :class:`FieldInfo` of one field of ``cls``."""
    for info in describe_fields(cls):
        if info.name == name:
            return info
    raise KeyError(f"{cls.__name__} has no field {name!r}")
