"""Widgets built from settings fields: a field's type and metadata pick the widget and its range.

One rule for every settings dataclass (:class:`~lstm_core.config.Config` on the Train page,
:class:`~lstm_core.sampling.options.SamplingOptions` on the Generate page), so a new field shows up with
the right widget, range and help text without touching the pages::

    bool                                  -> checkbox
    Literal                               -> radio (choice labels from the metadata)
    number with nice ``values``           -> select_slider over those values
    number on a ``log`` scale             -> select_slider over 1, 2, 3, 5 x each power of ten
    number, at most 1,000 steps of range  -> slider
    number with a wider range (a seed)    -> number_input

:func:`widget_spec` is the pure part (testable without Streamlit); :func:`field_widget` draws it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import streamlit as st

from lstm_core.fields import FieldInfo, describe_field

WidgetKind = Literal["checkbox", "radio", "select_slider", "slider", "number_input"]

MAX_SLIDER_STEPS = 1000
"""A range with more steps than this gets a number box: a slider could not hit each value."""


@dataclass(frozen=True)
class WidgetSpec:
    """Which Streamlit widget shows a field, its label, and its keyword arguments (range, options, help)."""

    kind: WidgetKind
    label: str
    kwargs: dict[str, Any]


def log_values(low: float, high: float) -> list[float]:
    """1, 2, 3 and 5 times each power of ten from ``low`` to ``high`` (both kept), e.g. 1e-5 ... 1.0."""
    values = {float(low), float(high)}
    for exponent in range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1):
        for mantissa in (1, 2, 3, 5):
            value = float(f"{mantissa}e{exponent}")  # exactly the decimal, not 3 * 10 ** -4 = 0.00030000000000000003
            if low <= value <= high:
                values.add(value)
    return sorted(values)


def _number(info: FieldInfo, value: float) -> float:
    return int(value) if info.type is int else float(value)


def widget_spec(cls: type, name: str, current: Any = None) -> WidgetSpec:
    """The widget for field ``name`` of the settings dataclass ``cls`` (see the module's table).

    ``current`` is the value the widget will show: a preset or a loaded run may hold one outside
    the usual range or between the nice values, and the widget then offers it too.
    """
    info = describe_field(cls, name)
    kwargs: dict[str, Any] = {"help": info.help}
    if info.type is bool:
        return WidgetSpec("checkbox", info.label, kwargs)
    if info.choices:
        labels = info.choice_labels
        kwargs.update(options=list(info.choices), format_func=lambda choice: labels.get(choice, choice))
        return WidgetSpec("radio", info.label, kwargs)
    if info.type not in (int, float) or info.low is None or info.high is None:
        raise TypeError(f"{cls.__name__}.{name} has no widget: it needs a bool, a Literal, or a number with bounds")
    low, high = _number(info, info.low), _number(info, info.high)
    extra = [] if current is None else [_number(info, current)]
    if info.values is not None or info.log:
        values = [_number(info, v) for v in info.values] if info.values is not None else log_values(low, high)
        kwargs["options"] = sorted({*values, *extra})
        if info.type is float:
            kwargs["format_func"] = lambda value: f"{value:g}"
        return WidgetSpec("select_slider", info.label, kwargs)
    if info.step is not None:
        step = _number(info, info.step)
    else:  # whole numbers one by one; otherwise the power of ten that gives at least 100 steps
        step = 1 if info.type is int else float(f"1e{math.floor(math.log10((high - low) / 100))}")
    kwargs.update(min_value=min([low, *extra]), max_value=max([high, *extra]), step=step)
    if (high - low) / step > MAX_SLIDER_STEPS:
        return WidgetSpec("number_input", info.label, kwargs)
    return WidgetSpec("slider", info.label, kwargs)


def field_widget(cls: type, name: str, *, key: str, value: Any = None, container: Any = None, **extra: Any) -> Any:
    """Draw the widget for field ``name`` of ``cls`` in ``container`` (default: the page) and return its value.

    ``value`` is the widget's starting value (the app's choice, which may differ from the
    dataclass's default); ``extra`` goes to the widget (``disabled``, ``persist_state`` ...).
    """
    spec = widget_spec(cls, name, current=value)
    kwargs = {**spec.kwargs, **extra}
    if value is not None:
        if spec.kind == "radio":
            kwargs["index"] = spec.kwargs["options"].index(value)
        else:
            kwargs["value"] = value
    widget = getattr(container if container is not None else st, spec.kind)
    return widget(spec.label, key=key, **kwargs)
