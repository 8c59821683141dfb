"""Share links (app/share.py): an address's settings checked, links without the private key, shared models."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlparse

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from app import share, state
from app.visitor import KEY_PARAM
from lstm_core.model.checkpoint import load_checkpoint
from tests.test_app import ENTRY, TINY_RUN, generated_texts, put_run, tiny_checkpoint, workspace_of  # noqa: F401

MODELS = ("demo", "run:20260101-000000-0a1b2c3d")


def test_valid_settings_pass_unchanged():
    params = {
        "model": "demo",
        "prime_text": "to be or",
        "length": "40",
        "method": share.address_text("method", "sample"),
    }
    params |= {"seed": "11", "temperature": "1.3", "top_k": "40", "top_p": "0.9", "generate_mode": "Step by step"}
    params |= {"unknown": share.address_text("unknown", "stop")}
    checked = share.validate(params, MODELS)
    assert checked.values == params and checked.problems == []
    assert params["method"] == "Sampling"  # a widget showing options writes the option as it shows it


@pytest.mark.parametrize(
    ("key", "raw", "used", "message"),
    [
        ("temperature", "9", "2", "is out of range, so 2 is used"),
        ("temperature", "0.83", "0.85", "is out of range, so 0.85 is used"),
        ("top_p", "-1", "0.05", "is out of range"),
        ("top_k", "37", "40", "is not one of its values, so 40 is used"),
        ("length", "5000", "100", "Words to write 5000 is out of range, so 100 is used"),
        ("seed", "-3", "0", "is out of range, so 0 is used"),
        ("method", "psychic", None, "'psychic' is not one of: Greedy"),
        ("temperature", "warm", None, "'warm' is not a number"),
        ("temperature", "nan", None, "'nan' is not a number"),
        ("model", "run:someone-elses", None, "not one you can open here"),
        ("generate_mode", "Poetry", None, "'Poetry' is not one of: Continue, Step by step, Score a text"),
    ],
)
def test_a_bad_value_goes_to_the_nearest_valid_one_with_a_message(key, raw, used, message):
    checked = share.validate({key: raw}, MODELS)
    assert checked.values.get(key) == used
    assert len(checked.problems) == 1 and message in checked.problems[0]


def test_a_share_link_holds_the_settings_and_the_model_but_not_the_private_key():
    address = {"temperature": "0.8", "seed": "7", "k": "secret", "unrelated": "1"}
    link = share.share_link("http://host:8501/generate?k=secret", address, "shared:abc")
    query = parse_qs(urlparse(link).query)
    assert link.startswith("http://host:8501/generate?")
    assert query == {"model": ["shared:abc"], "seed": ["7"], "temperature": ["0.8"]}


# ---- the page --------------------------------------------------------------------------------


@pytest.fixture
def data(monkeypatch, tmp_path):
    monkeypatch.setenv("LSTM_PLAYHOUSE_DATA", str(tmp_path / "data"))
    st.cache_resource.clear()
    st.cache_data.clear()
    return tmp_path / "data"


def open_generate(query: dict[str, str]) -> AppTest:
    at = AppTest.from_file(ENTRY, default_timeout=60)
    for key, value in query.items():
        at.query_params[key] = value
    at.run()
    return at.switch_page("app/pages/generate.py").run()


def link_of(at: AppTest) -> str:
    return next(code.value for code in at.code if "generate?" in code.value)


@pytest.mark.slow
def test_a_link_opened_elsewhere_shows_the_same_continuation(data):
    settings = {"method": "Sampling", "temperature": "1.4", "seed": "3", "prime_text": "wherefore art thou"}
    first = open_generate(settings)
    text = generated_texts(first)[0]
    assert text.startswith("wherefore art thou") and first.slider(key=state.TEMPERATURE).value == 1.4
    assert any("Sampled with seed 3 at temperature 1.4" in c.value for c in first.caption)
    link = link_of(first)
    query = {key: values[0] for key, values in parse_qs(urlparse(link).query).items()}
    assert KEY_PARAM not in query and query["seed"] == "3" and query["model"] == "demo"
    assert query["length"] == "30" and query["top_p"] == "1"  # defaults too: a link outlives a change of defaults
    stranger = open_generate(query)  # another browser: a new workspace
    assert workspace_of(stranger).key != workspace_of(first).key
    assert generated_texts(stranger)[0] == text


@pytest.mark.slow
def test_a_tampered_link_opens_with_a_message_and_the_nearest_settings(data):
    at = open_generate({"temperature": "9", "method": "Sampling", "model": "run:not-mine", "length": "-4"})
    assert not at.exception
    (warning,) = [w.value for w in at.warning if "did not all fit" in w.value]
    assert "2 is used" in warning and "not one you can open here" in warning and "so 5 is used" in warning
    assert at.slider(key=state.TEMPERATURE).value == 2.0 and at.slider(key=state.LENGTH).value == 5
    assert at.radio(key=state.MODEL_CHOICE).value == "demo"
    assert len(generated_texts(at)[0].split()) == 3 + 5


@pytest.mark.slow
def test_a_visitors_own_model_is_shared_only_when_asked(data, tiny_checkpoint):  # noqa: F811
    at = open_generate({})
    put_run(workspace_of(at), tiny_checkpoint, TINY_RUN)
    at.run().radio(key=state.MODEL_CHOICE).set_value(f"run:{TINY_RUN}").run()
    assert not [c for c in at.code if "generate?" in c.value]  # no link leads to a private model
    assert any("only your workspace can open" in m.value for m in at.markdown)
    next(b for b in at.button if b.label == "Share this model").click().run()
    link = link_of(at)
    share_id = re.search(r"model=shared%3A([\w-]+)", link).group(1)
    folder = share.shared_folder(data, share_id)
    assert folder is not None and sorted(p.name for p in folder.iterdir()) == ["meta.json", "model.pt"]
    shared = load_checkpoint(folder / "model.pt")
    assert shared.optimizer is None and shared.history == {} and shared.dataset == {}  # nothing else of theirs
    text = generated_texts(at)[0]
    query = {key: values[0] for key, values in parse_qs(urlparse(link).query).items()}
    stranger = open_generate(query)
    assert stranger.radio(key=state.MODEL_CHOICE).value == f"shared:{share_id}"
    assert generated_texts(stranger)[0] == text
    assert not any(o.startswith("Your run of") for o in stranger.radio(key=state.MODEL_CHOICE).options)
    again = share.share_model(data, workspace_of(at).folder, at.session_state[state.GENERATOR].model_key, folder, "x")
    assert again == share_id  # the same model shared twice: one link


@pytest.mark.slow
def test_an_ngram_model_writes_beside_the_lstm(data):
    at = open_generate({"method": "Sampling", "seed": "5"})
    at.segmented_control(key=state.BESIDE).set_value("ngram").run()
    lstm, ngram = generated_texts(at)
    assert lstm.startswith("thou art more") and ngram.startswith("thou art more") and lstm != ngram
    assert any("The 3-gram" in c.value for c in at.caption)
