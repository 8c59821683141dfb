"""Why gates: the gradient through time against autograd and a hand-worked RNN, the sentence that reads it,
the memory test, and the charts of the Inside page's tab."""

from __future__ import annotations

import math

import pytest
import torch

from app import gates_charts as charts
from lstm_core.config import Config
from lstm_core.errors import InputError
from lstm_core.explain.gradients import (
    MAX_GRADIENT_WORDS,
    GradientTrace,
    gradient_sentence,
    gradient_through_time,
    share,
)
from lstm_core.explain.recall import CUE, NAMES, PASSAGE, RecallResult, recall_test, recall_texts, usable_names
from lstm_core.model.network import LSTMLanguageModel
from lstm_core.text.cleaning import tokenize
from lstm_core.text.vocab import UNK_TOKEN, Vocab

VOCAB = 6


def tiny(cell: str, num_layers: int = 1, size: int = 2, seed: int = 0) -> LSTMLanguageModel:
    torch.manual_seed(seed)
    config = Config(cell=cell, rnn_size=size, embedding_size=size, num_layers=num_layers)
    model = LSTMLanguageModel(VOCAB, config)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.uniform_(-1.5, 1.5)
    return model.eval()


IDS = [1, 4, 2, 5, 3, 1, 0, 2, 4]


# ---- the gradient through time ---------------------------------------------------------------------


def test_a_plain_rnns_gradient_is_the_hand_worked_backward_recursion():
    model = tiny("rnn")
    w_ih, w_hh, b_ih, b_hh = (
        getattr(model.rnn, f"{name}_l0").detach() for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
    )
    x = model.embedding.weight.detach()[IDS[:-1]]
    states, h = [], torch.zeros(2)
    for row in x:  # h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh)
        h = torch.tanh(w_ih @ row + b_ih + w_hh @ h + b_hh)
        states.append(h)
    logits = model.decoder.weight.detach() @ states[-1] + model.decoder.bias.detach()
    grad = model.decoder.weight.detach().T @ (logits.softmax(0) - torch.eye(VOCAB)[IDS[-1]])  # dL/dh at the last state
    expected = [float(grad.norm())]
    for t in range(len(states) - 1, 0, -1):  # dL/dh_{t-1} = W_hh^T ((1 - h_t^2) * dL/dh_t)
        grad = w_hh.T @ ((1 - states[t] ** 2) * grad)
        expected.append(float(grad.norm()))
    traced = gradient_through_time(model, IDS)
    assert traced.cell is None and traced.words_back == len(IDS) - 2
    assert traced.hidden.tolist() == pytest.approx(expected, rel=1e-5)
    assert traced.loss == pytest.approx(float(-logits.log_softmax(0)[IDS[-1]]), rel=1e-6)


@pytest.mark.parametrize("num_layers", [1, 2])
def test_an_lstms_gradients_at_h_and_c_are_autograds_from_each_state_on(num_layers):
    model = tiny("lstm", num_layers, size=3)
    traced = gradient_through_time(model, IDS)
    with torch.no_grad():
        states, state = [], None
        for word in IDS[:-1]:
            _, state = model.step(torch.tensor([word]), state)
            states.append(state)

    def loss_from(t: int, h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """The last word's loss, reading on from the state after word ``t`` (given as ``h, c``)."""
        state = (h, c)
        for word in IDS[t + 1 : -1]:
            _, state = model.step(torch.tensor([word]), state)
        return -model.log_probs(state[0][-1])[0, IDS[-1]]

    for t, (h, c) in enumerate(states):
        distance = len(states) - 1 - t
        leaf_h, leaf_c = h.clone().requires_grad_(), c.clone().requires_grad_()
        (grad_h,) = torch.autograd.grad(loss_from(t, leaf_h, c), leaf_h)
        assert traced.hidden[distance].item() == pytest.approx(float(grad_h.norm()), rel=1e-5, abs=1e-12)
        (grad_c,) = torch.autograd.grad(loss_from(t, h, leaf_c), leaf_c, allow_unused=True)
        expected_c = 0.0 if grad_c is None else float(grad_c.norm())  # the last c is read by no later word
        assert traced.cell[distance].item() == pytest.approx(expected_c, rel=1e-5, abs=1e-12)


def test_the_gradient_leaves_the_models_own_gradients_and_mode_alone():
    model = tiny("gru").train()
    gradient_through_time(model, IDS)
    assert model.training and all(parameter.grad is None for parameter in model.parameters())


@pytest.mark.parametrize(
    ("ids", "message"),
    [([3], "at least two words"), ([1] * (MAX_GRADIENT_WORDS + 2), "at most"), ([1, 9], r"\[0, 6\)")],
)
def test_a_text_the_gradient_cannot_read_is_refused(ids, message):
    with pytest.raises(InputError, match=message):
        gradient_through_time(tiny("rnn"), ids)


@pytest.mark.parametrize(
    ("ratio", "words"),
    [
        (1 / 1234, "1/1,200 of"),
        (1 / 8.3, "1/8 of"),
        (0.02, "1/50 of"),
        (0.73, "0.7 of"),
        (3.21, "3.2 times"),
        (0.0, "none of"),
    ],
)
def test_a_ratio_is_said_as_a_fraction_with_two_figures(ratio, words):
    assert share(ratio) == words


def trace_of(values: list[float], cell: list[float] | None = None, kind: str = "rnn") -> GradientTrace:
    return GradientTrace(
        kind,
        torch.tensor(values, dtype=torch.float64),
        None if cell is None else torch.tensor(cell, dtype=torch.float64),
        1.0,
    )


def test_the_sentence_reads_each_models_share_and_the_weakest_against_the_strongest():
    rnn = trace_of([2.0] + [2.0 * 0.5**d for d in range(1, 15)])
    lstm = trace_of([4.0] + [4.0 * 0.9**d for d in range(1, 15)], kind="lstm")
    sentence = gradient_sentence({"plain RNN": rnn, "LSTM": lstm})
    left_rnn, left_lstm = 0.5**10, 0.9**10  # geometric sequences: their mean over 8 to 12 words is the 10th
    assert sentence == (
        f"About 10 words back, the gradient of the last word's loss is {share(left_rnn)} its size at the last word "
        f"for the plain RNN and {share(left_lstm).removesuffix(' of')} for the LSTM: the plain RNN's is "
        f"{share(left_rnn / left_lstm)} the LSTM's."
    )
    assert "1/1,000 of its size" in sentence and "1/3 for the LSTM" in sentence and "is 1/360 of the LSTM's" in sentence


def test_the_sentence_averages_the_words_around_the_distance_and_says_when_models_agree():
    wobbly = trace_of([1.0, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.01, 0.5, 0.5, 0.5], kind="lstm")
    steady = trace_of([1.0] + [0.5] * 13)
    sentence = gradient_sentence({"GRU": steady, "LSTM": wobbly})
    assert (
        "0.5 of its size at the last word for the GRU and 1/4 for the LSTM" in sentence
    )  # (0.5^4 x 0.01)^(1/5) = 0.23
    assert gradient_sentence({"GRU": steady, "RNN": trace_of([1.0] + [0.45] * 13)}).endswith(": about the same.")


def test_a_long_enough_text_is_read_at_its_farthest_words_too_where_the_slopes_decide():
    # Near the last word the LSTM's gradient is the smaller (its first step costs it 20 times); farther
    # back the plain RNN's, falling by a constant factor a word, is far below the LSTM's nearly flat one.
    rnn = trace_of([1.0] + [0.8**d for d in range(1, 41)])
    lstm = trace_of([1.0] + [0.05 * 0.99**d for d in range(1, 41)], kind="lstm")
    sentence = gradient_sentence({"LSTM": lstm, "plain RNN": rnn})
    near_lstm, near_rnn, far_lstm, far_rnn = 0.05 * 0.99**10, 0.8**10, 0.05 * 0.99**38, 0.8**38
    assert sentence == (
        f"About 10 words back, the gradient of the last word's loss is {share(near_lstm)} its size at the last word "
        f"for the LSTM and {share(near_rnn).removesuffix(' of')} for the plain RNN: the LSTM's is "
        f"{share(near_lstm / near_rnn)} the plain RNN's. About 38 words back, it is "
        f"{share(far_lstm).removesuffix(' of')} for the LSTM and {share(far_rnn).removesuffix(' of')} for the "
        f"plain RNN: the plain RNN's is {share(far_rnn / far_lstm)} the LSTM's."
    )
    assert "the LSTM's is 1/2 of the plain RNN's" in sentence and "the plain RNN's is 1/160 of the LSTM's" in sentence
    # A text short of FAR_FROM words back, or one model alone, is read once.
    assert sentence.startswith(gradient_sentence({"LSTM": trace_of(lstm.hidden[:29].tolist()), "plain RNN": rnn}))
    assert gradient_sentence({"LSTM": trace_of(lstm.hidden[:29].tolist()), "plain RNN": rnn}).count("words back") == 1
    assert gradient_sentence({"plain RNN": rnn}).count("words back") == 1


def test_the_sentence_of_one_lstm_adds_its_memory_cell_and_a_short_text_its_own_length():
    lstm = trace_of([0.5**d for d in range(4)], cell=[0.0] + [0.8**d for d in range(1, 4)], kind="lstm")
    # 3 words back, averaged over words 1 to 3 (the text has no more): 0.5^2 and 0.8^2
    assert gradient_sentence({"LSTM": lstm}) == (
        "About 3 words back, the gradient of the last word's loss is 1/4 of its size at the last word for the LSTM "
        "(0.6 along its memory cell)."
    )
    assert "too short" in gradient_sentence({"LSTM": trace_of([1.0])})


# ---- the memory test ---------------------------------------------------------------------------------


def test_the_recall_texts_put_the_name_n_words_before_the_question():
    texts = recall_texts(["romeo", "iago"], 5)
    assert [text[:2] for text in texts] == [[CUE, "romeo"], [CUE, "iago"]]
    assert texts[0][2:] == texts[1][2:] and len(texts[0]) == 6 and texts[0][-1] == CUE
    assert len(texts[0]) - texts[0].index("romeo") == 5  # the word to predict comes 5 words after the name
    with pytest.raises(InputError, match="distance"):
        recall_texts(["romeo", "iago"], 1)


def test_names_missing_from_a_vocabulary_are_left_out_and_too_few_refused():
    plays = Vocab([UNK_TOKEN, CUE, *NAMES])
    other = Vocab([UNK_TOKEN, CUE, *NAMES[:5], "king"])
    assert usable_names([plays, other]) == list(NAMES[:5])
    with pytest.raises(InputError, match="at least 4 of the names"):
        usable_names([plays, Vocab([UNK_TOKEN, CUE, *NAMES[:3]])])


def names_vocab() -> Vocab:
    return Vocab([UNK_TOKEN, CUE, *NAMES[:4], *dict.fromkeys(tokenize(PASSAGE))])


def test_a_model_without_memory_gains_nothing_and_recalls_no_name():
    vocab = names_vocab()
    torch.manual_seed(0)
    model = LSTMLanguageModel(len(vocab), Config(cell="rnn", rnn_size=8)).eval()
    with torch.no_grad():
        model.rnn.weight_hh_l0.zero_()  # each state reads only its own word: every text ends in the same one
    result = recall_test(model, vocab, NAMES[:4], (2, 6))
    assert result.gain == (0.0, 0.0) and result.accuracy == (0.0, 0.0)  # ties count as not recalled
    assert result.times_more_likely == (1.0, 1.0) and result.chance == 0.25


def test_a_model_that_carries_the_name_recalls_it():
    vocab = names_vocab()
    names = NAMES[:4]
    torch.manual_seed(0)
    model = LSTMLanguageModel(len(vocab), Config(cell="rnn", rnn_size=4, embedding_size=4)).eval()
    ids = vocab.encode(list(names))
    with torch.no_grad():  # unit k holds "name k was read" for ever; the output layer reads it back
        for parameter in model.parameters():
            parameter.zero_()
        model.embedding.weight[ids] = torch.eye(4) * 3
        model.rnn.weight_ih_l0.copy_(torch.eye(4))
        model.rnn.weight_hh_l0.copy_(torch.eye(4) * 3)
        model.decoder.weight[ids] = torch.eye(4) * 5
    result = recall_test(model, vocab, names, (2, 10, 40))
    assert result.accuracy == (1.0, 1.0, 1.0)
    assert all(gain > 4 for gain in result.gain)


# ---- the charts ----------------------------------------------------------------------------------


def test_the_gradient_frame_leaves_out_zeros_and_draws_the_memory_cell_dashed():
    frame = charts.gradient_frame(
        {"LSTM": trace_of([2.0, 1.0, 0.5], cell=[0.0, 0.8, 0.6], kind="lstm"), "RNN": trace_of([1.0, 0.1, 0.0])}
    )
    lstm_h = frame[(frame["model"] == "LSTM") & (frame["path"] == charts.HIDDEN_PATH)]
    assert lstm_h["share"].tolist() == [1.0, 0.5, 0.25]
    assert frame[frame["path"] == charts.CELL_PATH]["words_back"].tolist() == [1, 2]  # no 0 on a log scale
    assert frame[frame["model"] == "RNN"]["share"].tolist() == [1.0, 0.1]
    spec = charts.gradient_chart(frame).to_dict()
    assert spec["encoding"]["y"]["scale"]["type"] == "log"
    assert (
        spec["encoding"]["strokeDash"]["scale"]["range"] == [[1, 0], [5, 3]]
        and spec["encoding"]["strokeDash"]["legend"] is None
    )


def test_the_recall_chart_shows_times_more_likely_with_a_rule_at_one():
    result = RecallResult(("romeo", "iago"), (2, 10), (math.log(3.0), 0.0), (1.0, 0.5))
    frame = charts.recall_frame({"LSTM": result})
    assert frame["times"].tolist() == pytest.approx([3.0, 1.0]) and frame["accuracy"].tolist() == [1.0, 0.5]
    layers = charts.recall_chart(frame).to_dict()["layer"]
    assert layers[0]["encoding"]["y"]["scale"]["type"] == "log"
    assert layers[1]["mark"]["type"] == "rule"
