"""One step explained: the softmax walk-through's numbers are the sampler's, the word just read is the trace's."""

from __future__ import annotations

import math

import pytest
import torch

from lstm_core.config import Config
from lstm_core.errors import InputError
from lstm_core.explain.inspection import trace
from lstm_core.explain.walkthrough import (
    LayerRead,
    read_last_word,
    softmax_walkthrough,
    units_by_change,
    walkthrough_rows,
    word_just_read,
)
from lstm_core.model.network import LSTMLanguageModel
from lstm_core.sampling.options import SamplingOptions
from lstm_core.sampling.processors import ProcessorList
from lstm_core.sampling.rules import TOP_P_TOLERANCE
from lstm_core.sampling.step import StepGenerator
from lstm_core.text.cleaning import tokenize
from tests.conftest import SONNET
from tests.language_models import PRIME, ForwardCounter, train


def sampled(**changes) -> SamplingOptions:
    return SamplingOptions(method="sample", **changes)


@pytest.fixture
def stepper(sonnet_model, sonnet_vocab) -> StepGenerator:
    generator = StepGenerator(sonnet_model, sonnet_vocab, PRIME)
    generator.step("to")
    return generator


# ---- the softmax walk-through ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        sampled(),
        sampled(temperature=0.6, top_k=5),
        sampled(temperature=1.4, top_p=0.7),
        sampled(temperature=0.9, top_k=8, top_p=0.6, min_p=0.1),
        sampled(repetition_penalty=2.0, no_repeat_ngram=2, unknown="allow"),
    ],
)
def test_the_final_probabilities_are_what_the_candidates_chart_shows(stepper, sonnet_vocab, options):
    walk = softmax_walkthrough(stepper, options, n=20)
    shown = {c.word: c.probability for c in stepper.distribution(options, n=len(sonnet_vocab)).candidates}
    assert [row.rank for row in walk.rows] == list(range(1, 21))
    for row in walk.rows:
        assert row.probability == pytest.approx(shown.get(row.word, 0.0), abs=1e-7)
    kept = [row for row in walk.rows if row.probability > 0]
    assert kept and all(row.word in shown for row in kept)


def test_it_reads_the_cached_log_probs_without_calling_the_model(stepper, sonnet_model):
    with ForwardCounter(sonnet_model) as counter:
        for temperature in (0.3, 1.0, 1.9):
            softmax_walkthrough(stepper, sampled(temperature=temperature, top_k=5, top_p=0.8))
    assert counter.shapes == []


@pytest.mark.parametrize("k", [1, 3, 7])
def test_the_top_k_cut_keeps_exactly_k(stepper, k):
    walk = softmax_walkthrough(stepper, sampled(top_k=k, temperature=1.5), n=12)
    assert walk.top_k == k
    assert [row.top_k_kept for row in walk.rows] == [True] * k + [False] * (12 - k)
    assert all((row.probability > 0) == row.top_k_kept for row in walk.rows)
    assert math.fsum(row.probability for row in walk.rows[:k]) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize(("top_p", "top_k"), [(0.3, 0), (0.6, 0), (0.9, 0), (0.9, 6)])
def test_the_running_sum_crosses_top_p_exactly_where_the_nucleus_ends(stepper, top_p, top_k):
    walk = softmax_walkthrough(stepper, sampled(top_p=top_p, top_k=top_k, temperature=1.2), n=50)
    flags = [row.top_p_kept for row in walk.rows]
    size = flags.count(True)
    assert 0 < size < len(flags) and flags == [True] * size + [False] * (len(flags) - size)
    sums = [row.running_sum for row in walk.rows[:size]]
    assert all(total < top_p - TOP_P_TOLERANCE for total in sums[:-1])  # not there yet: the next word is taken
    assert sums[-1] >= top_p - TOP_P_TOLERANCE  # reached: the nucleus ends with this word
    assert sums == sorted(sums)
    if top_k:  # the sum runs over the renormalised top-k distribution: 1 at its last word, none after
        assert walk.rows[top_k - 1].running_sum == pytest.approx(1.0, abs=1e-6)
        assert all(row.running_sum is None for row in walk.rows[top_k:])


def test_temperature_changes_the_divided_values_and_the_probabilities_not_the_order(stepper):
    cold = softmax_walkthrough(stepper, sampled(temperature=0.5), n=10)
    hot = softmax_walkthrough(stepper, sampled(temperature=1.5), n=10)
    assert [row.word for row in cold.rows] == [row.word for row in hot.rows]
    assert [row.logit for row in cold.rows] == [row.logit for row in hot.rows]
    for walk in (cold, hot):
        for row in walk.rows:
            assert row.scaled == pytest.approx(row.logit / walk.temperature)
        # softmax(z / T): the ratio of two words' probabilities is exp of their scaled difference.
        first, second = walk.rows[0], walk.rows[1]
        assert first.tempered / second.tempered == pytest.approx(math.exp(first.scaled - second.scaled), rel=1e-5)
    assert cold.rows[0].probability > hot.rows[0].probability  # colder is more certain
    assert cold.rows[-1].probability < hot.rows[-1].probability


def test_min_p_keeps_the_words_at_least_min_p_times_as_likely_as_the_top_one(stepper):
    walk = softmax_walkthrough(stepper, sampled(min_p=0.2, temperature=1.5), n=30)
    assert walk.min_p == 0.2 and walk.rows[0].min_p_ratio == pytest.approx(1.0)
    for row in walk.rows:
        if abs(row.min_p_ratio - 0.2) > 1e-4:  # away from the boundary, where rounding decides
            assert row.min_p_kept == (row.min_p_ratio >= 0.2)
    assert {row.min_p_kept for row in walk.rows} == {True, False}


def test_the_word_rules_shift_the_logits_and_are_named(stepper):
    plain = softmax_walkthrough(stepper, sampled(unknown="allow"), n=10)
    assert plain.rules == [] and plain.top_k is None and plain.top_p is None and plain.min_p is None
    assert all(row.top_k_kept is None and row.running_sum is None for row in plain.rows)
    for row in plain.rows:
        assert row.logit == pytest.approx(row.model_log_prob)
    penalised = softmax_walkthrough(stepper, sampled(repetition_penalty=3.0, unknown="allow"), n=10)
    assert penalised.rules == ["repetition penalty 3"]
    seen = set(tokenize(PRIME + " to"))
    for row in penalised.rows:
        # log(3) lower for a word already in the text, relative to an unseen one (the log-softmax
        # shifts every word by the same constant).
        shift = row.logit - row.model_log_prob
        unseen = next(r for r in penalised.rows if r.word not in seen)
        expected = unseen.logit - unseen.model_log_prob - (math.log(3.0) if row.word in seen else 0.0)
        assert shift == pytest.approx(expected, abs=1e-5)


def test_greedy_options_have_no_filters_to_walk_through(stepper):
    walk = softmax_walkthrough(stepper, SamplingOptions(method="greedy", top_k=3), n=5)
    assert walk.temperature is None and walk.top_k is None
    assert [row.scaled for row in walk.rows] == [row.logit for row in walk.rows]


def test_stages_from_other_options_are_refused(stepper, sonnet_vocab):
    stages = stepper.stages(sampled(top_k=3))
    with pytest.raises(InputError, match="not the output of the processors"):
        walkthrough_rows(stages, ProcessorList.from_options(sampled(top_k=4)), sonnet_vocab)
    with pytest.raises(InputError, match="n must be"):
        walkthrough_rows(stages, ProcessorList.from_options(sampled(top_k=3)), sonnet_vocab, n=0)


# ---- the word just read -----------------------------------------------------------------------------


def assert_layer_is_trace_row(read: LayerRead, traced, layer: int, row: int) -> None:
    """``read`` holds the gates of word ``row`` of a trace from the start, and its change in c."""
    expected = traced.layers[layer]
    close = {"rtol": 1e-4, "atol": 1e-5}
    assert list(read.gates) == ["i", "f", "o"] and read.memory_symbol == "c"
    torch.testing.assert_close(read.gates["i"], expected.input_gate[row], **close)
    torch.testing.assert_close(read.gates["f"], expected.forget_gate[row], **close)
    torch.testing.assert_close(read.candidate, expected.candidate[row], **close)
    torch.testing.assert_close(read.gates["o"], expected.output_gate[row], **close)
    before = expected.cell[row - 1] if row > 0 else torch.zeros_like(expected.cell[row])
    torch.testing.assert_close(read.change, expected.cell[row] - before, **close)


@pytest.fixture(scope="module")
def two_layer_model(sonnet_vocab) -> LSTMLanguageModel:
    torch.manual_seed(0)
    model = LSTMLanguageModel(len(sonnet_vocab), Config(rnn_size=20, num_layers=2, output_layer="full"))
    train(model, sonnet_vocab.encode(tokenize(SONNET * 2)), steps=20)
    return model.eval()


@pytest.mark.parametrize("layers", [1, 2])
def test_the_word_just_read_has_the_gates_the_inside_page_draws_for_it(
    sonnet_model, two_layer_model, sonnet_vocab, layers
):
    model = sonnet_model if layers == 1 else two_layer_model
    stepper = StepGenerator(model, sonnet_vocab, PRIME)
    prime_ids = sonnet_vocab.encode(tokenize(PRIME))
    read = word_just_read(stepper)  # at the prime's end: its last word
    assert read.word == "thee" and len(read.layers) == layers
    traced = trace(model, prime_ids)
    for layer in range(layers):
        assert_layer_is_trace_row(read.layers[layer], traced, layer, len(prime_ids) - 1)
    for word in ("to", "a", "summer's"):
        stepper.step(word)
    read = word_just_read(stepper)
    assert read.word == "summer's"
    traced = trace(model, prime_ids + sonnet_vocab.encode(["to", "a", "summer's"]))
    for layer in range(layers):
        assert_layer_is_trace_row(read.layers[layer], traced, layer, len(prime_ids) + 2)
    stepper.undo()
    assert word_just_read(stepper).word == "a"


def test_the_word_just_read_past_the_undo_stack_is_traced_from_the_start(sonnet_model, sonnet_vocab, monkeypatch):
    monkeypatch.setattr("lstm_core.sampling.step.UNDO_LIMIT", 1)
    stepper = StepGenerator(sonnet_model, sonnet_vocab, PRIME)
    stepper.step("to")
    stepper.step("a")
    stepper.undo()
    read = word_just_read(stepper)
    ids = sonnet_vocab.encode([*tokenize(PRIME), "to"])
    assert read.word == "to"
    assert_layer_is_trace_row(read.layers[0], trace(sonnet_model, ids), 0, len(ids) - 1)


def test_a_single_word_from_a_state_changes_c_from_that_state(sonnet_model, sonnet_vocab):
    ids = sonnet_vocab.encode(tokenize(PRIME))
    state = trace(sonnet_model, ids[:-1]).final_state
    (alone,) = read_last_word(sonnet_model, ids[-1:], state)
    torch.testing.assert_close(alone.memory_before, state[1][0, 0])
    (first,) = read_last_word(sonnet_model, ids[:1])
    assert torch.equal(first.memory_before, torch.zeros_like(first.memory))  # the text's first word starts from zero


@pytest.mark.parametrize("cell", ["gru", "rnn"])
def test_a_gru_or_plain_rnn_shows_its_own_gates_and_its_change_in_h(sonnet_vocab, cell):
    torch.manual_seed(0)
    model = LSTMLanguageModel(len(sonnet_vocab), Config(cell=cell, rnn_size=20, num_layers=2)).eval()
    stepper = StepGenerator(model, sonnet_vocab, PRIME)
    stepper.step("to")
    read = word_just_read(stepper)
    ids = sonnet_vocab.encode([*tokenize(PRIME), "to"])
    traced = trace(model, ids)
    close = {"rtol": 1e-4, "atol": 1e-5}
    for number, layer in enumerate(read.layers):
        expected = traced.layers[number]
        assert layer.memory_symbol == "h" and layer.kind == cell
        torch.testing.assert_close(layer.change, expected.hidden[-1] - expected.hidden[-2], **close)
        if cell == "gru":
            assert list(layer.gates) == ["r", "z"] and layer.candidate_symbol == "n"
            torch.testing.assert_close(layer.gates["z"], expected.update_gate[-1], **close)
            torch.testing.assert_close(layer.candidate, expected.new_gate[-1], **close)
        else:
            assert layer.gates == {} and layer.candidate is None
    state = trace(model, ids[:-1]).final_state
    (alone,) = read_last_word(model, ids[-1:], state)[:1]
    torch.testing.assert_close(alone.memory_before, state[0][0, 0])  # a GRU's memory is its h


def test_units_by_change_are_the_largest_changes_first():
    zeros = torch.zeros(5)
    layer = LayerRead({}, None, zeros, torch.tensor([0.1, -0.9, 0.3, 0.0, -0.3]), "rnn")
    assert units_by_change(layer, 3) == [1, 2, 4]  # |-0.3| ties with 0.3: the lower unit first
    assert units_by_change(layer, 10) == [1, 2, 4, 0, 3]
    with pytest.raises(InputError):
        units_by_change(layer, 0)
