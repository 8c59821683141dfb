"""The Streamlit app, page by page, with AppTest (in-process, no browser)."""

from __future__ import annotations

import html
import json
import re
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from app import state
from app.runs import REGISTRY, RunLimits, TrainingRun
from lstm_core.config import Config
from lstm_core.data import prepare
from lstm_core.fields import describe_field, describe_fields
from lstm_core.sampling import SamplingOptions
from lstm_core.trainer import StepEvent, Trainer
from tests.conftest import TINY_TEXT

ENTRY = str(Path(__file__).resolve().parent.parent / "streamlit_app.py")
PAGES = ["app/pages/data.py", "app/pages/train.py", "app/pages/generate.py", "app/pages/about.py"]
TINY_SETTINGS = {
    "rnn_size": 32,
    "embedding_size": 0,
    "num_layers": 1,
    "tie_weights": False,
    "output_layer": "adaptive",
    "epochs": 2,
    "batch_size": 8,
    "training_seq_len": 20,
    "eval_every": 20,
    "precision": "fp32",
}


@pytest.fixture
def app(monkeypatch, tmp_path) -> Iterator[AppTest]:
    monkeypatch.setenv("LSTM_PLAYHOUSE_DATA", str(tmp_path / "cache"))
    st.cache_resource.clear()  # the server limits are read once per server: read them again
    at = AppTest.from_file(ENTRY, default_timeout=60)
    at.run()
    assert not at.exception
    yield at
    run = at.session_state.get(state.RUN)
    if run is not None:  # never leave a training thread behind, even when a test fails
        run.stop()
        run.join(30)


def wait_for_run(at: AppTest, timeout: float = 60.0) -> TrainingRun:
    run = at.session_state[state.RUN]
    run.join(timeout)
    assert not run.running, "the training run did not finish in time"
    at.run()
    return run


def chart_rows(element) -> pd.DataFrame:
    """The data of a rendered Altair chart (Streamlit sends it apart from the spec, as Arrow)."""
    frames = [pa.ipc.open_stream(d.data.data).read_all().to_pandas() for d in element.proto.datasets]
    return pd.concat(frames, ignore_index=True)


def generated_texts(at: AppTest) -> list[str]:
    return [re.sub(r"<[^>]+>", "", m.value).strip() for m in at.markdown if 'class="generated"' in m.value]


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_without_error(app, page):
    app.switch_page(page).run()
    assert not app.exception
    assert app.title[0].value


# ---- Data ------------------------------------------------------------------------------------


def metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def test_data_page_shows_the_pipeline_figures_and_the_min_word_freq_slider_updates_them(app):
    assert metric(app, "Words in the text") == "826,301"
    default_vocabulary = int(metric(app, "Vocabulary size").replace(",", ""))
    app.slider(key="data:min_word_freq").set_value(20).run()
    assert int(metric(app, "Vocabulary size").replace(",", "")) < default_vocabulary
    assert float(metric(app, "Words that become <unk>").rstrip("%")) > 4.5
    assert len(app.get("vega_lite_chart")) == 2  # top words and the Zipf plot
    spec = json.loads(app.get("vega_lite_chart")[1].proto.spec)
    assert "log" in json.dumps(spec)
    cleaned = app.code[1].value
    assert cleaned == cleaned.lower() and "," not in cleaned


def test_choosing_plays_changes_the_text(app):
    app.multiselect(key=state.CORPUS_PLAYS).set_value(["macbeth"]).run()
    assert metric(app, "Words in the text") == "16,434"
    # The choice survives a visit to another page.
    app.switch_page("app/pages/train.py").run()
    assert "Macbeth" in " ".join(c.value for c in app.caption)
    app.switch_page("app/pages/data.py").run()
    assert app.multiselect(key=state.CORPUS_PLAYS).value == ["macbeth"]


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("empty.txt", b"", "empty.txt is empty"),
        ("image.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" * 20, "looks like a binary file"),
        ("marks.txt", b"!!! ... ???", "has no words in it"),
    ],
)
def test_a_bad_upload_shows_a_clear_error_and_keeps_the_app_working(app, name, data, message):
    app.radio(key=state.CORPUS_SOURCE).set_value("upload").run()
    app.file_uploader(key="upload_widget").upload(name, data, "text/plain").run()
    assert not app.exception
    assert any(message in e.value for e in app.error)
    assert any("No text is uploaded yet" in i.value for i in app.info)
    app.file_uploader(key="upload_widget").set_value(("good.txt", TINY_TEXT.encode(), "text/plain")).run()
    assert not app.error
    assert metric(app, "Words in the text") == "1,368"


class _Gutenberg(BaseHTTPRequestHandler):
    body = (
        b"header\n*** START OF THE PROJECT GUTENBERG EBOOK 100 ***\n"
        + TINY_TEXT.encode()
        + b"*** END OF THE PROJECT GUTENBERG EBOOK 100 ***\nlicence\n"
    )

    def do_GET(self):
        if self.path != "/pg100.txt":
            self.send_error(404, "Not Found")
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


@pytest.fixture
def gutenberg_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Gutenberg)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_gutenberg_download_with_progress_then_cached(app, gutenberg_server, monkeypatch):
    monkeypatch.setenv("LSTM_PLAYHOUSE_GUTENBERG_URL", gutenberg_server + "/pg100.txt")
    app.radio(key=state.CORPUS_SOURCE).set_value("gutenberg").run()
    app.button[0].click().run()
    assert not app.exception and not app.error
    assert metric(app, "Words in the text") == "1,368"  # the header and the licence are gone


def test_a_failed_download_shows_the_cause_and_offers_the_plays(app, gutenberg_server, monkeypatch):
    monkeypatch.setenv("LSTM_PLAYHOUSE_GUTENBERG_URL", gutenberg_server + "/missing.txt")
    app.radio(key=state.CORPUS_SOURCE).set_value("gutenberg").run()
    app.button[0].click().run()
    (error,) = app.error
    assert "The download failed" in error.value and "404" in error.value and "/missing.txt" in error.value
    next(b for b in app.button if b.label == "Use the bundled plays instead").click().run()
    assert app.radio(key=state.CORPUS_SOURCE).value == "plays"
    assert metric(app, "Words in the text") == "826,301"


# ---- Train -----------------------------------------------------------------------------------


def train_page(app: AppTest, plays=("macbeth",), **settings) -> AppTest:
    app.session_state[state.CORPUS_PLAYS] = list(plays)
    app.switch_page("app/pages/train.py")
    app.session_state[state.CONFIG] = {**app.session_state[state.CONFIG], **TINY_SETTINGS, **settings}
    return app.run()


def button(at: AppTest, label: str):
    return next(b for b in at.button if b.label == label)


def test_impossible_settings_are_explained_before_training(app):
    at = train_page(app, tie_weights=True, output_layer="full", embedding_size=64)
    assert any("tie_weights needs embedding_size equal to rnn_size" in e.value for e in at.error)
    assert button(at, "Start training").disabled
    at = train_page(app, batch_size=256, training_seq_len=200)
    assert any("needs at least 51,456" in e.value for e in at.error)
    assert button(at, "Start training").disabled


def test_a_training_run_charts_its_progress_and_offers_the_model(app):
    at = train_page(app)
    button(at, "Start training").click().run()
    assert not at.exception
    run = wait_for_run(at)
    assert run.status == "finished" and run.trainer.step == run.trainer.total_steps
    charts = at.get("vega_lite_chart")
    assert len(charts) == 2
    rows = chart_rows(charts[0])
    assert set(rows["series"]) == {"training (raw)", "training (smoothed)", "validation"}
    assert rows[rows["series"] == "training (raw)"]["step"].tolist() == list(range(1, run.trainer.total_steps + 1))
    assert len(rows[rows["series"] == "validation"]) == len(chart_rows(charts[1]))
    assert at.dataframe, "the table of prime-text samples is shown"
    assert "thou art more" in at.dataframe[0].value.columns
    assert any("Finished" in s.value for s in at.success)
    assert at.download_button(key="download_model")
    assert state.MY_MODEL in at.session_state


def test_stop_then_resume_continues_the_same_run(app):
    at = train_page(app, epochs=50)
    button(at, "Start training").click().run()
    run = at.session_state[state.RUN]
    deadline = time.monotonic() + 30
    while run.trainer.step < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    button(at.run(), "Stop").click().run()
    run = wait_for_run(at)
    assert run.status == "stopped"
    stopped_at = run.trainer.step
    assert 0 < stopped_at < run.trainer.total_steps
    assert not button(at, "Resume").disabled
    button(at, "Resume").click().run()
    assert not at.error, at.error[0].value
    resumed = at.session_state[state.RUN]
    assert resumed is not run
    resumed.stop()
    wait_for_run(at)
    steps = [e.step for e in resumed.events() if isinstance(e, StepEvent)]
    assert steps[0] == stopped_at + 1  # it continues the run rather than starting again


def test_the_server_cap_on_concurrent_runs_is_explained(app, monkeypatch):
    monkeypatch.setenv("LSTM_PLAYHOUSE_MAX_RUNS", "1")
    st.cache_resource.clear()
    blocker = TrainingRun(
        Config(rnn_size=8, batch_size=2, training_seq_len=4, epochs=1000, eval_every=0),
        prepare(TINY_TEXT, 0),
        RunLimits(max_runs=1),
    )
    blocker.start()
    try:
        at = train_page(app)
        button(at, "Start training").click().run()
        assert any("already trains 1 model(s) at once" in e.value for e in at.error)
        assert state.RUN not in at.session_state
    finally:
        blocker.stop()
        blocker.join(30)
    assert REGISTRY.active == 0


def test_a_model_too_big_for_the_server_is_refused(app, monkeypatch):
    monkeypatch.setenv("LSTM_PLAYHOUSE_MAX_PARAMETERS", "10000")
    st.cache_resource.clear()
    at = train_page(app)
    assert any("this server allows 10,000" in e.value for e in at.error)
    assert button(at, "Start training").disabled


def test_server_caps_can_come_from_the_secrets_file(monkeypatch, tmp_path):
    monkeypatch.setenv("LSTM_PLAYHOUSE_DATA", str(tmp_path))
    monkeypatch.delenv("LSTM_PLAYHOUSE_MAX_PARAMETERS", raising=False)
    st.cache_resource.clear()
    at = AppTest.from_file(ENTRY, default_timeout=60)
    at.secrets["LSTM_PLAYHOUSE_MAX_PARAMETERS"] = "20000"
    at.run()
    at = train_page(at)
    assert any("this server allows 20,000" in e.value for e in at.error)


def test_uploading_a_bad_model_file_shows_the_problem(app):
    at = train_page(app)
    at.file_uploader(key="model_upload").upload(
        "model.pt", b"not a checkpoint at all", "application/octet-stream"
    ).run()
    assert any("cannot load checkpoint model.pt" in e.value for e in at.error)
    assert not at.exception


# ---- Generate --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_checkpoint():
    config = Config(rnn_size=32, batch_size=4, training_seq_len=8, epochs=3, learning_rate=0.01, eval_every=0)
    return Trainer(config, prepare(TINY_TEXT, 0, (0.8, 0.1, 0.1))).fit().checkpoint.without_training_state()


@pytest.fixture
def generate_page(app, tiny_checkpoint) -> AppTest:
    state_value = {"checkpoint": tiny_checkpoint, "label": "tiny sonnet model", "key": "tiny"}
    app.session_state[state.MY_MODEL] = state_value
    return app.switch_page("app/pages/generate.py").run()


@pytest.mark.parametrize("method", ["greedy", "sample", "beam"])
def test_each_method_writes_a_continuation(generate_page, method):
    at = generate_page
    at.segmented_control(key="method").set_value(method).run()
    assert not at.exception
    text = generated_texts(at)[0]
    assert text.startswith("thou art more")
    assert len(text.split()) == 3 + 30


def test_moving_the_temperature_changes_the_text_at_once(generate_page):
    at = generate_page
    at.segmented_control(key="method").set_value("sample").run()
    at.slider(key="temperature").set_value(0.05).run()
    cold = generated_texts(at)[0]
    at.slider(key="temperature").set_value(0.05).run()
    assert generated_texts(at)[0] == cold  # same seed, same text
    at.slider(key="temperature").set_value(2.0).run()
    assert generated_texts(at)[0] != cold


def test_a_prime_text_choice_and_unknown_words(generate_page):
    at = generate_page
    at.pills(key="prime_pill").set_value("to be or not to").run()
    assert generated_texts(at)[0].startswith("to be or not to")
    at.text_input(key="prime_text").input("Zounds thou art").run()
    assert any(":red-background[zounds]" in m.value for m in at.markdown)
    assert generated_texts(at)[0].startswith("zounds thou art")
    at.text_input(key="prime_text").input("?!").run()
    assert any("no words" in e.value for e in at.error)
    assert not at.exception


def test_step_by_step_pick_undo_and_reset(generate_page):
    at = generate_page
    start = generated_texts(at)[1]
    assert start == "thou art more"
    candidates = at.pills(key="candidate_pick").options
    assert len(candidates) > 3
    choice = candidates[2]
    at.pills(key="candidate_pick").set_value(choice).run()
    assert generated_texts(at)[1] == f"thou art more {choice}"
    button(at, "Take the top word").click().run()
    assert len(generated_texts(at)[1].split()) == 5
    button(at, "Undo").click().run()
    assert generated_texts(at)[1] == f"thou art more {choice}"
    button(at, "Reset").click().run()
    assert generated_texts(at)[1] == "thou art more"
    assert button(at, "Undo").disabled
    rows = chart_rows(at.get("vega_lite_chart")[0])
    assert rows["probability"].sum() == pytest.approx(1.0, abs=1e-6)


def page_widgets(at: AppTest) -> dict[str, object]:
    """Every settings widget on the page, by label."""
    kinds = ("slider", "select_slider", "radio", "number_input", "checkbox", "segmented_control")
    return {widget.label: widget for kind in kinds for widget in at.get(kind)}


def test_every_sampling_option_has_a_widget_built_from_its_metadata(generate_page):
    shown = page_widgets(generate_page)
    for info in describe_fields(SamplingOptions):
        widget = shown[info.label]
        if info.choices:
            assert len(widget.options) == len(info.choices)
        elif info.values:
            assert [int(option) for option in widget.options] == list(info.values)
        else:
            assert (widget.min, widget.max) == (info.low, info.high)


def test_min_p_reaches_the_sampler(generate_page):
    at = generate_page
    at.segmented_control(key="method").set_value("greedy").run()
    greedy = generated_texts(at)[0]
    at.segmented_control(key="method").set_value("sample").run()
    at.slider(key="temperature").set_value(2.0).run()
    assert generated_texts(at)[0] != greedy
    at.slider(key="min_p").set_value(1.0).run()  # only the most likely word is left
    assert generated_texts(at)[0] == greedy


def test_the_candidates_are_what_sample_one_draws_from(generate_page):
    at = generate_page
    at.select_slider(key="top_k").set_value(3).run()
    assert len(at.pills(key="candidate_pick").options) == 3
    rows = chart_rows(at.get("vega_lite_chart")[0])
    assert rows["probability"].sum() == pytest.approx(1.0, abs=1e-6)
    assert any("top-k 3" in caption.value for caption in at.caption)
    for _ in range(5):
        offered = at.pills(key="candidate_pick").options
        button(at, "Sample one").click().run()
        assert html.unescape(generated_texts(at)[1]).split()[-1] in offered


def test_the_train_settings_take_their_ranges_from_the_config(app):
    at = train_page(app)
    shown = page_widgets(at)
    for name in state.UI_FIELDS:
        info = describe_field(Config, name)
        widget = shown[info.label]
        if info.choices:
            assert widget.options == list(info.choices)
        elif info.values or info.log:  # a select_slider, its options shown as text
            assert (float(widget.options[0]), float(widget.options[-1])) == (info.low, info.high)
        elif info.type is not bool:
            assert (widget.min, widget.max) == (info.low, info.high)
    assert at.slider(key="train:epochs").max == 100 and at.slider(key="train:training_seq_len").min == 2


def test_scoring_a_text(generate_page):
    at = generate_page
    at.text_area(key="score_text").input("shall i compare thee to a summer's day").run()
    perplexity = float(next(m.value for m in at.metric if m.label == "Perplexity of this text").replace(",", ""))
    assert 1 < perplexity < 50  # the tiny model learned this very sonnet
    coloured = next(m.value for m in at.markdown if "<span" in m.value)
    assert 'title="not scored: no words before it"' in coloured and ">shall</span>" in coloured
    assert coloured.count("<span") == 8  # every word shown, the first one unscored


def test_without_any_model_the_page_says_what_to_do(app, monkeypatch):
    monkeypatch.setattr("app.services.DEMO_MODEL_PATH", Path("/nonexistent/demo.pt"))
    st.cache_resource.clear()
    app.switch_page("app/pages/generate.py").run()
    assert any("There is no model yet" in i.value for i in app.info)


def test_a_damaged_demo_model_is_reported_not_hidden(app, monkeypatch, tmp_path):
    damaged = tmp_path / "demo.pt"
    damaged.write_bytes(b"not a checkpoint at all")
    monkeypatch.setattr("app.services.DEMO_MODEL_PATH", damaged)
    st.cache_resource.clear()
    app.switch_page("app/pages/generate.py").run()
    assert not app.exception
    assert any("The shipped demo model cannot be used" in w.value and "demo.pt" in w.value for w in app.warning)
    assert any("There is no model yet" in i.value for i in app.info)
