"""The Inside the LSTM page with AppTest (in-process, no browser): every model choice, the limits, the finders."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from app import state
from lstm_core.config import Config
from lstm_core.data.dataset import prepare
from lstm_core.explain import inspection as inspection
from lstm_core.training.trainer import Trainer
from tests.conftest import TINY_TEXT
from tests.workspaces import put_run

ENTRY = str(Path(__file__).resolve().parent.parent / "streamlit_app.py")
PAGE = "app/pages/inside.py"
SONNET_LINE = "Shall I compare thee to a summer's day?"  # 8 words


@pytest.fixture(scope="module")
def tiny_checkpoint():
    """Two layers of 24 units: fewer units than the heatmap's limit, and a layer choice to make."""
    config = Config(
        rnn_size=24, num_layers=2, batch_size=4, training_seq_len=8, epochs=1, learning_rate=0.01, eval_every=0
    )
    return Trainer(config, prepare(TINY_TEXT, 0, (0.8, 0.1, 0.1))).fit().checkpoint.without_training_state()


@pytest.fixture
def app(monkeypatch, tmp_path) -> Iterator[AppTest]:
    monkeypatch.setenv("LSTM_PLAYHOUSE_DATA", str(tmp_path / "cache"))
    st.cache_resource.clear()
    at = AppTest.from_file(ENTRY, default_timeout=60)
    at.run()
    assert not at.exception
    yield at


CHOICES = {"mine": "run:20260101-000000-00000001", "training": "run:20260101-000000-00000002", "demo": "demo"}


def with_models(at: AppTest, checkpoint, *choices: str) -> AppTest:
    """The visitor's finished run and/or a run still training, as the Train page leaves them."""
    workspace = at.session_state[state.WORKSPACE]
    if "mine" in choices:
        put_run(workspace, checkpoint, CHOICES["mine"].removeprefix("run:"))
    if "training" in choices:
        put_run(workspace, checkpoint, CHOICES["training"].removeprefix("run:"), training=True)
    return at


def open_page(at: AppTest, model: str = "demo", text: str | None = None) -> AppTest:
    at.switch_page(PAGE).run()
    at.radio(key=state.INSIDE_MODEL).set_value(CHOICES.get(model, model)).run()
    if text is not None:
        at.segmented_control(key=state.INSIDE_SOURCE).set_value("typed").run()
        at.text_area(key=state.INSIDE_TEXT).input(text).run()
    assert not at.exception
    return at


def charts_by_mark(at: AppTest) -> dict[str, object]:
    """The page's Altair charts by their first mark: the heatmap is the chart of rectangles."""
    found = {}
    for element in at.get("vega_lite_chart"):
        spec = json.loads(element.proto.spec)
        mark = spec.get("mark") or spec["layer"][0]["mark"]
        found.setdefault(mark["type"] if isinstance(mark, dict) else mark, element)
    return found


def heatmap_rows(at: AppTest) -> pd.DataFrame:
    element = charts_by_mark(at)["rect"]
    frames = [pa.ipc.open_stream(d.data.data).read_all().to_pandas() for d in element.proto.datasets]
    return pd.concat(frames, ignore_index=True)


def heatmap_spec(at: AppTest) -> dict:
    return json.loads(charts_by_mark(at)["rect"].proto.spec)


@pytest.mark.slow
@pytest.mark.parametrize("choice", ["mine", "training", "demo"])
def test_the_page_draws_every_section_for_each_model_choice(app, tiny_checkpoint, choice):
    at = open_page(with_models(app, tiny_checkpoint, "mine", "training"), choice, SONNET_LINE)
    assert at.title[0].value == "🔬 Inside the LSTM"
    assert r"\sigma" in at.latex[0].value and r"\odot" in at.latex[0].value
    rows = heatmap_rows(at)
    units = 256 if choice == "demo" else 24
    drawn = min(units, inspection.MAX_HEATMAP_UNITS)
    assert rows["position"].nunique() == 8 and rows["unit"].nunique() == drawn
    assert len(rows) == 8 * drawn
    assert rows.drop_duplicates("position")["word"].tolist() == [
        "shall",
        "i",
        "compare",
        "thee",
        "to",
        "a",
        "summer's",
        "day",
    ]
    notes = " ".join(i.value for i in at.info)
    assert (f"{drawn} of {units} units" in notes) == (units > drawn)
    assert len(at.get("vega_lite_chart")) == 3  # heatmap, the unit's line, the word map
    assert any('class="unit-words"' in m.value for m in at.markdown)


@pytest.mark.slow
def test_with_no_model_the_page_says_where_to_get_one(app, monkeypatch):
    monkeypatch.setattr("app.services.DEMO_MODEL_PATH", Path("/nonexistent/demo.pt"))
    st.cache_resource.clear()
    app.switch_page(PAGE).run()
    assert not app.exception
    assert any("There is no model yet" in i.value for i in app.info)


@pytest.mark.slow
def test_a_generated_continuation_is_traced_after_its_prime(app):
    at = open_page(app)
    at.slider(key=state.INSIDE_LENGTH).set_value(10).run()
    rows = heatmap_rows(at).drop_duplicates("position")
    assert len(rows) == 3 + 10
    assert rows["word"].tolist()[:3] == ["thou", "art", "more"]
    at.pills(key=state.INSIDE_PRIME_PILL).set_value("to be or not to").run()
    assert heatmap_rows(at).drop_duplicates("position")["word"].tolist()[:5] == ["to", "be", "or", "not", "to"]


@pytest.mark.slow
def test_changing_the_quantity_changes_the_heatmap_and_its_scale(app):
    at = open_page(app, text=SONNET_LINE)
    output = heatmap_rows(at)
    assert heatmap_spec(at)["encoding"]["color"]["scale"]["domain"] == [-1.0, -0.5, 0.0, 0.5, 1.0]
    at.segmented_control(key=state.INSIDE_QUANTITY).set_value("forget_gate").run()
    forget = heatmap_rows(at)
    assert len(forget) == len(output)
    assert not forget["value"].equals(output["value"])
    assert forget["value"].between(0, 1).all()
    assert heatmap_spec(at)["encoding"]["color"]["scale"]["domain"] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert r"\textcolor" in at.latex[0].value.split(r"\\")[1]  # the forget gate's row is highlighted


@pytest.mark.slow
def test_each_layer_of_a_deeper_model_can_be_shown(app, tiny_checkpoint):
    at = open_page(with_models(app, tiny_checkpoint, "mine"), "mine", SONNET_LINE)
    first = heatmap_rows(at)
    at.segmented_control(key=state.INSIDE_LAYER).set_value(1).run()
    assert not at.exception
    second = heatmap_rows(at)
    assert len(second) == len(first) and not second["value"].equals(first["value"])


@pytest.mark.slow
def test_a_slider_or_a_unit_choice_redraws_without_tracing_again(app, monkeypatch):
    calls = []
    real_trace = inspection.trace

    def counting_trace(*args, **kwargs):
        calls.append(1)
        return real_trace(*args, **kwargs)

    monkeypatch.setattr("lstm_core.explain.inspection.trace", counting_trace)
    at = open_page(app, text=SONNET_LINE)
    traced = len(calls)
    assert traced >= 1
    at.slider(key=state.INSIDE_THRESHOLD).set_value(0.5).run()
    at.segmented_control(key=state.INSIDE_QUANTITY).set_value("cell").run()
    at.number_input(key=state.INSIDE_UNIT).set_value(5).run()
    assert len(calls) == traced
    at.text_area(key=state.INSIDE_TEXT).input("Thou art more lovely and more temperate").run()
    assert len(calls) == traced + 1


@pytest.mark.slow
def test_a_unit_found_for_a_feature_becomes_the_chosen_unit(app):
    at = open_page(app, text=f"{SONNET_LINE}\nThou art more lovely and more temperate.")
    at.segmented_control(key=state.INSIDE_FEATURE).set_value("in_question").run()
    found = at.pills(key=state.INSIDE_FEATURE_PICK).options
    assert len(found) == 10 and all(option.startswith("unit ") for option in found)
    unit = int(found[1].split(":")[0].removeprefix("unit "))
    at.pills(key=state.INSIDE_FEATURE_PICK).set_value(unit).run()
    assert not at.exception
    assert at.number_input(key=state.INSIDE_UNIT).value == unit
    assert heatmap_rows(at)["unit"].iloc[0] == unit
    assert heatmap_spec(at)["encoding"]["y"]["sort"][0] == unit  # the chosen unit is the heatmap's first row


@pytest.mark.slow
def test_a_feature_that_never_changes_is_explained(app):
    at = open_page(app, text="thou art more lovely")  # no question mark anywhere
    at.segmented_control(key=state.INSIDE_FEATURE).set_value("in_question").run()
    assert any("the same for every word of this text" in i.value for i in at.info)


@pytest.mark.slow
def test_units_on_across_a_selected_span(app):
    at = open_page(app, text=SONNET_LINE)
    at.select_slider(key=state.INSIDE_SPAN).set_range(2, 4).run()
    at.slider(key=state.INSIDE_THRESHOLD).set_value(-1.0).run()  # every unit is "on": the ranking decides
    found = at.pills(key=state.INSIDE_SPAN_PICK).options
    assert len(found) == 10
    unit = int(found[0].split(":")[0].removeprefix("unit "))
    at.pills(key=state.INSIDE_SPAN_PICK).set_value(unit).run()
    assert at.number_input(key=state.INSIDE_UNIT).value == unit
    coloured = next(m.value for m in at.markdown if 'class="unit-words"' in m.value)
    assert coloured.count("underline") == 3  # words 2, 3 and 4


@pytest.mark.slow
def test_the_neighbours_of_a_word_appear_and_are_marked_on_the_map(app):
    at = open_page(app)
    at.text_input(key=state.INSIDE_WORD).input("King").run()
    neighbours = at.dataframe[0].value
    assert len(neighbours) == 10 and "king" not in set(neighbours["neighbour"])
    similarity = neighbours["cosine similarity"].tolist()
    assert similarity == sorted(similarity, reverse=True) and all(-1 <= s <= 1 for s in similarity)
    word_map = next(e for e in at.get("vega_lite_chart") if "principal axis" in json.dumps(json.loads(e.proto.spec)))
    frames = [pa.ipc.open_stream(d.data.data).read_all().to_pandas() for d in word_map.proto.datasets]
    groups = pd.concat(frames).drop_duplicates("word").set_index("word")["group"]
    assert groups["king"] == "the word"
    assert len(groups) == 300


@pytest.mark.slow
def test_an_unknown_word_gives_a_clear_message(app):
    at = open_page(app)
    at.text_input(key=state.INSIDE_WORD).input("xylophone").run()
    assert not at.exception
    assert any("'xylophone' is not in the vocabulary" in w.value for w in at.warning)
    assert not at.dataframe


@pytest.mark.parametrize(
    ("text", "said"),
    [("thou " * 601, "3,005 characters"), ("a " * 600, "600 words")],
    ids=["characters", "words"],
)
@pytest.mark.slow
def test_a_too_long_text_is_refused_with_the_limit_stated(app, text, said):
    at = open_page(app, text=text)
    (error,) = at.error
    assert "too long" in error.value and said in error.value
    assert "at most 3,000 characters and 500 words" in error.value
    assert not at.get("vega_lite_chart")


# ---- a GRU or a plain RNN, and "Why gates" ---------------------------------------------------------


@pytest.fixture(scope="module")
def cell_checkpoints():
    """A one-layer GRU and a plain RNN of 24 units, one epoch on the sonnet."""
    config = Config(rnn_size=24, batch_size=4, training_seq_len=8, epochs=1, learning_rate=0.01, eval_every=0)
    dataset = prepare(TINY_TEXT, 0, (0.8, 0.1, 0.1))
    return {
        cell: Trainer(config.replace(cell=cell), dataset).fit().checkpoint.without_training_state()
        for cell in ("gru", "rnn")
    }


@pytest.mark.slow
def test_a_gru_shows_its_own_equations_and_quantities_and_a_plain_rnn_only_h(app, cell_checkpoints):
    workspace = app.session_state[state.WORKSPACE]
    put_run(workspace, cell_checkpoints["gru"], "20260101-000000-00000003")
    put_run(workspace, cell_checkpoints["rnn"], "20260101-000000-00000004")
    at = open_page(app, "demo", SONNET_LINE)
    at.segmented_control(key=state.INSIDE_QUANTITY).set_value("forget_gate").run()
    at.radio(key=state.INSIDE_MODEL).set_value("run:20260101-000000-00000003").run()
    assert not at.exception
    assert r"r_t" in at.latex[0].value and r"z_t" in at.latex[0].value and "c_t" not in at.latex[0].value
    quantity = at.segmented_control(key=state.INSIDE_QUANTITY)
    assert quantity.value == "hidden"  # the GRU has no forget gate: back to its output
    assert quantity.options == ["reset gate r", "update gate z", "candidate n", "output h"]
    quantity.set_value("update_gate").run()
    assert heatmap_rows(at)["value"].between(0, 1).all() and len(heatmap_rows(at)) == 8 * 24
    assert r"\textcolor" in at.latex[0].value.split(r"\\")[1]  # z's row is highlighted
    at.radio(key=state.INSIDE_MODEL).set_value("run:20260101-000000-00000004").run()
    assert not at.exception
    assert at.latex[0].value.count("=") == 1 and r"\tanh" in at.latex[0].value
    assert at.segmented_control(key=state.INSIDE_QUANTITY).options == ["output h"]


def why_gates_sentence(at: AppTest) -> str:
    return next(m.value for m in at.markdown if "words back, the gradient of the last word's loss" in m.value)


@pytest.mark.slow
def test_why_gates_compares_the_demo_with_a_run_of_another_cell_when_asked(app, cell_checkpoints):
    put_run(app.session_state[state.WORKSPACE], cell_checkpoints["rnn"], "20260101-000000-00000004")
    at = open_page(app, "demo", SONNET_LINE)
    assert at.multiselect(key=state.GATES_MODELS).value == ["demo", "run:20260101-000000-00000004"]
    assert len(at.get("vega_lite_chart")) == 3  # nothing computed before the visitor asks
    at.button(key="gates_compare").click().run()
    assert not at.exception
    sentence = why_gates_sentence(at)
    assert sentence.startswith("**About 6 words back") and "for the LSTM (demo)" in sentence
    assert "for the plain RNN (your run" in sentence
    gradient = next(e for e in at.get("vega_lite_chart") if "words back from the last word" in e.proto.spec)
    frames = [pa.ipc.open_stream(d.data.data).read_all().to_pandas() for d in gradient.proto.datasets]
    drawn = pd.concat(frames)
    assert set(drawn["model"]) == {"LSTM (demo)", next(m for m in drawn["model"] if m.startswith("plain RNN"))}
    assert set(drawn["path"]) == {"h (output)", "c (memory cell)"}  # the LSTM's cell path too
    # The sonnet's vocabulary has no character's name: the memory test says so instead of guessing.
    assert any("The memory test cannot run" in i.value for i in at.info)
    at.multiselect(key=state.GATES_MODELS).set_value(["demo"]).run()
    assert not any("words back, the gradient" in m.value for m in at.markdown)  # another choice: ask again
    at.button(key="gates_compare").click().run()
    assert "along its memory cell" in why_gates_sentence(at)
    recall = next(e for e in at.get("vega_lite_chart") if "words between the name and the question" in e.proto.spec)
    assert recall is not None and not at.exception
