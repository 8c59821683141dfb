"""The step tab's walk-through table and gate strips, drawn from plain data (no Streamlit run)."""

from __future__ import annotations

import pytest
import torch

from app.inside_charts import BLUE_ORANGE, VIRIDIS
from app.walkthrough_panel import CUT, KEPT, gates_chart, gates_frame, styled, walkthrough_caption, walkthrough_frame
from lstm_core.explain.walkthrough import LayerRead, Walkthrough, WalkthroughRow


def row(rank: int, logit: float, model_log_prob: float | None = None, **flags) -> WalkthroughRow:
    values = {
        "top_k_kept": None,
        "running_sum": None,
        "top_p_kept": None,
        "min_p_ratio": None,
        "min_p_kept": None,
    }
    values.update(flags)
    return WalkthroughRow(
        rank=rank,
        word=f"w{rank}",
        index=rank,
        model_log_prob=logit if model_log_prob is None else model_log_prob,
        logit=logit,
        scaled=logit / 0.5,
        tempered=0.1,
        probability=0.2,
        **values,
    )


def test_a_filter_that_is_off_has_no_column_and_kept_names_the_cut_that_removed_each_word():
    plain = Walkthrough([row(1, -1.0), row(2, -2.0)], ["<unk>: skip"], 0.5, None, None, None)
    assert list(walkthrough_frame(plain).columns) == ["word", "logit z", "z / T", "p after T", "p (drawn)"]
    rows = [
        row(1, -1.0, top_k_kept=True, running_sum=0.6, top_p_kept=True, min_p_ratio=1.0, min_p_kept=True),
        row(2, -2.0, top_k_kept=True, running_sum=0.9, top_p_kept=True, min_p_ratio=0.2, min_p_kept=False),
        row(3, -2.5, top_k_kept=True, running_sum=0.95, top_p_kept=False, min_p_kept=False),
        row(4, -3.0, top_k_kept=False, top_p_kept=False, min_p_kept=False),
    ]
    frame = walkthrough_frame(Walkthrough(rows, [], 0.5, 3, 0.8, 0.3))
    columns = ["word", "logit z", "z / T", "p after T", "running sum", "p / p top", "kept?", "p (drawn)"]
    assert list(frame.columns) == columns
    assert frame["kept?"].tolist() == [KEPT, f"{CUT} min-p", f"{CUT} top-p", f"{CUT} top-k"]
    assert frame["running sum"].tolist()[:3] == [0.6, 0.9, 0.95] and frame["running sum"].isna().tolist()[3]
    only_top_k = walkthrough_frame(Walkthrough(rows[3:], [], 0.5, 3, None, None))
    assert list(only_top_k.columns) == ["word", "logit z", "z / T", "p after T", "kept?", "p (drawn)"]


def test_a_number_a_filter_left_undefined_is_shown_blank_and_the_caption_names_what_is_off():
    rows = [row(1, -1.0, top_k_kept=True, running_sum=0.6, top_p_kept=True), row(2, -2.0, top_k_kept=False)]
    walk = Walkthrough(rows, ["<unk>: skip"], 0.5, 1, 0.8, None)
    shown = styled(walkthrough_frame(walk))
    assert shown.data["running sum"].tolist() == ["60.00%", ""]  # not "None"
    assert shown.data["logit z"].tolist() == [-1.0, -2.0]  # always defined: stays a number
    caption = walkthrough_caption(walk)
    assert "T = 0.5" in caption and "keeps the 1 most likely" in caption and "reaches 0.8" in caption
    assert "Off now: min-p" in caption and "(<unk>: skip)" in caption


def test_the_models_log_prob_is_shown_only_where_the_word_rules_changed_more_than_a_constant():
    shifted = Walkthrough([row(1, -1.0, -1.5), row(2, -2.0, -2.5)], ["<unk>: skip"], 1.0, None, None, None)
    assert "log p (model)" not in walkthrough_frame(shifted).columns  # one constant: a softmax cannot see it
    penalised = Walkthrough([row(1, -1.0, -1.5), row(2, -2.0, -1.8)], ["repetition penalty 2"], 1.0, None, None, None)
    assert walkthrough_frame(penalised)["log p (model)"].tolist() == [-1.5, -1.8]


@pytest.fixture
def layer() -> LayerRead:
    torch.manual_seed(0)
    gates = torch.rand(4, 6)
    before = torch.randn(6)
    after = gates[1] * before + gates[0] * (2 * gates[2] - 1)
    return LayerRead({"i": gates[0], "f": gates[1], "o": gates[3]}, 2 * gates[2] - 1, before, after)


def test_gates_frame_holds_each_units_gates_and_change(layer):
    frame = gates_frame(layer, [4, 1])
    assert frame["quantity"].tolist() == ["i", "i", "f", "f", "g", "g", "o", "o", "Δc", "Δc"]
    assert frame["unit"].tolist() == [4, 1] * 5
    change = frame[frame["quantity"] == "Δc"]
    assert change["value"].tolist() == pytest.approx([float(layer.change[4]), float(layer.change[1])])
    assert change["after"].tolist() == pytest.approx([float(layer.memory[4]), float(layer.memory[1])])
    assert frame[frame["quantity"] == "f"]["value"].tolist() == pytest.approx(layer.gates["f"][[4, 1]].tolist())


def test_a_gru_shows_r_z_n_and_the_change_in_h_and_a_plain_rnn_only_the_change():
    torch.manual_seed(1)
    values = torch.rand(4, 6)
    gru = LayerRead({"r": values[0], "z": values[1]}, 2 * values[2] - 1, values[3], values[3] * 0.5, "gru")
    frame = gates_frame(gru, [2, 5])
    assert frame["quantity"].tolist() == ["r", "r", "z", "z", "n", "n", "Δh", "Δh"]
    assert [strip["encoding"]["y"]["sort"] for strip in gates_chart(gru, [2, 5]).to_dict()["vconcat"]] == [
        ["r", "z"],
        ["n"],
        ["Δh"],
    ]
    rnn = LayerRead({}, None, values[3], -values[3], "rnn")
    assert gates_frame(rnn, [0])["quantity"].tolist() == ["Δh"]
    (strip,) = gates_chart(rnn, [0, 1]).to_dict()["vconcat"]
    assert strip["encoding"]["color"]["scale"]["domain"][-1] == pytest.approx(float(2 * values[3][[0, 1]].max()))


def test_the_gate_strips_use_viridis_and_the_change_the_diverging_scale_to_its_largest_value(layer):
    units = [3, 0, 5]
    spec = gates_chart(layer, units).to_dict()
    strips = spec["vconcat"]
    assert len(strips) == 3 and spec["resolve"]["scale"]["color"] == "independent"
    gates, candidate, change = (strip["encoding"]["color"]["scale"] for strip in strips)
    assert gates["range"] == list(VIRIDIS) and gates["domain"] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert candidate["range"] == list(BLUE_ORANGE) and candidate["domain"][-1] == 1.0
    reach = float(layer.change[units].abs().max())
    assert change["range"] == list(BLUE_ORANGE) and change["domain"][-1] == pytest.approx(reach)
    assert strips[0]["encoding"]["x"]["sort"] == ["3", "0", "5"]  # the order given: largest change first
