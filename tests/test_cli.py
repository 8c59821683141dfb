import io
import json
import math
import subprocess
import sys

import pytest
import torch

from lstm_core.checkpoint import load_checkpoint
from lstm_core.cli import UsageError, build_parser, main, sampling_options_from_args
from lstm_core.sampling import SamplingOptions
from tests.conftest import TINY_TEXT

SMALL = ["--rnn-size", "16", "--batch-size", "4", "--training-seq-len", "8", "--epochs", "2", "--learning-rate", "0.01"]
SMALL += ["--eval-every", "0", "--min-word-freq", "0", "--sample-length", "3", "--threads", "1"]


@pytest.fixture
def texts(tmp_path):
    train, valid = tmp_path / "train.txt", tmp_path / "valid.txt"
    train.write_text(TINY_TEXT)
    valid.write_text(TINY_TEXT[:600])
    return train, valid


def train(tmp_path, texts, *extra):
    train_file, valid_file = texts
    out = tmp_path / "run"
    args = ["train", "--preset", "cookbook", "--train-file", str(train_file), "--valid-file", str(valid_file)]
    return main([*args, "--out", str(out), *SMALL, "--json", *extra]), out


def test_train_evaluate_generate_end_to_end(tmp_path, texts, capsys):
    code, out = train(tmp_path, texts)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    summary = json.loads(captured.out)
    assert summary["reason"] == "finished" and summary["steps"] > 0
    assert "validation loss" in captured.err and "step" in captured.err
    checkpoint = load_checkpoint(out / "last.pt")
    assert checkpoint.config.rnn_size == 16 and checkpoint.config.epochs == 2
    assert (out / "best.pt").exists()

    assert main(["evaluate", "--checkpoint", str(out / "last.pt"), "--text-file", str(texts[1]), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["perplexity"] == pytest.approx(math.exp(result["loss"]))
    assert result["loss"] == pytest.approx(summary["val_loss"], rel=1e-4)  # the same held-out text
    assert result["unknown_share"] == 0

    args = ["generate", "--checkpoint", str(out / "last.pt"), "--prime", "thou art more", "--prime", "zounds thou"]
    assert main([*args, "-n", "5", "--json"]) == 0
    generations = json.loads(capsys.readouterr().out)
    assert generations[0]["text"].startswith("thou art more") and len(generations[0]["continuation"]) == 5
    assert generations[1]["unknown_words"] == ["zounds"]
    assert main([*args, "-n", "5"]) == 0
    assert "[not in the vocabulary: zounds]" in capsys.readouterr().out


def test_resume_continues_the_run(tmp_path, texts, capsys):
    code, out = train(tmp_path, texts, "--epochs", "1")
    assert code == 0
    first = load_checkpoint(out / "last.pt")
    files = ["--train-file", str(texts[0]), "--valid-file", str(texts[1])]
    code = main(["train", "--resume", str(out / "last.pt"), *files, "--epochs", "2", "--threads", "1", "--quiet"])
    assert code == 0, capsys.readouterr().err
    second = load_checkpoint(out / "last.pt")
    assert second.step == 2 * first.step and second.config.epochs == 2


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--corpus", "file", "--text-file", "missing.txt"], "no such file: missing.txt"),
        (["train", "--train-file", "a.txt"], "--train-file and --valid-file go together"),
        (["train", "--plays", "hamlet", "--dropout", "1.5"], "dropout must be in [0, 1)"),
        (["train", "--plays", "hamlet,macbeth", "--holdout-plays", "hamlet,macbeth"], "every chosen play is held out"),
        (["train", "--plays", "hamlett"], "unknown play(s): hamlett"),
        (["train", "--plays", "macbeth", "--batch-size", "512", "--training-seq-len", "400"], "205,312 words"),
        (["evaluate", "--checkpoint", "nope.pt", "--plays", "hamlet"], "cannot load checkpoint nope.pt"),
        (["generate", "--checkpoint", "nope.pt"], "the file does not exist"),
    ],
)
def test_bad_input_exits_2_with_one_clear_line(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].startswith("error: ") and message in err
    assert "Traceback" not in err


def test_unknown_flag_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as caught:
        main(["train", "--rnn-sise", "3"])
    assert caught.value.code == 2
    assert "unrecognized arguments: --rnn-sise" in capsys.readouterr().err


def test_generate_rejects_bad_sampling_options(tmp_path, texts, capsys):
    code, out = train(tmp_path, texts, "--epochs", "1")
    assert code == 0
    capsys.readouterr()
    assert main(["generate", "--checkpoint", str(out / "last.pt"), "--method", "sample", "--temperature", "0"]) == 2
    assert "temperature" in capsys.readouterr().err


def test_export_writes_a_smaller_model_only_file(tmp_path, texts, capsys):
    code, out = train(tmp_path, texts, "--epochs", "1")
    assert code == 0
    assert main(["export", "--checkpoint", str(out / "last.pt"), "--out", str(tmp_path / "small.pt"), "--half"]) == 0
    assert "model only (float16 weights)" in capsys.readouterr().out
    small, full = load_checkpoint(tmp_path / "small.pt"), load_checkpoint(out / "last.pt")
    assert small.optimizer is None and small.vocab == full.vocab
    assert (tmp_path / "small.pt").stat().st_size < (out / "last.pt").stat().st_size / 2
    assert all(t.dtype == torch.float16 for t in small.weights.values() if t.is_floating_point())
    args = ["evaluate", "--text-file", str(texts[1]), "--json", "--checkpoint"]
    assert main([*args, str(out / "last.pt")]) == 0
    full_loss = json.loads(capsys.readouterr().out)["loss"]
    assert main([*args, str(tmp_path / "small.pt")]) == 0
    assert json.loads(capsys.readouterr().out)["loss"] == pytest.approx(full_loss, rel=1e-3)
    assert main(["export", "--checkpoint", str(out / "last.pt"), "--out", str(out / "last.pt")]) == 2


def test_plays_lists_the_bundled_plays(capsys):
    assert main(["plays"]) == 0
    names = capsys.readouterr().out.split()
    assert "hamlet" in names and len(names) == 38


def test_module_entry_point_runs():
    result = subprocess.run([sys.executable, "-m", "lstm_core", "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0
    assert "train" in result.stdout and "generate" in result.stdout


# ---- generate's flags: sampling flags mean sampling, temperature 0 means greedy ------------------


def options_for(*flags: str) -> tuple[SamplingOptions, str]:
    """The options ``generate`` builds from ``flags``, and what it warned."""
    args = build_parser().parse_args(["generate", "--checkpoint", "model.pt", *flags])
    warnings = io.StringIO()
    return sampling_options_from_args(args, warn=warnings), warnings.getvalue()


@pytest.mark.parametrize("flags", [["--temperature", "1.5"], ["--top-k", "5"], ["--top-p", "0.9"], ["--min-p", "0.1"]])
def test_a_sampling_flag_without_a_method_means_sampling(flags):
    options, warned = options_for(*flags)
    assert options.method == "sample" and warned == ""
    name = flags[0].removeprefix("--").replace("-", "_")
    assert getattr(options, name) == type(getattr(options, name))(flags[1])


def test_no_flags_mean_greedy_and_temperature_zero_means_greedy():
    assert options_for()[0] == SamplingOptions()
    options, warned = options_for("--temperature", "0")
    assert options.method == "greedy" and warned == ""
    options, warned = options_for("--temperature", "0", "--top-k", "5", "--seed", "3")
    assert options.method == "greedy" and options.seed == 3 and options.top_k == 0
    assert "--top-k" in warned


@pytest.mark.parametrize(
    ("flags", "ignored", "wanted"),
    [
        (["--method", "greedy", "--temperature", "1.5"], "--temperature", "sample"),
        (["--method", "beam", "--top-k", "5", "--top-p", "0.5"], "--top-k, --top-p", "sample"),
        (["--beam-width", "8"], "--beam-width", "beam"),
        (["--method", "sample", "--length-penalty", "0.5"], "--length-penalty", "beam"),
    ],
)
def test_flags_the_method_does_not_use_are_dropped_with_a_one_line_warning(flags, ignored, wanted):
    options, warned = options_for(*flags)
    assert warned.count("\n") == 1 and warned.startswith("warning: ")
    assert f"{ignored} ignored with --method {options.method}" in warned and f"--method {wanted}" in warned
    assert options == SamplingOptions(method=options.method)  # nothing of the ignored flags was kept


def test_an_explicit_method_with_a_bad_value_is_still_refused():
    with pytest.raises(UsageError, match="temperature must be"):
        options_for("--method", "sample", "--temperature", "0")
    with pytest.raises(UsageError, match="top_k"):
        options_for("--top-k", "5000")


def test_generate_samples_when_given_a_temperature_and_warns_on_stderr(tmp_path, texts, capsys):
    code, out = train(tmp_path, texts, "--epochs", "1")
    assert code == 0
    capsys.readouterr()
    base = ["generate", "--checkpoint", str(out / "last.pt"), "--prime", "thou art", "-n", "12", "--json"]

    def continuation(*flags: str) -> list[str]:
        assert main([*base, *flags]) == 0
        return json.loads(capsys.readouterr().out)[0]["continuation"]

    implied = continuation("--temperature", "1.5", "--seed", "4")
    assert implied == continuation("--method", "sample", "--temperature", "1.5", "--seed", "4")
    greedy = continuation()
    assert implied != greedy
    assert main([*base, "--method", "greedy", "--temperature", "1.5"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)[0]["continuation"] == greedy
    assert (
        captured.err.strip() == "warning: --temperature ignored with --method greedy (only --method sample uses them)"
    )
    assert continuation("--temperature", "0") == greedy
