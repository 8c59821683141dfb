"""SamplingOptions: validation with the field named, the caps of a shared server, field metadata."""

from __future__ import annotations

import dataclasses

import pytest

from lstm_core.errors import InputError
from lstm_core.fields import describe_fields
from lstm_core.sampling.options import MAX_BEAM_WIDTH, SamplingOptions
from lstm_core.sampling.processors import PIPELINE
from lstm_core.sampling.rules import MAX_TOP_K


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"temperature": 0}, "temperature"),
        ({"temperature": -1.0}, "temperature"),
        ({"temperature": float("nan")}, "temperature"),
        ({"top_k": -1}, "top_k"),
        ({"top_k": 2.5}, "top_k"),
        ({"top_p": 0.0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
        ({"repetition_penalty": 0.5}, "repetition_penalty"),
        ({"no_repeat_ngram": -1}, "no_repeat_ngram"),
        ({"beam_width": 0}, "beam_width"),
        ({"length_penalty": -1.0}, "length_penalty"),
        ({"unknown": "maybe"}, "unknown"),
        ({"method": "nucleus"}, "method"),
        ({"seed": -1}, "seed"),
        ({"seed": "42"}, "seed"),
        ({"min_p": -0.1}, "min_p"),
        ({"min_p": 1.5}, "min_p"),
        ({"top_k": MAX_TOP_K + 1}, "top_k"),
        ({"beam_width": MAX_BEAM_WIDTH + 1}, "beam_width"),
    ],
)
def test_bad_options_are_refused_with_the_field_named(changes, field):
    with pytest.raises(ValueError, match=field):
        SamplingOptions(**changes)


def test_default_options_are_valid_and_greedy():
    options = SamplingOptions()
    assert options.method == "greedy" and options.unknown == "skip" and options.problems() == []


def test_every_problem_is_reported_at_once_as_an_input_error():
    with pytest.raises(InputError) as caught:
        SamplingOptions(temperature=0, top_k=-1, top_p=2.0, min_p=-1.0, unknown="maybe", beam_width=0)
    for name in ("temperature", "top_k", "top_p", "min_p", "unknown", "beam_width"):
        assert name in str(caught.value)


@pytest.mark.parametrize(
    ("changes", "advice"),
    [
        ({"temperature": 0}, "method 'greedy'"),
        ({"top_k": MAX_TOP_K + 1}, "use top_p or min_p"),
        ({"top_p": 0.0}, "method 'greedy'"),
        ({"repetition_penalty": 0.5}, "more than 1"),
        ({"beam_width": MAX_BEAM_WIDTH + 1}, "4 is usual"),
    ],
)
def test_a_refusal_says_what_to_use_instead(changes, advice):
    with pytest.raises(InputError, match=advice):
        SamplingOptions(**changes)


def test_the_caps_themselves_are_allowed():
    options = SamplingOptions(method="beam", top_k=MAX_TOP_K, beam_width=MAX_BEAM_WIDTH, min_p=1.0)
    assert options.problems() == []


def test_every_processor_reads_a_field_and_every_filter_says_which_methods_it_applies_to():
    fields = {info.name: info for info in describe_fields(SamplingOptions)}
    for kind in PIPELINE:
        assert kind.option in fields, kind
    sampling_only = {name for name, info in fields.items() if info.extra.get("applies_to") == ("sample",)}
    assert sampling_only == {"temperature", "top_k", "top_p", "min_p"}
    beam_only = {name for name, info in fields.items() if info.extra.get("applies_to") == ("beam",)}
    assert beam_only == {"beam_width", "length_penalty"}


def test_every_numeric_field_has_help_and_bounds_that_validation_accepts():
    for info in describe_fields(SamplingOptions):
        assert info.help, info.name
        if info.type in (int, float):
            assert info.low is not None and info.high is not None and info.low < info.high, info.name
            for value in (info.low, info.high, *(info.values or ())):
                value = info.type(value)
                assert SamplingOptions(**{info.name: value}).problems() == [], (info.name, value)
        if info.choices:
            for choice in info.choices:
                dataclasses.replace(SamplingOptions(), **{info.name: choice})
