"""One description per setting: the CLI flags and the app's widgets come from the fields' types and metadata.

Every field of Config and SamplingOptions is walked: its flag must have the field's type and
choices, and its widget the field's bounds, step and choices, so neither can drift from the
dataclass (or repeat a range by hand).
"""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from app.widgets import log_values, widget_spec
from lstm_core.cli.flags import add_dataclass_flags
from lstm_core.cli.main import build_parser
from lstm_core.config import Config
from lstm_core.fields import describe_field, describe_fields, meta
from lstm_core.sampling.options import SamplingOptions

SETTINGS = [(Config, "train"), (SamplingOptions, "generate")]
NO_WIDGET = {(Config, "device"), (Config, "prime_texts")}  # free text: set on the command line only


def subcommand(name: str) -> argparse.ArgumentParser:
    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return commands.choices[name]


@pytest.mark.parametrize(("cls", "command"), SETTINGS, ids=["Config", "SamplingOptions"])
def test_every_field_is_a_flag_of_its_type(cls, command):
    actions = {action.dest: action for action in subcommand(command)._actions}
    for info in describe_fields(cls):
        action = actions[info.name]
        assert action.option_strings[0] == "--" + info.name.replace("_", "-")
        assert action.default is None  # so the flags the user gave can be told apart
        assert info.help in action.help
        if info.type is bool:
            assert isinstance(action, argparse.BooleanOptionalAction)
        elif info.choices:
            assert tuple(action.choices) == info.choices
        elif info.type is tuple:
            assert action.nargs == "+"
        else:
            assert action.type is info.type and action.choices is None


@pytest.mark.parametrize(("cls", "command"), SETTINGS, ids=["Config", "SamplingOptions"])
def test_every_widget_has_the_fields_bounds_step_and_choices(cls, command):
    for info in describe_fields(cls):
        if (cls, info.name) in NO_WIDGET:
            with pytest.raises(TypeError, match="has no widget"):
                widget_spec(cls, info.name)
            continue
        spec = widget_spec(cls, info.name)
        assert spec.label == info.label and spec.kwargs["help"] == info.help
        if info.type is bool:
            assert spec.kind == "checkbox"
        elif info.choices:
            assert spec.kind == "radio" and spec.kwargs["options"] == list(info.choices)
            for choice in info.choices:
                assert spec.kwargs["format_func"](choice) == info.choice_labels.get(choice, choice)
        elif spec.kind == "select_slider":
            options = spec.kwargs["options"]
            assert (min(options), max(options)) == (info.low, info.high)
            assert options == (sorted(info.values) if info.values else log_values(info.low, info.high))
            assert all(type(option) is info.type for option in options)
        else:
            assert spec.kind in ("slider", "number_input")
            assert (spec.kwargs["min_value"], spec.kwargs["max_value"]) == (info.low, info.high)
            assert type(spec.kwargs["min_value"]) is type(spec.kwargs["max_value"]) is info.type
            if info.step is not None:
                assert spec.kwargs["step"] == info.step
            elif info.type is int:
                assert spec.kwargs["step"] == 1
            assert (spec.kind == "number_input") == ((info.high - info.low) / spec.kwargs["step"] > 1000)


def test_a_value_outside_the_usual_range_widens_the_widget_to_show_it():
    assert widget_spec(Config, "epochs", current=150).kwargs["max_value"] == 150
    assert 300 in widget_spec(Config, "rnn_size", current=300).kwargs["options"]
    assert widget_spec(Config, "epochs", current=5).kwargs["max_value"] == describe_field(Config, "epochs").high


def test_log_values_are_1_2_3_5_per_decade_and_exact_decimals():
    assert log_values(1e-4, 0.1)[:5] == [0.0001, 0.0002, 0.0003, 0.0005, 0.001]
    assert log_values(1e-4, 0.1)[-1] == 0.1 and len(log_values(1e-4, 0.1)) == 13
    assert log_values(0.0004, 0.04) == [0.0004, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.01, 0.02, 0.03, 0.04]


def test_describe_fields_reads_types_and_metadata():
    seed = describe_field(SamplingOptions, "seed")
    assert (seed.type, seed.optional, seed.default, seed.label) == (int, True, None, "Seed")
    method = describe_field(SamplingOptions, "method")
    assert (method.type, method.choices) == (str, ("greedy", "sample", "beam"))
    assert describe_field(SamplingOptions, "temperature").extra == {"applies_to": ("sample",)}
    assert describe_field(Config, "prime_texts").type is tuple
    assert describe_field(Config, "learning_rate").log
    assert [info.name for info in describe_fields(Config)] == [f.name for f in dataclasses.fields(Config)]
    with pytest.raises(KeyError):
        describe_field(Config, "nope")


def test_a_new_option_field_becomes_a_flag_and_a_widget_by_itself():
    @dataclasses.dataclass(frozen=True)
    class Extra:
        eta: float = dataclasses.field(default=0.5, metadata=meta("how eager", 0.0, 1.0, step=0.1))

    parser = argparse.ArgumentParser()
    add_dataclass_flags(parser, Extra)
    assert parser.parse_args(["--eta", "0.3"]).eta == 0.3
    spec = widget_spec(Extra, "eta")
    assert (spec.kind, spec.label, spec.kwargs["min_value"], spec.kwargs["step"]) == ("slider", "eta", 0.0, 0.1)
