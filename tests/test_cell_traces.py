"""Inside a GRU and a plain RNN: their traces equal torch's own modules and follow their equations."""

from __future__ import annotations

import pytest
import torch

from lstm_core.config import Config
from lstm_core.explain.inspection import CELL_QUANTITIES, trace
from lstm_core.model.network import LSTMLanguageModel

VOCAB = 40
MODULES = {"gru": torch.nn.GRU, "rnn": torch.nn.RNN}


def make_model(cell: str, num_layers: int = 2, seed: int = 0) -> LSTMLanguageModel:
    torch.manual_seed(seed)
    return LSTMLanguageModel(VOCAB, Config(cell=cell, rnn_size=12, num_layers=num_layers)).eval()


def random_ids(length: int = 20, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, VOCAB, (length,), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("cell", ["gru", "rnn"])
def test_the_trace_of_a_gru_or_plain_rnn_equals_torchs_module(cell, num_layers):
    model = make_model(cell, num_layers)
    ids = random_ids(30)
    traced = trace(model, ids)
    reference = MODULES[cell](12, 12, num_layers=num_layers, batch_first=True)
    reference.load_state_dict(model.recurrent.state_dict())
    with torch.no_grad():
        output, h = reference(model.embedding(ids[None]))
    torch.testing.assert_close(traced.output, output[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(traced.final_state[0], h, rtol=1e-5, atol=1e-6)
    for layer in traced.layers:
        assert layer.kind == cell and layer.cell is None
        assert list(layer.quantities) == list(CELL_QUANTITIES[cell])
        for quantity in layer.quantities:
            assert layer.values(quantity).shape == (30, 12)


def test_the_gru_trace_follows_its_equations_in_pytorchs_order():
    model = make_model("gru")
    ids = random_ids(10)
    traced = trace(model, ids)
    inputs = model.embedding.weight[ids].detach()
    for index, layer in enumerate(traced.layers):
        w_ir, w_iz, w_in = getattr(model.gru, f"weight_ih_l{index}").detach().chunk(3)
        w_hr, w_hz, w_hn = getattr(model.gru, f"weight_hh_l{index}").detach().chunk(3)
        b_ir, b_iz, b_in = getattr(model.gru, f"bias_ih_l{index}").detach().chunk(3)
        b_hr, b_hz, b_hn = getattr(model.gru, f"bias_hh_l{index}").detach().chunk(3)
        h_before = torch.cat([torch.zeros(1, 12), layer.hidden[:-1]])
        r = torch.sigmoid(inputs @ w_ir.T + b_ir + h_before @ w_hr.T + b_hr)
        z = torch.sigmoid(inputs @ w_iz.T + b_iz + h_before @ w_hz.T + b_hz)
        n = torch.tanh(inputs @ w_in.T + b_in + r * (h_before @ w_hn.T + b_hn))
        for name, expected in [("reset_gate", r), ("update_gate", z), ("new_gate", n)]:
            torch.testing.assert_close(layer.values(name), expected, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(layer.hidden, (1 - z) * n + z * h_before, rtol=1e-5, atol=1e-6)
        inputs = layer.hidden


def test_the_plain_rnn_trace_is_one_tanh_and_has_no_gates_to_ask_for():
    model = make_model("rnn", num_layers=1)
    ids = random_ids(10)
    layer = trace(model, ids).layers[0]
    weights = [getattr(model.rnn, f"{name}_l0").detach() for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    h_before = torch.cat([torch.zeros(1, 12), layer.hidden[:-1]])
    expected = torch.tanh(
        model.embedding.weight[ids].detach() @ weights[0].T + h_before @ weights[1].T + weights[2] + weights[3]
    )
    torch.testing.assert_close(layer.hidden, expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="unknown quantity 'forget_gate' for this RNN; choose one of hidden"):
        layer.values("forget_gate")
