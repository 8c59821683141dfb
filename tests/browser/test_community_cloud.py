"""The app under the settings Streamlit Community Cloud forces, whatever .streamlit/config.toml says.

Community Cloud runs every app with ``server.runOnSave = true``, ``client.showErrorDetails = false``
and ``server.enableXsrfProtection = true``; the same flags on ``streamlit run``'s command line
reproduce it here. XSRF protection changes how the browser posts an upload (it must send the
token from the server's cookie), so a visitor's whole path is walked through: a text uploaded on
the Data page, a model uploaded on the Train page, a continuation from that model on the Generate
page, and a short training run on the uploaded text.
"""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect

from lstm_core.text.corpus import bundled_plays
from tests.browser.conftest import ROOT, Server, serving
from tests.browser.test_visitor import expect_no_error, go_to, open_app, upload_text

FORCED = ["--server.runOnSave", "true", "--client.showErrorDetails", "false", "--server.enableXsrfProtection", "true"]


@pytest.fixture(scope="module")
def cloud_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("cloud")
    with serving(Server(folder / "data", folder / "server.log", flags=FORCED)) as server:
        yield server


def test_the_server_refuses_an_upload_without_the_xsrf_token(cloud_server):
    # Proof that the flag took effect: with protection off, this bogus upload gets 400 (no such session).
    request = urllib.request.Request(f"{cloud_server.url}/_stcore/upload_file/no-session/no-file", b"x", method="PUT")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 403


def test_uploads_generating_and_training_work_under_community_cloud_settings(cloud_server, page, tmp_path: Path):
    text = tmp_path / "errors.txt"
    text.write_text(bundled_plays(["the-comedy-of-errors"]).text, encoding="utf-8")
    open_app(page, cloud_server.url)
    upload_text(page, text)  # waits until the page describes the uploaded text

    go_to(page, "Train")
    page.get_by_text("Load a model you downloaded before").click()
    page.get_by_test_id("stFileUploaderDropzoneInput").set_input_files(ROOT / "models" / "demo.pt")
    expect(page.get_by_text("Loaded demo.pt: the Generate page can use it.")).to_be_visible()

    go_to(page, "Generate")
    page.get_by_text("Uploaded: demo.pt", exact=True).click()
    expect(page).to_have_url(re.compile(r"model=upload%3A"))
    expect(page.locator(".generated").first).to_have_text(re.compile(r"^thou art more \S+"))

    go_to(page, "Train")
    page.get_by_role("button", name="Quick", exact=True).click()
    page.get_by_text("Model and training settings").click()
    epochs = page.get_by_role("slider", name="epochs")
    epochs.focus()
    epochs.press("Home")
    expect(epochs).to_have_value("1")
    # The server has the new value once the page counts one epoch (Start trains what it counted).
    expect(page.get_by_text(re.compile(r"^Text: errors\.txt, .*; 1 epoch of [\d,]+ steps;"))).to_be_visible()
    page.get_by_role("button", name="Start training").click()
    expect(page.get_by_text(re.compile(r"^Finished\. [\d,]+ steps in"))).to_be_visible(timeout=120_000)
    expect(page.get_by_role("button", name="Download the model (.pt)")).to_be_visible()
    expect_no_error(page)
