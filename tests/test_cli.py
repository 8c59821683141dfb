import io
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lstm_core.cli.flags import UsageError, sampling_options_from_args
from lstm_core.cli.main import build_parser, main
from lstm_core.model.checkpoint import load_checkpoint
from lstm_core.runs import folder as runs
from lstm_core.sampling.options import SamplingOptions
from tests.conftest import TINY_TEXT

DEMO = Path(__file__).resolve().parent.parent / "models" / "demo.pt"

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


def test_a_run_keeps_its_baselines_and_snapshots_and_a_resume_keeps_the_baselines(tmp_path, texts, capsys):
    code, out = train(tmp_path, texts, "--eval-every", "4")
    assert code == 0, capsys.readouterr().err
    summary = json.loads(capsys.readouterr().out)
    baselines = runs.read_baselines(out)
    assert [b.order for b in baselines] == [0, 1, 2, 5]
    vocab = load_checkpoint(out / "last.pt").vocab
    assert baselines[0].perplexity == pytest.approx(len(vocab))  # uniform guessing
    steps = [step for step, _ in runs.list_snapshots(out)]
    assert len(steps) == runs.MAX_SNAPSHOTS and steps[0] == 4 and steps[-1] == summary["steps"]
    assert load_checkpoint(runs.snapshot_path(out, steps[-1])).step == summary["steps"]
    written = (out / runs.BASELINES_FILE).stat().st_mtime_ns
    files = ["--train-file", str(texts[0]), "--valid-file", str(texts[1])]
    assert main(["train", "--resume", str(out), *files, "--epochs", "3", "--threads", "1", "--quiet"]) == 0
    assert (out / runs.BASELINES_FILE).stat().st_mtime_ns == written  # made once, when the run began
    assert runs.list_snapshots(out)[-1][0] == load_checkpoint(out / "last.pt").step > summary["steps"]
    code, out = train(tmp_path, texts, "--overwrite", "--eval-every", "0")
    assert code == 0
    last = load_checkpoint(out / "last.pt").step
    assert [step for step, _ in runs.list_snapshots(out)] == [last // 2, last]  # the replaced run's are gone


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
        (["train", "--plays", "hamlet", "--threads", "-1"], "--threads must be 1 or more, got -1"),
        (["train", "--plays", "hamlet", "--nice", "40"], "--nice must be between 0 and 19"),
        (["train", "--plays", "hamlet", "--max-minutes", "0"], "--max-minutes must be a positive number"),
        (["train", "--plays", "hamlet", "--rnn-size", "100000000"], "TB (model, gradients and optimizer"),
        (["train", "--plays", "hamlet", "--out", "afile.txt"], "--out afile.txt is a file"),
        (["train", "--resume", "nowhere"], "--resume nowhere: no such run folder or checkpoint"),
        (["train", "--plays", "hamlet", "--config", "missing.json"], "--config missing.json: no such file"),
        (["export", "--checkpoint", str(DEMO), "--out", "."], "--out . is a folder"),
    ],
)
def test_bad_input_exits_2_with_one_clear_line(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile.txt").write_text("a file where a run folder should be")
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


@pytest.mark.slow
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


def test_an_unreadable_text_file_is_one_clear_line(tmp_path, monkeypatch, capsys):
    path = tmp_path / "locked.txt"
    path.write_text("words " * 10)
    real = Path.read_bytes

    def refuse(self):
        if self == path:
            raise PermissionError(13, "Permission denied")
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", refuse)
    assert main(["train", "--corpus", "file", "--text-file", str(path)]) == 2
    assert f"error: cannot read {path}: Permission denied" in capsys.readouterr().err


def test_an_existing_run_is_not_overwritten_unless_asked(tmp_path, texts, capsys):
    code, out = train(tmp_path, texts, "--epochs", "1")
    assert code == 0
    before = (out / "last.pt").read_bytes()
    code, _ = train(tmp_path, texts, "--epochs", "1")  # the same --out again
    assert code == 2
    assert "already holds a run; continue it with --resume" in capsys.readouterr().err
    assert (out / "last.pt").read_bytes() == before  # refused before any training: nothing touched
    code, _ = train(tmp_path, texts, "--epochs", "1", "--overwrite", "--seed", "9")
    assert code == 0 and (out / "last.pt").read_bytes() != before


def test_default_run_folders_are_unique_even_within_one_second(tmp_path, monkeypatch, texts, capsys):
    monkeypatch.chdir(tmp_path)
    train_file, valid_file = texts
    args = ["train", "--preset", "cookbook", "--train-file", str(train_file), "--valid-file", str(valid_file)]
    for _ in range(2):
        assert main([*args, *SMALL, "--epochs", "1", "--quiet"]) == 0
    folders = sorted((tmp_path / "runs").iterdir())
    assert len(folders) == 2 and all(re.match(r"run-\d{8}-\d{6}-[0-9a-f]{6}$", f.name) for f in folders)


def test_a_bug_inside_the_core_is_not_reported_as_bad_input(monkeypatch, tmp_path, texts):
    def broken(*args, **kwargs):
        raise ValueError("an internal invariant broke")

    monkeypatch.setattr("lstm_core.cli.train_command.admission_problems", broken)
    with pytest.raises(ValueError, match="an internal invariant broke"):  # a traceback, not "error: ..." and 2
        train(tmp_path, texts)


def test_bf16_where_it_is_not_supported_is_said(monkeypatch, tmp_path, texts, capsys):
    monkeypatch.setattr("lstm_core.training.trainer.resolve_precision", lambda precision, device: None)
    code, _ = train(tmp_path, texts, "--precision", "bf16", "--epochs", "1")
    assert code == 0
    assert "note: bf16 is not supported on cpu; training in fp32" in capsys.readouterr().err
