"""The Streamlit app, page by page, with AppTest (in-process, no browser).

Training runs are real: the Train page starts ``python -m lstm_core train`` processes on run
folders in a temporary data folder, and the tests read those folders.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
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
from app.visitor import KEY_PARAM, Workspace
from lstm_core.config import PRESETS, Config
from lstm_core.data.dataset import prepare
from lstm_core.evaluation.baselines import Baseline
from lstm_core.fields import describe_field, describe_fields
from lstm_core.model.checkpoint import load_checkpoint, save_checkpoint
from lstm_core.runs import control as runs
from lstm_core.runs import folder as run_files
from lstm_core.runs.limits import RunLimits
from lstm_core.sampling.options import SamplingOptions
from lstm_core.system.processes import process_start_time
from lstm_core.training.trainer import Trainer
from tests.conftest import TINY_TEXT
from tests.workspaces import put_history, put_run

ENTRY = str(Path(__file__).resolve().parent.parent / "streamlit_app.py")
PAGES = [
    "app/pages/data.py",
    "app/pages/train.py",
    "app/pages/generate.py",
    "app/pages/inside.py",
    "app/pages/about.py",
]
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


def stop_all_runs(data: Path, timeout: float = 60.0) -> None:
    """Never leave a training process behind, even when a test fails."""
    for run in runs.active_runs(data):
        run_files.request_stop(run.path)
    deadline = time.monotonic() + timeout
    while runs.active_runs(data) and time.monotonic() < deadline:
        time.sleep(0.1)


@pytest.fixture
def data(monkeypatch, tmp_path) -> Iterator[Path]:
    folder = tmp_path / "data"
    monkeypatch.setenv("LSTM_PLAYHOUSE_DATA", str(folder))
    monkeypatch.setenv("LSTM_PLAYHOUSE_THREADS", "1")
    st.cache_resource.clear()  # the server's caps and caches are read once per server: read them again
    st.cache_data.clear()
    yield folder
    stop_all_runs(folder)


def open_app(key: str | None = None, secrets: dict | None = None) -> AppTest:
    at = AppTest.from_file(ENTRY, default_timeout=60)
    if key is not None:
        at.query_params[KEY_PARAM] = key
    for name, value in (secrets or {}).items():
        at.secrets[name] = value
    return at.run()


@pytest.fixture
def app(data) -> AppTest:
    at = open_app()
    assert not at.exception
    return at


def workspace_of(at: AppTest) -> Workspace:
    return at.session_state[state.WORKSPACE]


def the_run(at: AppTest) -> run_files.RunSummary:
    (run,) = run_files.list_runs(workspace_of(at).runs)
    return run


def wait_for_run(at: AppTest, timeout: float = 120.0, until=lambda run: not run.active) -> run_files.RunSummary:
    deadline = time.monotonic() + timeout
    run = the_run(at)
    while not until(run) and time.monotonic() < deadline:
        time.sleep(0.1)
        run = the_run(at)
    assert until(run), f"the run did not get there in time: {run.state} at step {run.step}"
    at.run()
    return run


def chart_rows(element) -> pd.DataFrame:
    """The data of a rendered Altair chart (Streamlit sends it apart from the spec, as Arrow)."""
    frames = [pa.ipc.open_stream(d.data.data).read_all().to_pandas() for d in element.proto.datasets]
    return pd.concat(frames, ignore_index=True)


def generated_texts(at: AppTest) -> list[str]:
    return [
        html.unescape(re.sub(r"<[^>]+>", "", m.value)).strip() for m in at.markdown if 'class="generated"' in m.value
    ]


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_without_error(app, page):
    app.switch_page(page).run()
    assert not app.exception
    assert app.title[0].value


def test_a_new_visitor_gets_an_unguessable_key_in_the_address(app):
    key = app.query_params[KEY_PARAM]
    key = key[0] if isinstance(key, list) else key
    assert len(key) >= 22 and workspace_of(app).key == key  # 22 url-safe characters are 132 bits
    assert open_app().session_state[state.WORKSPACE].key != key


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
    app.file_uploader(key=state.UPLOAD_WIDGET).upload(name, data, "text/plain").run()
    assert not app.exception
    assert any(message in e.value for e in app.error)
    assert any("No text is uploaded yet" in i.value for i in app.info)
    app.file_uploader(key=state.UPLOAD_WIDGET).set_value(("good.txt", TINY_TEXT.encode(), "text/plain")).run()
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


@pytest.mark.slow
def test_gutenberg_download_with_progress_then_cached(app, gutenberg_server, monkeypatch):
    monkeypatch.setenv("LSTM_PLAYHOUSE_GUTENBERG_URL", gutenberg_server + "/pg100.txt")
    app.radio(key=state.CORPUS_SOURCE).set_value("gutenberg").run()
    app.button[0].click().run()
    assert not app.exception and not app.error
    assert metric(app, "Words in the text") == "1,368"  # the header and the licence are gone


@pytest.mark.slow
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


@pytest.mark.slow
def test_a_run_over_the_memory_cap_is_refused_with_the_estimate(app):
    at = train_page(app, plays=(), batch_size=256, training_seq_len=200, output_layer="full")
    (error,) = [e.value for e in at.error if "would need about" in e.value]
    assert "GB" in error and "this server's limit per run is 1.0 GB" in error
    assert "the adaptive output layer" in error and "a smaller batch_size or training_seq_len" in error
    assert button(at, "Start training").disabled
    assert not workspace_of(at).runs.exists()  # nothing was written


@pytest.mark.slow
def test_a_training_run_charts_its_progress_and_offers_the_model(app):
    at = train_page(app)
    (said,) = [c.value for c in at.caption if c.value.startswith("Text: ")]
    button(at, "Start training").click().run()
    assert not at.exception and not at.error
    run = wait_for_run(at)
    assert run.state == "finished" and run.step == run.total_steps > 0
    assert f"; 2 epochs of {run.total_steps // 2:,} steps; " in said  # the page counted the steps the run took
    charts = at.get("vega_lite_chart")
    assert len(charts) == 2
    rows = chart_rows(charts[0])
    assert set(rows["series"]) == {"training (raw)", "training (smoothed)", "validation"}
    raw_steps = rows[rows["series"] == "training (raw)"]["step"].tolist()
    assert raw_steps == sorted(raw_steps) and raw_steps[-1] == run.total_steps
    perplexity = chart_rows(charts[1])
    assert len(rows[rows["series"] == "validation"]) == perplexity["step"].notna().sum()
    baselines = set(perplexity["baseline"].dropna())  # written by the training process as the run began
    assert baselines == {"uniform", "unigram", "bigram (Kneser-Ney)", "5-gram (Kneser-Ney)"}
    assert any("than uniform guessing" in m.value for m in at.markdown), "where the run stands, in a sentence"
    assert at.dataframe, "the table of prime-text samples is shown"
    assert "thou art more" in at.dataframe[0].value.columns
    assert any("Finished" in s.value for s in at.success)
    assert at.download_button(key=state.DOWNLOAD_MODEL)
    assert (run.path / run_files.BEST_CHECKPOINT).is_file() and (run.path / run_files.LAST_CHECKPOINT).is_file()


@pytest.mark.slow
def test_stop_then_resume_continues_the_same_run_with_its_own_settings(app):
    at = train_page(app, epochs=50)
    button(at, "Start training").click().run()
    wait_for_run(at, until=lambda run: run.state == "running" and run.step >= 3)
    button(at.run(), "Stop").click().run()
    run = wait_for_run(at)
    assert run.state == "stopped"
    stopped_at = run.step
    assert 0 < stopped_at < run.total_steps
    # The page's settings now describe another model, and even an impossible one: Resume
    # continues the run with its own config and data all the same.
    impossible = {"min_word_freq": 3, "tie_weights": True, "embedding_size": 64}
    at.session_state[state.CONFIG] = {**at.session_state[state.CONFIG], **impossible}
    at.run()
    assert button(at, "Start training").disabled
    assert not button(at, "Resume").disabled
    button(at, "Resume").click().run()
    assert not at.session_state[state.TRAIN_ERROR]
    wait_for_run(at, until=lambda run: run.active and run.step > stopped_at)
    button(at.run(), "Stop").click().run()
    resumed = wait_for_run(at)
    assert resumed.id == run.id and resumed.step > stopped_at
    events = [json.loads(line) for line in (run.path / run_files.EVENTS_FILE).read_text().splitlines()]
    ends = [e for e in events if e["kind"] == "end"]
    assert [e["reason"] for e in ends] == ["stopped", "stopped"]
    steps = [e["step"] for e in events if e["kind"] == "step"]
    assert steps == sorted(steps)  # it continued the run rather than starting again
    assert resumed.config == run.config and resumed.config["tie_weights"] is False


@pytest.mark.slow
def test_a_reload_shows_the_same_run_and_settings(app):
    at = train_page(app, epochs=50, rnn_size=48)
    button(at, "Start training").click().run()
    run = wait_for_run(at, until=lambda run: run.state == "running")
    # The same address in a new session (a reload, or a second tab).
    again = open_app(workspace_of(at).key).switch_page("app/pages/train.py").run()
    assert not again.exception
    assert again.session_state[state.CONFIG]["rnn_size"] == 48
    assert again.session_state[state.CORPUS_PLAYS] == ["macbeth"]
    assert any(re.search(r"Training\.\.\. step [\d,]+ of", p.proto.text) for p in again.get("progress"))
    assert not button(again, "Stop").disabled and button(again, "Start training").disabled
    button(again, "Stop").click().run()  # stopping from the second tab stops the run
    assert wait_for_run(again).state == "stopped" and the_run(again).id == run.id
    # Another visitor sees none of it.
    stranger = open_app().switch_page("app/pages/train.py").run()
    assert any("No training run yet" in i.value for i in stranger.info)


@pytest.mark.slow
def test_one_run_at_a_time_per_visitor_even_from_two_tabs(app):
    at = train_page(app, epochs=50)
    second_tab = train_page(open_app(workspace_of(at).key), epochs=50)
    button(at, "Start training").click().run()
    wait_for_run(at, until=lambda run: run.active)
    button(second_tab, "Start training").click().run()  # its page was drawn before the run began
    assert any("You already have a run training" in e.value for e in second_tab.error)
    assert len(run_files.list_runs(workspace_of(at).runs)) == 1


@pytest.mark.slow
def test_start_trains_the_settings_changed_in_the_same_rerun(app):
    # A slider moved, or a preset chosen, and Start pressed before the page was drawn again: one
    # rerun carries both, and the run trains what the visitor chose, not what the page last showed.
    at = train_page(app, epochs=50)
    at.slider(key="train:epochs").set_value(3)
    button(at, "Start training").click().run()
    assert not at.exception and not at.error
    assert the_run(at).config["epochs"] == 3
    button(at, "Stop").click().run()
    wait_for_run(at)
    at.button(key="preset_quick").click()
    button(at, "Start training").click().run()
    assert not at.exception and not at.error
    quick, newest = PRESETS["quick"], run_files.list_runs(workspace_of(at).runs)[0]
    assert {name: newest.config[name] for name in ("epochs", "rnn_size", "batch_size")} == {
        "epochs": quick.epochs,
        "rnn_size": quick.rnn_size,
        "batch_size": quick.batch_size,
    }


def test_a_press_that_comes_with_impossible_settings_starts_nothing_and_says_why(app):
    at = train_page(app)
    at.checkbox(key="train:tie_weights").check()
    at.select_slider(key="train:embedding_size").set_value(64)
    button(at, "Start training").click().run()  # enabled when drawn; the same rerun makes it impossible
    assert any(e.value.startswith("Not started: tie_weights needs embedding_size") for e in at.error)
    assert not workspace_of(at).runs.exists() or not run_files.list_runs(workspace_of(at).runs)


def test_a_press_of_start_left_behind_by_leaving_the_page_starts_nothing_later(app):
    at = train_page(app)
    button(at, "Start training").click()
    at.switch_page("app/pages/data.py").run()  # the press and the move to another page in one rerun
    at.switch_page("app/pages/train.py").run()
    assert not at.exception
    assert not workspace_of(at).runs.exists() or not run_files.list_runs(workspace_of(at).runs)
    assert any("No training run yet" in i.value for i in at.info)


@pytest.mark.slow
def test_the_server_cap_on_concurrent_runs_is_explained(app, data, monkeypatch):
    monkeypatch.setenv("LSTM_PLAYHOUSE_MAX_RUNS", "1")
    st.cache_resource.clear()
    blocker = Workspace.for_key("another-visitors-key-0123456789", data)
    config = Config(rnn_size=8, batch_size=2, training_seq_len=4, epochs=1000, eval_every=0)
    runs.start_run(data, blocker.runs, config, prepare(TINY_TEXT, 0), RunLimits(max_runs=1))
    at = train_page(app)
    button(at, "Start training").click().run()
    assert any("already trains 1 model(s) at once" in e.value for e in at.error)
    assert not workspace_of(at).runs.exists()


def test_a_model_too_big_for_the_server_is_refused(app, monkeypatch):
    monkeypatch.setenv("LSTM_PLAYHOUSE_MAX_PARAMETERS", "10000")
    st.cache_resource.clear()
    at = train_page(app)
    assert any("this server allows 10,000" in e.value for e in at.error)
    assert button(at, "Start training").disabled


def test_server_caps_can_come_from_the_secrets_file(data, monkeypatch):
    monkeypatch.delenv("LSTM_PLAYHOUSE_MAX_PARAMETERS", raising=False)
    at = train_page(open_app(secrets={"LSTM_PLAYHOUSE_MAX_PARAMETERS": "20000"}))
    assert any("this server allows 20,000" in e.value for e in at.error)


def test_a_bad_cap_is_reported_instead_of_ignored(data, monkeypatch):
    monkeypatch.setenv("LSTM_PLAYHOUSE_MAX_RUNS", "two")
    at = open_app()
    assert any("misconfigured" in e.value and "LSTM_PLAYHOUSE_MAX_RUNS must be a number" in e.value for e in at.error)


def test_ray_asked_for_without_a_cluster_address_is_said_on_every_page(data, monkeypatch):
    monkeypatch.setenv("LSTM_PLAYHOUSE_RUNNER", "ray")
    monkeypatch.delenv("LSTM_PLAYHOUSE_RAY_ADDRESS", raising=False)
    for page in PAGES:
        at = AppTest.from_file(ENTRY, default_timeout=60)
        at.switch_page(page).run()
        assert not at.exception
        (error,) = at.error
        assert error.value.startswith("This server is misconfigured: LSTM_PLAYHOUSE_RUNNER is 'ray' but ")
        assert "LSTM_PLAYHOUSE_RAY_ADDRESS is not set" in error.value
        assert not at.get("button")  # nothing else is offered


@pytest.mark.slow
def test_a_bad_model_file_is_refused_once_and_remembered(app, monkeypatch):
    at = train_page(app)
    import lstm_core.model.checkpoint

    calls = []
    real = lstm_core.model.checkpoint.load_checkpoint
    monkeypatch.setattr(lstm_core.model.checkpoint, "load_checkpoint", lambda *a, **k: calls.append(1) or real(*a, **k))
    at.file_uploader(key=state.MODEL_UPLOAD).upload("model.pt", b"not a checkpoint at all", "application/octet-stream")
    at.run()
    assert any("cannot load checkpoint model.pt" in e.value for e in at.error)
    at.run()  # the file stays in the uploader: it is not read again
    assert any("cannot load checkpoint model.pt" in e.value for e in at.error)
    assert len(calls) == 1 and not at.exception


# ---- where a run stands, and runs compared ------------------------------------------------------

PLAYS_BASELINES = [
    Baseline(0, "uniform", "uniform", 7025.0, 41314),
    Baseline(1, "unigram", "unigram", 522.8, 41314),
    Baseline(2, "bigram", "bigram (Kneser-Ney)", 283.3, 41314),
    Baseline(5, "5-gram", "5-gram (Kneser-Ney)", 263.1, 41314),
]
FALLING_LOSS = [(step, 6.0 - step / 50) for step in range(1, 101)]


@pytest.mark.slow
def test_an_overfitting_run_is_called_so_above_its_charts(app):
    # Validation perplexity rises for the last three evaluations while the training loss falls.
    evals = [(20, 40.0, 300.0), (40, 80.0, 250.0), (60, 120.0, 260.0), (80, 160.0, 270.0), (100, 200.0, 280.0)]
    put_history(
        workspace_of(app),
        "20260101-000000-0a1b2c3d",
        PRESETS["quick"],
        FALLING_LOSS,
        evals,
        created=time.time(),
        baselines=PLAYS_BASELINES,
    )
    at = app.switch_page("app/pages/train.py").run()
    assert not at.exception
    (warning,) = [w.value for w in at.warning]
    assert warning == (
        "Better than uniform guessing after 40 s, than the unigram after 40 s, than the bigram after 1 min; "
        "no longer better than the 5-gram (perplexity 280 vs 263); "
        "validation perplexity has risen for 3 evaluations while training loss falls: overfitting."
    )
    perplexity = chart_rows(at.get("vega_lite_chart")[1])
    assert perplexity["step"].dropna().tolist() == [20, 40, 60, 80, 100]
    assert sorted(perplexity["baseline"].dropna()) == sorted(b.label for b in PLAYS_BASELINES)


def test_a_calm_run_gets_a_sentence_and_no_warning(app):
    evals = [(20, 10.0, 600.0), (40, 20.0, 400.0), (60, 30.0, 270.0)]
    put_history(
        workspace_of(app),
        "20260101-000000-0a1b2c3d",
        PRESETS["quick"],
        FALLING_LOSS[:60],
        evals,
        created=time.time(),
        baselines=PLAYS_BASELINES,
    )
    at = app.switch_page("app/pages/train.py").run()
    assert not at.warning
    sentence = "Better than uniform guessing after 10 s, than the unigram after 20 s, than the bigram after 30 s; "
    assert any(m.value.startswith(sentence + "not yet better than the 5-gram") for m in at.markdown)


def test_a_training_runs_note_on_its_memory_is_shown_while_it_trains(app):
    folder = put_history(
        workspace_of(app),
        "20260101-000000-0a1b2c3d",
        PRESETS["quick"],
        FALLING_LOSS[:60],
        [(60, 30.0, 270.0)],
        created=time.time(),
    )
    note = "memory reached 905 MB of its 1,000 MB limit, so freed memory now goes back to the system at once"
    status = run_files.read_json(folder / run_files.STATUS_FILE)
    pid = os.getpid()  # the process "training" it is this test's
    status.update(state="running", total_steps=600, pid=pid, pid_start=process_start_time(pid), message=note)
    run_files.write_json(folder / run_files.STATUS_FILE, status)
    at = app.switch_page("app/pages/train.py").run()
    assert not at.exception
    assert f"Note: {note}." in [caption.value for caption in at.caption]
    status.update(state="finished", message="")
    run_files.write_json(folder / run_files.STATUS_FILE, status)
    at = app.switch_page("app/pages/train.py").run()
    assert not any(caption.value.startswith("Note:") for caption in at.caption)


@pytest.mark.slow
def test_two_runs_drawn_on_one_chart_against_training_time(app):
    workspace = workspace_of(app)
    now = time.time()
    quick = put_history(
        workspace,
        "20260101-000000-0a1b2c3d",
        PRESETS["quick"],
        FALLING_LOSS,
        [(50, 30.0, 400.0), (100, 60.0, 250.0)],
        created=now - 600,
        baselines=PLAYS_BASELINES,
    )
    cookbook = put_history(
        workspace,
        "20260101-001000-4e5f6a7b",
        PRESETS["cookbook"].replace(epochs=2),
        FALLING_LOSS,
        [(30, 90.0, 500.0), (60, 180.0, 350.0), (100, 300.0, 300.0)],
        created=now,
        baselines=PLAYS_BASELINES,
    )
    at = app.switch_page("app/pages/train.py").run()
    table = at.dataframe[-1].value
    assert table["settings"].tolist() == ["Cookbook recipe, epochs 2", "Quick"]  # newest first
    assert table["training time"].tolist() == ["5m 00s", "1m 00s"]
    assert table["best perplexity"].tolist() == ["300.0", "250.0"]
    charts_before = len(at.get("vega_lite_chart"))
    at.multiselect(key=state.COMPARE_RUNS).set_value([cookbook.name]).run()
    assert any("Choose one more run" in c.value for c in at.caption)
    assert len(at.get("vega_lite_chart")) == charts_before
    at.multiselect(key=state.COMPARE_RUNS).set_value([cookbook.name, quick.name]).run()
    assert not at.exception
    assert len(at.get("vega_lite_chart")) == charts_before + 1
    compared = at.get("vega_lite_chart")[-1]
    rows = chart_rows(compared).dropna(subset=["run"])
    by_run = {run: group for run, group in rows.groupby("run")}
    assert len(by_run) == 2
    (cookbook_label,) = [label for label in by_run if "Cookbook" in label]
    (quick_label,) = [label for label in by_run if label.endswith("Quick")]
    assert by_run[cookbook_label]["step"].tolist() == [30, 60, 100]
    assert by_run[cookbook_label]["perplexity"].tolist() == [500.0, 350.0, 300.0]
    assert by_run[quick_label]["step"].tolist() == [50, 100]
    assert by_run[cookbook_label]["time"].tolist() == [1.5, 3.0, 5.0]  # minutes: the x axis is training time
    assert by_run[quick_label]["training time"].tolist() == ["30 s", "1 min"]
    spec = json.loads(compared.proto.spec)
    (lines,) = [layer for layer in spec["layer"] if layer["mark"]["type"] == "line"]
    assert [t["field"] for t in lines["encoding"]["tooltip"]] == ["run", "step", "training time", "perplexity"]
    assert lines["encoding"]["x"]["field"] == "time"
    assert sorted(chart_rows(compared)["baseline"].dropna()) == sorted(b.label for b in PLAYS_BASELINES)


@pytest.mark.slow
def test_a_compared_run_deleted_since_drops_out_of_the_comparison(app):
    workspace = workspace_of(app)
    now = time.time()
    losses, evals = FALLING_LOSS, [(50, 30.0, 400.0), (100, 60.0, 250.0)]
    found = [
        put_history(workspace, f"20260101-00{i}000-0a1b2c3{i}", PRESETS["quick"], losses, evals, created=now - 60 * i)
        for i in range(3)
    ]
    at = app.switch_page("app/pages/train.py").run()
    at.multiselect(key=state.COMPARE_RUNS).set_value([found[0].name, found[1].name]).run()
    charts = len(at.get("vega_lite_chart"))
    shutil.rmtree(found[1])  # removed (a run is kept for a limited time) while the page is open
    at.run()
    assert not at.exception
    assert at.multiselect(key=state.COMPARE_RUNS).value == [found[0].name]
    assert any("Choose one more run" in c.value for c in at.caption)
    assert len(at.get("vega_lite_chart")) == charts - 1


# ---- Generate --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_checkpoint():
    config = Config(rnn_size=32, batch_size=4, training_seq_len=8, epochs=3, learning_rate=0.01, eval_every=0)
    return Trainer(config, prepare(TINY_TEXT, 0, (0.8, 0.1, 0.1))).fit().checkpoint.without_training_state()


TINY_RUN = "20260101-000000-0a1b2c3d"


@pytest.fixture
def generate_page(app, tiny_checkpoint) -> AppTest:
    put_run(workspace_of(app), tiny_checkpoint, TINY_RUN)
    app.switch_page("app/pages/generate.py").run()
    return app.radio(key=state.MODEL_CHOICE).set_value(f"run:{TINY_RUN}").run()


def open_tab(at: AppTest, label: str) -> AppTest:
    at.session_state[state.GENERATE_MODE] = label
    return at.run()


@pytest.mark.slow
def test_the_demo_comes_first_then_the_visitors_runs(generate_page):
    labels = generate_page.radio(key=state.MODEL_CHOICE).options
    assert labels[0].startswith("Demo model")  # the default, the same for everyone a link is sent to
    assert labels[1].startswith("Your run of") and "validation perplexity 3.0" in labels[1]


@pytest.mark.slow
@pytest.mark.parametrize("method", ["greedy", "sample", "beam"])
def test_each_method_writes_a_continuation(generate_page, method):
    at = generate_page
    at.segmented_control(key="method").set_value(method).run()
    assert not at.exception
    text = generated_texts(at)[0]
    assert text.startswith("thou art more")
    assert len(text.split()) == 3 + 30


@pytest.mark.slow
def test_moving_the_temperature_changes_the_text_at_once(generate_page):
    at = generate_page
    at.segmented_control(key="method").set_value("sample").run()
    at.slider(key="temperature").set_value(0.05).run()
    cold = generated_texts(at)[0]
    at.slider(key="temperature").set_value(0.05).run()
    assert generated_texts(at)[0] == cold  # same seed, same text
    at.slider(key="temperature").set_value(2.0).run()
    assert generated_texts(at)[0] != cold


@pytest.mark.slow
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


@pytest.mark.slow
def test_step_by_step_pick_undo_and_reset(generate_page):
    at = open_tab(generate_page, "Step by step")
    assert generated_texts(at) == ["thou art more"]  # only the open tab is drawn
    candidates = at.pills(key="candidate_pick").options
    assert len(candidates) > 3
    choice = candidates[2]
    at.pills(key="candidate_pick").set_value(choice).run()
    assert generated_texts(at)[0] == f"thou art more {choice}"
    button(at, "Take the top word").click().run()
    assert len(generated_texts(at)[0].split()) == 5
    button(at, "Undo").click().run()
    assert generated_texts(at)[0] == f"thou art more {choice}"
    button(at, "Reset").click().run()
    assert generated_texts(at)[0] == "thou art more"
    assert button(at, "Undo").disabled
    rows = chart_rows(at.get("vega_lite_chart")[0])
    assert rows["probability"].sum() == pytest.approx(1.0, abs=1e-6)


def page_widgets(at: AppTest) -> dict[str, object]:
    """Every settings widget on the page, by label."""
    kinds = ("slider", "select_slider", "radio", "number_input", "checkbox", "segmented_control")
    return {widget.label: widget for kind in kinds for widget in at.get(kind)}


@pytest.mark.slow
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


@pytest.mark.slow
def test_min_p_reaches_the_sampler(generate_page):
    at = generate_page
    at.segmented_control(key="method").set_value("greedy").run()
    greedy = generated_texts(at)[0]
    at.segmented_control(key="method").set_value("sample").run()
    at.slider(key="temperature").set_value(2.0).run()
    assert generated_texts(at)[0] != greedy
    at.slider(key="min_p").set_value(1.0).run()  # only the most likely word is left
    assert generated_texts(at)[0] == greedy


@pytest.mark.slow
def test_the_candidates_are_what_sample_one_draws_from(generate_page):
    at = open_tab(generate_page, "Step by step")
    at.select_slider(key="top_k").set_value(3).run()
    assert len(at.pills(key="candidate_pick").options) == 3
    rows = chart_rows(at.get("vega_lite_chart")[0])
    assert rows["probability"].sum() == pytest.approx(1.0, abs=1e-6)
    assert any("top-k 3" in caption.value for caption in at.caption)
    for _ in range(5):
        offered = at.pills(key="candidate_pick").options
        button(at, "Sample one").click().run()
        assert html.unescape(generated_texts(at)[0]).split()[-1] in offered


@pytest.mark.slow
def test_the_step_tab_walks_through_the_softmax_and_the_temperature_moves_its_numbers(generate_page):
    at = open_tab(generate_page, "Step by step")
    table = at.dataframe[0].value
    assert list(table.columns) == ["word", "logit z", "z / T", "p after T", "p (drawn)"]
    drawn = chart_rows(at.get("vega_lite_chart")[0]).set_index("word")["probability"]
    for word, probability in zip(table["word"], table["p (drawn)"], strict=True):
        assert probability == pytest.approx(drawn[word], abs=1e-6)  # the table's last column is the chart
    at.slider(key="temperature").set_value(0.3).run()
    colder = at.dataframe[0].value
    assert colder["word"].tolist() == table["word"].tolist()  # dividing by T keeps the order
    assert colder["logit z"].tolist() == table["logit z"].tolist()
    assert colder["z / T"].tolist() == pytest.approx((colder["logit z"] / 0.3).tolist())
    assert colder["z / T"].tolist() != table["z / T"].tolist()
    assert colder["p (drawn)"][0] > table["p (drawn)"][0]
    at.select_slider(key="top_k").set_value(3).run()
    cut = at.dataframe[0].value
    assert cut["kept?"].tolist() == ["✓"] * 3 + ["✗ top-k"] * (len(cut) - 3)
    assert (cut["p (drawn)"][3:] == 0).all() and cut["p (drawn)"][:3].sum() == pytest.approx(1.0, abs=1e-6)
    assert not at.exception


@pytest.mark.slow
def test_picking_a_word_shows_the_gates_of_that_word(generate_page):
    at = open_tab(generate_page, "Step by step")

    def heading() -> str:
        (found,) = [m.value for m in at.markdown if m.value.startswith("**What reading")]
        return found

    def gates() -> pd.DataFrame:
        return chart_rows(at.get("vega_lite_chart")[1])

    assert heading() == "**What reading “more” did to the memory**"  # the prime's last word
    at_prime = gates()
    assert set(at_prime["quantity"]) == {"i", "f", "g", "o", "Δc"}
    choice = at.pills(key="candidate_pick").options[1]
    at.pills(key="candidate_pick").set_value(choice).run()
    assert heading() == f"**What reading “{choice}” did to the memory**"
    picked = gates()
    assert not picked["value"].equals(at_prime["value"])
    changes = picked.loc[picked["quantity"] == "Δc", "value"].abs().tolist()
    assert changes == sorted(changes, reverse=True)  # the units that changed most come first
    button(at, "Undo").click().run()
    assert heading() == "**What reading “more” did to the memory**"
    assert gates()["value"].tolist() == pytest.approx(at_prime["value"].tolist(), abs=1e-6)
    at.text_input(key="prime_text").input("thou art zounds").run()  # the model reads <unk> for it
    assert heading() == "**What reading “zounds” did to the memory**"
    assert any("the last word of the prime, read as <unk>" in c.value for c in at.caption)
    assert not at.exception


def test_the_gpu_preset_is_offered_only_where_cuda_is(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert state.offered_presets() == ["cookbook", "quick", "default"]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert state.offered_presets() == ["cookbook", "quick", "default", "gpu"]


def test_the_train_settings_take_their_ranges_from_the_config(app):
    at = train_page(app)
    shown = page_widgets(at)
    for name in state.UI_FIELDS:
        info = describe_field(Config, name)
        widget = shown[info.label]
        if info.choices:  # shown in the metadata's words where it has them ("plain RNN (tanh)" for rnn)
            assert widget.options == [info.choice_labels.get(choice, choice) for choice in info.choices]
        elif info.values or info.log:  # a select_slider, its options shown as text
            assert (float(widget.options[0]), float(widget.options[-1])) == (info.low, info.high)
        elif info.type is not bool:
            assert (widget.min, widget.max) == (info.low, info.high)
    assert at.slider(key="train:epochs").max == 100 and at.slider(key="train:training_seq_len").min == 2


@pytest.mark.slow
def test_the_best_preset_shows_its_regularisers_and_averaging_and_they_reach_the_run_config(app):
    at = train_page(app)
    button(at, "Best").click().run()
    assert at.checkbox(key="train:locked_dropout").value is True
    assert at.radio(key="train:weight_average").value == "uniform"
    assert at.slider(key="train:dropout").value == PRESETS["default"].dropout
    assert at.slider(key="train:input_dropout").value == PRESETS["default"].input_dropout
    assert at.radio(key="train:optimizer").value == "adamw"
    assert at.select_slider(key="train:weight_decay").value == PRESETS["default"].weight_decay > 0
    at.checkbox(key="train:locked_dropout").uncheck().run()
    at.slider(key="train:weight_drop").set_value(0.2).run()
    settings = at.session_state[state.CONFIG]  # what a Start would train, over the preset's other fields
    assert at.session_state[state.PRESET] == "default"
    assert (settings["locked_dropout"], settings["weight_drop"], settings["weight_average"]) == (False, 0.2, "uniform")
    assert not at.exception


def test_the_cell_is_a_setting_whose_choice_the_summary_and_the_runs_table_name(app):
    at = train_page(app)
    at.radio(key="train:cell").set_value("rnn").run()
    assert at.session_state[state.CONFIG]["cell"] == "rnn"
    assert any("Model: plain RNN 1 x 32" in c.value for c in at.caption)
    workspace = workspace_of(at)
    now = time.time()
    for offset, (run_id, cell) in enumerate(
        [("20260101-000000-0a1b2c3d", "rnn"), ("20260101-001000-4e5f6a7b", "lstm")]
    ):
        config = PRESETS["quick"].replace(cell=cell)
        put_history(workspace, run_id, config, FALLING_LOSS, [(100, 60.0, 250.0)], created=now - 600 + offset)
    at = app.switch_page("app/pages/train.py").run()
    assert at.dataframe[-1].value["settings"].tolist() == ["Quick", "Quick, plain RNN"]  # newest first
    assert not at.exception


def test_scoring_a_text(generate_page):
    at = open_tab(generate_page, "Score a text")
    at.text_area(key="score_text").input("shall i compare thee to a summer's day").run()
    perplexity = float(next(m.value for m in at.metric if m.label == "Perplexity of this text").replace(",", ""))
    assert 1 < perplexity < 50  # the tiny model learned this very sonnet
    coloured = next(m.value for m in at.markdown if "<span" in m.value)
    assert 'title="not scored: no words before it"' in coloured and ">shall</span>" in coloured
    assert coloured.count("<span") == 8  # every word shown, the first one unscored


@pytest.mark.slow
def test_a_text_is_scored_once_and_only_up_to_the_limit(generate_page, monkeypatch):
    import lstm_core.evaluation.scoring

    calls = []
    real = lstm_core.evaluation.scoring.score
    monkeypatch.setattr(lstm_core.evaluation.scoring, "score", lambda *a: calls.append(1) or real(*a))
    at = open_tab(generate_page, "Score a text")
    at.text_area(key="score_text").input("shall i compare thee to a summer's day").run()
    at.slider(key="temperature").set_value(1.5).run()  # a change elsewhere does not score it again
    assert len(calls) == 1
    at.text_area(key="score_text").input("thou art " * 600).run()
    assert any("the text has 1,200 words; this page scores at most 1,000" in i.value for i in at.info)
    assert len(calls) == 1


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


# ---- training through time: snapshots on the Generate page ---------------------------------------


@pytest.fixture(scope="module")
def early_and_late():
    """The tiny model after one epoch (a snapshot) and after four (the run's best)."""
    config = Config(rnn_size=32, batch_size=4, training_seq_len=8, epochs=4, learning_rate=0.01, eval_every=0)
    dataset = prepare(TINY_TEXT, 0, (0.8, 0.1, 0.1))
    early = Trainer(config.replace(epochs=1), dataset).fit().checkpoint
    late = Trainer(config, dataset, resume=early).fit().checkpoint
    return early.without_training_state(half=True), late.without_training_state()


@pytest.mark.slow
def test_a_snapshot_writes_beside_the_latest_model_and_scores_beside_it(app, early_and_late):
    from lstm_core.sampling.decoding import generate
    from lstm_core.sampling.options import SamplingOptions

    early, late = early_and_late
    folder = put_run(workspace_of(app), late, TINY_RUN)
    save_checkpoint(early, run_files.snapshot_path(folder, early.step))
    at = app.switch_page("app/pages/generate.py").run()
    at.radio(key=state.MODEL_CHOICE).set_value(f"run:{TINY_RUN}").run()
    at.segmented_control(key=state.BESIDE).set_value("snapshot").run()
    assert at.select_slider(key=state.SNAPSHOT_STEP).options == [f"step {early.step:,}"]
    then, now = generated_texts(at)
    options = SamplingOptions(method="sample", temperature=0.8, seed=7)
    snapshot = load_checkpoint(run_files.snapshot_path(folder, early.step))
    expected = generate(snapshot.build_model(), snapshot.vocab, "thou art more", 30, options)
    assert then == expected.text and now != then  # the same prime, settings and seed, an earlier model
    assert any(f"At step {early.step:,}" in c.value for c in at.caption)
    at = open_tab(at, "Score a text")
    at.toggle(key=state.SCORE_THEN).set_value(True).run()
    labels = [m.label for m in at.metric]
    assert labels == [f"Perplexity at step {early.step:,}", f"Perplexity now (step {late.step:,})"]
    then_ppl, now_ppl = (float(m.value.replace(",", "")) for m in at.metric)
    assert now_ppl < then_ppl  # more training, a better fit of the sonnet
