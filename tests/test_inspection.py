import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lstm_core.config import Config
from lstm_core.errors import InputError
from lstm_core.explain.embeddings import most_frequent_ids, nearest_words, pca_2d
from lstm_core.explain.inspection import MAX_HEATMAP_UNITS, QUANTITIES, bin_means, pick_units, trace, word_window
from lstm_core.explain.units import FEATURES, feature_correlations, units_for_feature, units_for_span, word_features
from lstm_core.model.network import LSTMLanguageModel
from lstm_core.text.cleaning import tokenize
from lstm_core.text.vocab import UNK_INDEX, Vocab
from tests.conftest import SONNET, TINY_TEXT

VOCAB = 50


def make_model(num_layers=1, output_layer="full", tie_weights=False, dropout=0.0, seed=0):
    torch.manual_seed(seed)
    config = Config(
        rnn_size=16, num_layers=num_layers, output_layer=output_layer, tie_weights=tie_weights, dropout=dropout
    )
    cutoffs = [10, 30] if output_layer == "adaptive" else None
    return LSTMLanguageModel(VOCAB, config, cutoffs)


def random_ids(length=30, seed=1):
    return torch.randint(0, VOCAB, (length,), generator=torch.Generator().manual_seed(seed))


# ---- the traced forward pass -----------------------------------------------------------------------


@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("output_layer", ["full", "adaptive"])
@pytest.mark.parametrize("tie_weights", [False, True])
def test_trace_equals_the_models_own_lstm(num_layers, output_layer, tie_weights):
    model = make_model(num_layers, output_layer, tie_weights).eval()
    ids = random_ids()
    traced = trace(model, ids, log_probs=True)
    with torch.no_grad():
        output, (h, c) = model(ids[None])
        log_probs = model.log_probs(output[0])
    torch.testing.assert_close(traced.output, output[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(traced.final_state[0], h, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(traced.final_state[1], c, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(traced.log_probs, log_probs, rtol=1e-5, atol=1e-5)
    assert len(traced.layers) == num_layers
    for layer in traced.layers:
        for quantity in QUANTITIES:
            assert layer.values(quantity).shape == (30, 16)


def test_every_layer_and_every_word_equal_the_model_step_by_step():
    model = make_model(num_layers=2).eval()
    ids = random_ids(12)
    traced = trace(model, ids)
    state = None
    with torch.no_grad():
        for t in range(12):
            _, state = model.step(ids[t : t + 1], state)
            for layer in range(2):
                torch.testing.assert_close(traced.layers[layer].hidden[t], state[0][layer, 0], rtol=1e-5, atol=1e-6)
                torch.testing.assert_close(traced.layers[layer].cell[t], state[1][layer, 0], rtol=1e-5, atol=1e-6)


def test_gates_are_the_recipes_equations_in_pytorchs_order():
    model = make_model(num_layers=2).eval()
    ids = random_ids(10)
    traced = trace(model, ids)
    inputs = model.embedding.weight[ids].detach()
    for index, layer in enumerate(traced.layers):
        w_ii, w_if, w_ig, w_io = getattr(model.lstm, f"weight_ih_l{index}").detach().chunk(4)
        w_hi, w_hf, w_hg, w_ho = getattr(model.lstm, f"weight_hh_l{index}").detach().chunk(4)
        b = (getattr(model.lstm, f"bias_ih_l{index}") + getattr(model.lstm, f"bias_hh_l{index}")).detach().chunk(4)
        h_before = torch.cat([torch.zeros(1, 16), layer.hidden[:-1]])
        c_before = torch.cat([torch.zeros(1, 16), layer.cell[:-1]])
        i = torch.sigmoid(inputs @ w_ii.T + h_before @ w_hi.T + b[0])
        f = torch.sigmoid(inputs @ w_if.T + h_before @ w_hf.T + b[1])
        g = torch.tanh(inputs @ w_ig.T + h_before @ w_hg.T + b[2])
        o = torch.sigmoid(inputs @ w_io.T + h_before @ w_ho.T + b[3])
        for name, expected in [("input_gate", i), ("forget_gate", f), ("candidate", g), ("output_gate", o)]:
            torch.testing.assert_close(layer.values(name), expected, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(layer.cell, f * c_before + i * g, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(layer.hidden, o * torch.tanh(layer.cell), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(layer.preactivations[:, 32:48].tanh(), g, rtol=1e-5, atol=1e-6)
        inputs = layer.hidden


def test_trace_runs_without_dropout_or_autograd_and_restores_the_mode():
    model = make_model(num_layers=2, dropout=0.5).train()
    ids = random_ids()
    first, second = trace(model, ids), trace(model, ids)
    assert model.training
    torch.testing.assert_close(first.output, second.output)
    assert not first.output.requires_grad
    model.eval()
    with torch.no_grad():
        output, _ = model(ids[None])
    torch.testing.assert_close(first.output, output[0], rtol=1e-5, atol=1e-6)


def test_trace_restores_the_mode_when_it_fails():
    model = make_model().train()
    with pytest.raises(InputError):
        trace(model, [1, 2], state=(torch.zeros(1, 1, 16), torch.zeros(2, 1, 16)))
    assert model.training


def test_a_trace_continued_from_a_state_equals_one_pass():
    model = make_model(num_layers=2).eval()
    ids = random_ids(20)
    whole = trace(model, ids)
    first = trace(model, ids[:8])
    rest = trace(model, ids[8:], state=first.final_state)
    for layer in range(2):
        torch.testing.assert_close(rest.layers[layer].cell, whole.layers[layer].cell[8:], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(rest.layers[layer].hidden, whole.layers[layer].hidden[8:], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("output_layer", ["full", "adaptive"])
def test_next_word_log_probs_are_the_models_token_scores(output_layer):
    model = make_model(output_layer=output_layer).eval()
    ids = random_ids()
    traced = trace(model, ids, log_probs=True)
    with torch.no_grad():
        output, _ = model(ids[None])
        nll = model.token_nll(output[:, :-1], ids[None, 1:])[0]
    torch.testing.assert_close(traced.next_word_log_probs(), -nll, rtol=1e-5, atol=1e-5)
    with pytest.raises(InputError, match="log_probs=True"):
        trace(model, ids).next_word_log_probs()


@pytest.mark.parametrize(
    ("ids", "message"),
    [
        ([], "no words"),
        ([[1, 2], [3, 4]], "1-D"),
        ([1, VOCAB], "must lie in"),
        ([-1, 2], "must lie in"),
        ([0.5, 1.0], "integers"),
    ],
)
def test_trace_rejects_bad_ids(ids, message):
    with pytest.raises(InputError, match=message):
        trace(make_model(), ids)


def test_trace_rejects_a_state_of_the_wrong_shape():
    with pytest.raises(InputError, match=r"\(2, 1, 16\)"):
        trace(make_model(num_layers=2), [1, 2], state=(torch.zeros(1, 1, 16), torch.zeros(1, 1, 16)))


def test_an_unknown_quantity_is_refused():
    with pytest.raises(InputError, match="forget_gate"):
        trace(make_model(), [1, 2]).layers[0].values("memory")


# ---- features of a raw text -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        TINY_TEXT,
        "Word--\n--word 'tis-\r\nth' end.Next?!Yes 'ladies'\n\n  o'er -a- b",
        "",
        "no line break and no end",
    ],
)
def test_feature_words_are_the_cleaned_words_of_the_text(text):
    assert list(word_features(text).words) == tokenize(text)


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("aS s'-\n\r\x0b\x1c\x85\u2028.,!?;\u2019\u2014\u00a0\u0130"))) | st.text())
def test_feature_words_are_the_cleaned_words_of_any_text(text):
    features = word_features(text)
    assert list(features.words) == tokenize(text)
    assert features.line.shape == features.line_position.shape == features.in_question.shape == (len(features.words),)


def test_positions_in_the_line_start_again_on_each_line():
    features = word_features("Shall I compare thee\nTo a summer's day?\n\nThou art")
    assert features.line.tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 3, 3]
    assert features.line_position.tolist() == [0, 1, 2, 3, 0, 1, 2, 3, 0, 1]


def test_a_question_runs_from_the_previous_sentence_end_to_its_question_mark():
    text = "Be still. Shall I compare thee\nto a summer's day? No! Why,\nwhy not?! So be it"
    features = word_features(text)
    inside = {word for word, flag in zip(features.words, features.in_question.tolist(), strict=True) if flag}
    assert inside == {"shall", "i", "compare", "thee", "to", "a", "summer's", "day", "why", "not"}
    assert features.in_question.tolist()[-3:] == [False, False, False]  # an unfinished sentence is no question


def test_after_a_word_marks_the_next_word_only():
    features = word_features("Thou art\nthou, Thou art more")
    assert features.after("THOU").tolist() == [False, True, False, True, True, False]
    assert features.vector("after_word", "art").tolist() == [0, 0, 1, 0, 0, 1]
    with pytest.raises(InputError, match="one word"):
        features.after("thou art")
    with pytest.raises(InputError, match="needs the word"):
        features.vector("after_word")
    with pytest.raises(InputError, match="in_question"):
        features.vector("rhyme")
    assert set(FEATURES) == {"line_position", "in_question", "after_word"}


# ---- units that respond to something: a model with planted units ---------------------------------

DETECTOR, FOLLOWER = 2, 5  # the unit that fires on "thou" and the one that fires on the word after it


@pytest.fixture
def planted():
    """A 1 x 8 LSTM over the sonnet's words with two planted units, and the traced sonnet.

    Embedding dimension 0 is 1 for "thou" and 0 for every other word. DETECTOR opens its input
    gate and writes a memory of about 1 only when it reads that dimension, and forgets at once
    (forget gate closed), so its h is about 0.76 on "thou" and 0 elsewhere. FOLLOWER's candidate
    reads DETECTOR's h of the previous word, so it is on exactly on the word after "thou". The
    other units have random weights and see neither.
    """
    features = word_features(TINY_TEXT)
    vocab = Vocab.build(features.words, min_word_freq=0)
    torch.manual_seed(4)
    size = 8
    model = LSTMLanguageModel(len(vocab), Config(rnn_size=size)).eval()
    planted_rows = [k * size + unit for k in range(4) for unit in (DETECTOR, FOLLOWER)]
    i, f, g, o = (k * size for k in range(4))
    with torch.no_grad():
        model.embedding.weight.normal_(0, 0.5)[:, 0] = 0
        model.embedding.weight[vocab.index("thou"), 0] = 1
        lstm = model.lstm
        lstm.weight_ih_l0.normal_(0, 0.3)[:, 0] = 0
        lstm.weight_hh_l0.normal_(0, 0.3)[:, DETECTOR] = 0
        for parameter in (lstm.weight_ih_l0, lstm.weight_hh_l0, lstm.bias_ih_l0, lstm.bias_hh_l0):
            parameter[planted_rows] = 0
        lstm.weight_ih_l0[i + DETECTOR, 0] = 20
        lstm.bias_ih_l0[i + DETECTOR] = -10
        lstm.bias_ih_l0[f + DETECTOR] = -10
        lstm.weight_ih_l0[g + DETECTOR, 0] = 3
        lstm.bias_ih_l0[o + DETECTOR] = 10
        lstm.bias_ih_l0[i + FOLLOWER] = 10
        lstm.bias_ih_l0[f + FOLLOWER] = -10
        lstm.weight_hh_l0[g + FOLLOWER, DETECTOR] = 10
        lstm.bias_ih_l0[o + FOLLOWER] = 10
    return features, trace(model, vocab.encode(features.words))


def test_the_unit_planted_to_follow_a_word_is_found_first(planted):
    features, traced = planted
    found = units_for_feature(traced.layers[0].hidden, features.vector("after_word", "thou"), k=3)
    assert found[0].unit == FOLLOWER
    assert found[0].correlation > 0.99
    assert abs(found[1].correlation) < 0.9


def test_the_unit_planted_to_be_on_across_a_span_is_found_first(planted):
    features, traced = planted
    where = features.words.index("thou")
    found = units_for_span(traced.layers[0].hidden, where, where + 1, threshold=0.5)
    assert found[0].unit == DETECTOR
    assert found[0].inside_min > 0.7
    assert found[0].outside_mean < 0.1
    after = units_for_span(traced.layers[0].hidden, where + 1, where + 2, threshold=0.5)
    assert after[0].unit == FOLLOWER


# ---- units that respond to something: synthetic activations ---------------------------------------


def noise(steps=200, units=12, seed=0):
    return torch.rand(steps, units, generator=torch.Generator().manual_seed(seed)) - 0.5


def test_feature_search_ranks_by_strength_keeps_the_sign_and_never_gives_nan():
    features = word_features(TINY_TEXT)
    position = features.vector("line_position")
    question = features.vector("in_question")
    values = noise(len(features.words))
    values[:, 3] = -0.1 * position + 0.05 * values[:, 0]  # falls along the line
    values[:, 7] = question + 0.3 * values[:, 1]  # on inside questions, roughly
    values[:, 9] = 0.25  # constant
    values[:, 10] = 0.0  # constant zero
    by_position = units_for_feature(values, position, k=2)
    assert by_position[0].unit == 3
    assert by_position[0].correlation < -0.95
    assert units_for_feature(values, question, k=1)[0].unit == 7
    correlations = feature_correlations(values, question)
    assert torch.isfinite(correlations).all()
    assert correlations[9] == 0 and correlations[10] == 0
    flat = feature_correlations(values, torch.full((len(features.words),), 2.0))
    assert torch.equal(flat, torch.zeros(12))
    assert units_for_feature(values, torch.zeros(len(features.words))) == []


def test_feature_search_checks_its_input():
    with pytest.raises(InputError, match="one value per word"):
        units_for_feature(noise(10), torch.zeros(9))
    with pytest.raises(InputError, match=r"\(words, units\)"):
        units_for_feature(torch.zeros(10), torch.zeros(10))
    with pytest.raises(InputError, match="at least 1"):
        units_for_feature(noise(10), torch.arange(10.0), k=0)


def test_span_search_prefers_units_on_only_inside_the_span():
    values = noise(60, 8)
    values[:, 2] = 0.0
    values[10:20, 2] = 1.0  # on exactly across the span
    values[:, 4] = 1.5  # higher across the span, but everywhere
    values[:, 6] = 0.8
    values[15, 6] = 0.1  # on across most of the span, but not all of it
    found = units_for_span(values, 10, 20, threshold=0.5)
    assert [unit.unit for unit in found] == [2, 4]
    assert found[0].contrast == pytest.approx(1.0)
    assert found[1].contrast == pytest.approx(0.0, abs=1e-6)
    assert units_for_span(values, 10, 20, threshold=1.2) == [found[1]]
    negative = units_for_span(-values, 10, 15, threshold=0.5)
    assert all(unit.unit not in (2, 4) for unit in negative)


@pytest.mark.parametrize(("start", "end"), [(5, 5), (-1, 3), (3, 61), (0, 60), (1.0, 3)])
def test_span_search_rejects_bad_spans(start, end):
    with pytest.raises(InputError):
        units_for_span(noise(60, 8), start, end)


# ---- embeddings --------------------------------------------------------------------------------------


@pytest.fixture
def sonnet_vocab():
    return Vocab.build(tokenize(SONNET), min_word_freq=0)


def test_a_word_planted_next_to_another_is_its_nearest_neighbour(sonnet_vocab):
    torch.manual_seed(0)
    embedding = torch.randn(len(sonnet_vocab), 16)
    thou, thee = sonnet_vocab.index("thou"), sonnet_vocab.index("thee")
    embedding[thee] = embedding[thou] * 3 + 0.01 * torch.randn(16)  # cosine ignores length
    embedding[UNK_INDEX] = embedding[thou]  # <unk> is never offered as a neighbour
    neighbours = nearest_words(embedding, sonnet_vocab, "Thou", k=5)
    assert neighbours[0][0] == "thee"
    assert neighbours[0][1] > 0.99
    assert len(neighbours) == 5
    assert [cosine for _, cosine in neighbours] == sorted((cosine for _, cosine in neighbours), reverse=True)
    assert all(word not in ("thou", "<unk>") for word, _ in neighbours)
    assert len(nearest_words(embedding, sonnet_vocab, "thou", k=1000)) == len(sonnet_vocab) - 2


def test_nearest_words_explains_what_is_wrong(sonnet_vocab):
    embedding = torch.randn(len(sonnet_vocab), 4)
    with pytest.raises(InputError, match="'hamlet' is not in the vocabulary"):
        nearest_words(embedding, sonnet_vocab, "Hamlet")
    with pytest.raises(InputError, match="one word"):
        nearest_words(embedding, sonnet_vocab, "thou art")
    with pytest.raises(InputError, match="rows"):
        nearest_words(embedding[:5], sonnet_vocab, "thou")


def test_most_frequent_ids_leave_out_unknown(sonnet_vocab):
    ids = most_frequent_ids(sonnet_vocab, 5)
    assert ids.tolist() == [1, 2, 3, 4, 5]
    assert most_frequent_ids(sonnet_vocab, 10_000).numel() == len(sonnet_vocab) - 1


def test_pca_of_points_on_a_line_is_a_line():
    steps = torch.tensor([0.0, 1.0, 2.5, 4.0, -3.0], dtype=torch.float64)
    direction = torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=torch.float64)
    embedding = (torch.tensor([0.3, 0.1, -0.7, 2.0], dtype=torch.float64) + steps[:, None] * direction).float()
    projected = pca_2d(embedding, torch.arange(5))
    assert projected.shape == (5, 2)
    torch.testing.assert_close(projected[:, 1], torch.zeros(5))
    expected = (steps - steps.mean()) * direction.norm()
    expected = expected if expected[expected.abs().argmax()] > 0 else -expected
    torch.testing.assert_close(projected[:, 0], expected.float(), rtol=1e-4, atol=1e-4)


def test_pca_keeps_distances_within_a_plane_and_does_not_flip():
    torch.manual_seed(1)
    plane = torch.linalg.qr(torch.randn(10, 2)).Q  # (10, 2), orthonormal columns
    points = torch.randn(30, 2) * torch.tensor([3.0, 1.0])
    embedding = points @ plane.T + 5.0
    projected = pca_2d(embedding, torch.arange(30))

    def distances(x):
        return (x[:, None] - x[None]).norm(dim=-1)

    torch.testing.assert_close(distances(projected), distances(points), rtol=1e-4, atol=1e-4)
    mirrored = pca_2d(-embedding, torch.arange(30))
    torch.testing.assert_close(mirrored, projected, rtol=1e-4, atol=1e-4)
    assert pca_2d(embedding, [3, 1, 4]).shape == (3, 2)


def test_pca_rejects_too_few_words():
    with pytest.raises(InputError, match="at least 2"):
        pca_2d(torch.randn(10, 4), [3])
    with pytest.raises(InputError, match="must lie in"):
        pca_2d(torch.randn(10, 4), [3, 10])


# ---- cutting a trace down to what a page can draw --------------------------------------------------


def test_pick_units_keeps_the_chosen_then_the_most_variable():
    values = torch.zeros(50, 6)
    values[:, 1] = torch.linspace(0, 1, 50)  # small spread
    values[:, 4] = torch.linspace(-3, 3, 50)  # largest spread
    values[:, 5] = torch.linspace(0, 2, 50)
    assert pick_units(values, max_units=3) == [4, 5, 1]
    assert pick_units(values, max_units=3, keep=[0, 0, 5]) == [0, 5, 4]
    assert pick_units(values, max_units=2, keep=[3, 2, 1]) == [3, 2]
    assert len(pick_units(torch.randn(10, 512))) == MAX_HEATMAP_UNITS
    with pytest.raises(InputError, match="0 to 5"):
        pick_units(values, keep=[6])


def test_word_window_shows_a_run_of_words_around_the_focus():
    assert word_window(120, max_words=400) == range(120)
    assert word_window(1000, max_words=400) == range(400)
    assert word_window(1000, max_words=400, focus=500) == range(300, 700)
    assert word_window(1000, max_words=400, focus=990) == range(600, 1000)
    assert word_window(1000, max_words=400, focus=3) == range(400)
    with pytest.raises(InputError):
        word_window(1000, max_words=400, focus=1000)


def test_bin_means_average_runs_of_words():
    values = torch.arange(10.0)[:, None].repeat(1, 3)  # (10, 3)
    assert bin_means(values, max_rows=10) is values
    binned = bin_means(values, max_rows=4)  # runs of 3: 0-2, 3-5, 6-8, 9
    assert binned.shape == (4, 3)
    assert binned[:, 0].tolist() == [1.0, 4.0, 7.0, 9.0]
    assert bin_means(torch.arange(1000.0), max_rows=400).shape[0] <= 400
    assert math.isclose(float(bin_means(torch.arange(1001.0), max_rows=400).mean()), 500.0, rel_tol=0.01)
