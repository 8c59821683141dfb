"""The Inside page's drawing (app/inside_charts.py): limits, chart data and encodings, colour scales."""

from __future__ import annotations

import json
import re

import pytest
import torch

from app import inside_charts as charts
from lstm_core.explain.inspection import CELL_QUANTITIES, MAX_HEATMAP_UNITS, MAX_HEATMAP_WORDS, QUANTITY_NAMES
from lstm_core.text.vocab import UNK_TOKEN, Vocab


def activations(words: int, units: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(words, units, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def spec_without_data(chart) -> dict:
    spec = chart.to_dict()
    spec.pop("datasets", None)
    return spec


def rows(chart) -> list[dict]:
    """The rows of a single-dataset chart (Altair puts the data frame in ``datasets``)."""
    (data,) = chart.to_dict()["datasets"].values()
    return data


# ---- the heatmap -----------------------------------------------------------------------------------


def test_a_long_text_and_a_wide_layer_are_cut_to_the_drawing_limits():
    values = activations(1000, 512)
    view = charts.heatmap_view(values, first_word=300, keep=[7])
    assert view.window == range(300, 300 + MAX_HEATMAP_WORDS)
    assert len(view.units) == MAX_HEATMAP_UNITS and view.units[0] == 7
    assert len(set(view.units)) == MAX_HEATMAP_UNITS
    note = view.note()
    assert "words 301 to 700 of 1,000" in note and "128 of 512 units" in note
    frame = charts.heatmap_frame(values, [f"w{i}" for i in range(1000)], view)
    assert len(frame) == MAX_HEATMAP_WORDS * MAX_HEATMAP_UNITS


def test_the_window_stops_at_the_end_of_the_text():
    view = charts.heatmap_view(activations(450, 8), first_word=10_000)
    assert view.window == range(50, 450)


def test_a_short_text_and_a_small_layer_are_drawn_whole_without_a_note():
    view = charts.heatmap_view(activations(30, 16))
    assert view.window == range(30) and sorted(view.units) == list(range(16))
    assert not view.fewer_words and not view.fewer_units and view.note() == ""


def test_the_units_drawn_are_the_chosen_then_the_most_variable():
    values = torch.zeros(20, 6)
    values[:, 4] = torch.linspace(-1, 1, 20)  # varies most
    values[:, 2] = torch.linspace(0, 0.5, 20)  # second
    view = charts.heatmap_view(values, keep=[5], max_units=3)
    assert view.units == (5, 4, 2)


def test_heatmap_cells_hold_each_words_value_for_each_unit():
    values = activations(5, 4)
    words = ["thou", "art", "thou", "more", "thou"]
    view = charts.heatmap_view(values, keep=[3], max_units=2)
    frame = charts.heatmap_frame(values, words, view)
    assert len(frame) == 5 * 2
    for row in frame.itertuples():
        assert row.value == pytest.approx(float(values[row.position, row.unit]))
        assert row.word == words[row.position]
    # One column per position, each labelled with its word (repeats told apart invisibly).
    columns = frame.drop_duplicates("position")["column"].tolist()
    assert len(set(columns)) == 5
    assert [c.replace(charts.ZERO_WIDTH_SPACE, "") for c in columns] == words


def test_heatmap_encodes_words_across_units_down_and_the_quantity_as_colour():
    values = activations(12, 6)
    words = [f"w{i}" for i in range(12)]
    view = charts.heatmap_view(values, keep=[4])
    spec = spec_without_data(charts.heatmap_chart(values, words, "hidden", view))
    assert spec["mark"]["type"] == "rect"
    encoding = spec["encoding"]
    assert encoding["x"]["field"] == "column"
    assert encoding["x"]["sort"] == {"field": "position", "op": "min", "order": "ascending"}
    assert encoding["y"]["field"] == "unit" and encoding["y"]["sort"] == list(view.units)
    assert encoding["color"]["field"] == "value"
    assert encoding["color"]["scale"]["domain"] == [-1.0, -0.5, 0.0, 0.5, 1.0]
    assert encoding["color"]["scale"]["range"] == list(charts.BLUE_ORANGE)
    assert spec["height"] == len(view.units) * 16


def test_no_word_of_the_text_reaches_a_vega_expression():
    # A Vega expression holding the string "if" stops the chart rendering in the browser, so
    # the words must only ever be data: not labels in an expression, not a sort list.
    words = ["if", "thou", "art", "if"]
    values = activations(4, 3)
    chart = charts.heatmap_chart(values, words, "cell", charts.heatmap_view(values))
    assert '"if' not in json.dumps(spec_without_data(chart))
    line = charts.unit_line_chart(values, words, "cell", 0, span=(1, 3))
    assert '"if' not in json.dumps(spec_without_data(line))


@pytest.mark.parametrize("quantity", ["input_gate", "forget_gate", "output_gate"])
def test_gates_are_drawn_on_viridis_from_zero_to_one(quantity):
    values = torch.rand(6, 3)
    spec = spec_without_data(charts.heatmap_chart(values, list("abcdef"), quantity, charts.heatmap_view(values)))
    scale = spec["encoding"]["color"]["scale"]
    assert scale["domain"] == [0.0, 0.25, 0.5, 0.75, 1.0] and scale["range"] == list(charts.VIRIDIS)


def test_the_memory_scale_reaches_the_largest_magnitude_drawn():
    values = torch.tensor([[0.5, -3.0], [2.0, 1.0]])
    spec = spec_without_data(charts.heatmap_chart(values, ["a", "b"], "cell", charts.heatmap_view(values)))
    assert spec["encoding"]["color"]["scale"]["domain"] == [-3.0, -1.5, 0.0, 1.5, 3.0]


# ---- colours ---------------------------------------------------------------------------------------


def test_colours_of_the_words_match_the_chart_scales():
    assert charts.colour_of(0.0, "input_gate") == charts.VIRIDIS[0]
    assert charts.colour_of(1.0, "input_gate") == charts.VIRIDIS[-1]
    assert charts.colour_of(0.5, "forget_gate") == charts.VIRIDIS[2]
    assert charts.colour_of(-1.0, "hidden") == charts.BLUE_ORANGE[0]
    assert charts.colour_of(0.0, "candidate") == charts.BLUE_ORANGE[2]
    assert charts.colour_of(4.0, "cell", limit=4.0) == charts.BLUE_ORANGE[-1]
    assert charts.colour_of(9.0, "hidden") == charts.BLUE_ORANGE[-1]  # clamped
    between = charts.colour_of(0.25, "hidden")  # halfway between the middle and the light orange
    assert between not in charts.BLUE_ORANGE and re.fullmatch(r"#[0-9a-f]{6}", between)


def test_every_quantity_of_every_cell_has_a_scale_and_a_symbol():
    kinds = {quantity: charts.scale_kind(quantity) for quantity in QUANTITY_NAMES}
    assert kinds == {
        "input_gate": "sequential",
        "forget_gate": "sequential",
        "candidate": "diverging",
        "output_gate": "sequential",
        "cell": "diverging",
        "hidden": "diverging",
        "reset_gate": "sequential",
        "update_gate": "sequential",
        "new_gate": "diverging",
    }
    assert set(charts.SYMBOLS) == set(QUANTITY_NAMES)
    assert [charts.SYMBOLS[q] for q in CELL_QUANTITIES["gru"]] == ["r", "z", "n", "h"]
    with pytest.raises(ValueError, match="unknown quantity"):
        charts.scale_kind("gates")


def test_text_on_a_coloured_word_stays_readable():
    assert charts.text_colour_on(charts.BLUE_ORANGE[0]) == "#ffffff"
    assert charts.text_colour_on(charts.VIRIDIS[0]) == "#ffffff"
    assert charts.text_colour_on(charts.BLUE_ORANGE[2]) != "#ffffff"
    assert charts.text_colour_on(charts.VIRIDIS[-1]) != "#ffffff"


# ---- one unit --------------------------------------------------------------------------------------


def test_the_unit_line_follows_one_unit_over_every_word_and_shades_the_span():
    values = activations(7, 4)
    words = ["shall", "i", "compare", "thee", "to", "a", "summer's"]
    chart = charts.unit_line_chart(values, words, "output_gate", unit=2, span=(2, 5))
    spec = chart.to_dict()
    datasets = list(spec["datasets"].values())
    line = next(d for d in datasets if len(d) == 7)
    assert [r["word"] for r in line] == words
    assert [r["value"] for r in line] == pytest.approx(values[:, 2].tolist())
    shade = next(d for d in datasets if "start" in d[0])
    assert shade == [{"start": 1.5, "end": 4.5}]  # words 2, 3 and 4, edge to edge
    marks = [layer["mark"]["type"] for layer in spec["layer"]]
    assert marks == ["rect", "line", "circle"]  # a gate has no zero line
    y = next(layer for layer in spec["layer"] if layer["mark"]["type"] == "line")["encoding"]["y"]
    assert y["scale"]["domain"] == [0.0, 1.0]


def test_the_unit_line_refuses_a_unit_the_layer_lacks():
    with pytest.raises(ValueError, match="units are numbered 0 to 3"):
        charts.unit_frame(activations(3, 4), ["a", "b", "c"], 4)


def test_coloured_words_are_one_escaped_span_per_word_with_the_span_underlined():
    words = ["<b>", "thou", "art", "more"]
    html = charts.coloured_words_html(words, [-1.0, 0.0, 0.5, 1.0], "hidden", span=(1, 3))
    assert html.count("<span") == 4
    assert "&lt;b&gt;" in html and "<b>" not in html
    assert html.count("underline") == 2
    assert f"background:{charts.BLUE_ORANGE[0]}" in html and f"background:{charts.BLUE_ORANGE[-1]}" in html
    assert 'title="word 2: h = +0.500"' in html


# ---- word vectors ----------------------------------------------------------------------------------


def test_the_word_map_places_the_most_frequent_words_without_unk():
    words = [UNK_TOKEN] + [f"w{i}" for i in range(400)]
    vocab = Vocab(words)
    embedding = torch.randn(len(words), 8, generator=torch.Generator().manual_seed(0))
    frame = charts.pca_frame(embedding, vocab)
    assert len(frame) == charts.MAX_MAP_WORDS
    assert UNK_TOKEN not in set(frame["word"])
    assert frame["word"].tolist()[:3] == ["w0", "w1", "w2"] and frame["rank"].tolist()[:3] == [1, 2, 3]
    small = charts.pca_frame(embedding[:11], Vocab(words[:11]))
    assert len(small) == 10


def test_the_word_map_highlights_the_word_and_its_neighbours_and_names_only_them():
    vocab = Vocab([UNK_TOKEN, "king", "queen", "duke", "the", "and"])
    frame = charts.pca_frame(torch.randn(6, 4, generator=torch.Generator().manual_seed(1)), vocab)
    chart = charts.pca_chart(frame, "king", ["queen", "duke"])
    spec = chart.to_dict()
    (data,) = spec["datasets"].values()
    groups = {row["word"]: row["group"] for row in data}
    assert groups == {"king": "the word", "queen": "neighbour", "duke": "neighbour", "the": "other", "and": "other"}
    points, labels = spec["layer"]
    assert {t["field"] for t in points["encoding"]["tooltip"]} == {"word", "rank"}
    assert labels["mark"]["type"] == "text"
    assert labels["transform"] == [{"filter": "(datum.group !== 'other')"}]
