"""The command line of bench/kneser_ney.py: held-out perplexity of the core's Kneser-Ney models."""

from __future__ import annotations

import pytest

from bench.kneser_ney import main


def test_command_line_on_text_files(tmp_path, capsys) -> None:
    train = tmp_path / "train.txt"
    heldout = tmp_path / "heldout.txt"
    train.write_text("to be or not to be that is the question\n" * 20, encoding="utf-8")
    heldout.write_text("to be or not to be\n", encoding="utf-8")
    args = ["--train", str(train), "--heldout", str(heldout), "--max-order", "3", "--min-word-freq", "0"]
    assert main(args) == 0
    output = capsys.readouterr().out
    assert "vocabulary 9 words" in output  # <unk> and eight words
    rows = [line.split() for line in output.splitlines() if line.split()[:1] in (["1"], ["2"], ["3"])]
    assert [row[0] for row in rows] == ["1", "2", "3"]
    assert float(rows[2][1]) < float(rows[0][1])  # the repeated text is easy for a trigram


def test_command_line_refuses_mixed_sources(tmp_path) -> None:
    with pytest.raises(SystemExit):
        main(["--train", str(tmp_path / "a.txt")])
    with pytest.raises(SystemExit):
        main(["--train", "a", "--heldout", "b", "--plays-heldout", "hamlet"])
