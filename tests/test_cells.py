"""The cell is a setting: an LSTM (the default, and every file saved before), a GRU or a plain RNN, each
trained, traced, sampled, scored, resumed and checked like the LSTM."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch

from lstm_core.cli.main import main
from lstm_core.config import Config, ConfigError
from lstm_core.data.dataset import prepare
from lstm_core.evaluation.scoring import score
from lstm_core.model.checkpoint import CheckpointError, load_checkpoint
from lstm_core.model.fast import fast_path
from lstm_core.model.memory import estimate_memory
from lstm_core.model.network import LSTMLanguageModel, count_parameters, keep_mask
from lstm_core.sampling.decoding import generate
from lstm_core.sampling.options import SamplingOptions
from lstm_core.sampling.step import StepGenerator
from lstm_core.text.cleaning import tokenize
from lstm_core.training.trainer import Trainer
from tests.conftest import SONNET, TINY_CONFIG, TINY_TEXT
from tests.distributed_worker import TORCHRUN, torchrun_env
from tests.language_models import PRIME, ProtocolOnly, train

DATA = Path(__file__).resolve().parent / "data"
DEMO = Path(__file__).resolve().parent.parent / "models" / "demo.pt"
OLD_RUN = DATA / "lstm_before_cells.pt"
"""A resumable run of 5 steps saved by the code before the cell was a setting (its config has no ``cell``)."""
VOCAB = 40
MODULES = {"gru": torch.nn.GRU, "rnn": torch.nn.RNN}


def make_model(cell: str, num_layers: int = 2, seed: int = 0, **changes) -> LSTMLanguageModel:
    torch.manual_seed(seed)
    return LSTMLanguageModel(VOCAB, Config(cell=cell, rnn_size=12, num_layers=num_layers, **changes)).eval()


def random_ids(length: int = 20, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, VOCAB, (length,), generator=torch.Generator().manual_seed(seed))


# ---- the setting and the model ------------------------------------------------------------------


def test_the_cell_is_lstm_unless_chosen_and_an_unknown_one_is_refused():
    assert Config().cell == "lstm" and Config.from_dict({}).cell == "lstm"
    with pytest.raises(ConfigError, match="cell must be one of lstm, gru, rnn; got 'lstm2'"):
        Config(cell="lstm2")  # type: ignore[arg-type]


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_each_cell_names_its_weights_after_itself_and_keeps_the_state_shape(cell):
    model = make_model(cell)
    assert {name.split(".")[0] for name in model.state_dict()} == {"embedding", cell, "decoder"}
    assert model.recurrent is getattr(model, cell)
    hidden, (h, c) = model(random_ids()[None])
    assert hidden.shape == (1, 20, 12) and h.shape == c.shape == (2, 1, 12)
    assert (c != 0).any() == (cell == "lstm")  # a GRU's and an RNN's c is zeros: they have no memory cell


def test_fewer_gates_mean_fewer_parameters_and_less_memory():
    counts = [VOCAB]
    sizes = {cell: count_parameters(Config(cell=cell), 1000) for cell in ("lstm", "gru", "rnn")}
    recurrent = {cell: sizes[cell] - sizes["rnn"] for cell in sizes}  # the same embedding and output layer
    assert recurrent["lstm"] == 3 * (2 * 128 * 128 + 2 * 128) and recurrent["gru"] == 2 * (2 * 128 * 128 + 2 * 128)
    memory = [estimate_memory(Config(cell=cell), counts * 1000, 10_000).total for cell in ("lstm", "gru", "rnn")]
    assert memory[0] > memory[1] > memory[2]


@pytest.mark.parametrize("cell", ["gru", "rnn"])
def test_a_step_at_a_time_is_the_forward_pass(cell):
    model = make_model(cell)
    ids = random_ids()
    with torch.no_grad():
        whole, (h, _) = model(ids[None])
        state = None
        for t, word in enumerate(ids):
            hidden, state = model.step(word.view(1), state)
            torch.testing.assert_close(hidden, whole[:, t], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(state[0], h, rtol=1e-5, atol=1e-6)
    assert not state[1].any()


@pytest.mark.parametrize("cell", ["gru", "rnn"])
def test_weight_drop_is_the_cell_with_masked_recurrent_weights(cell):
    model = make_model(cell, weight_drop=0.5).train()
    ids = torch.randint(0, VOCAB, (3, 7))
    torch.manual_seed(1)
    hidden, (h, _) = model(ids)
    torch.manual_seed(1)  # the same draws: one mask per layer, in layer order
    masked = [(w := getattr(model.recurrent, f"weight_hh_l{layer}")) * keep_mask(w, w.shape, 0.5) for layer in (0, 1)]
    reference = make_model(cell)
    reference.load_state_dict(model.state_dict())
    with torch.no_grad():
        for layer, weight in enumerate(masked):
            getattr(reference.recurrent, f"weight_hh_l{layer}").copy_(weight)
        expected, (expected_h, _) = reference(ids)
    torch.testing.assert_close(hidden, expected)
    torch.testing.assert_close(h, expected_h)


# ---- checkpoints: the old ones, and the checks of uploads -----------------------------------------


def test_a_checkpoint_saved_before_the_cell_existed_loads_as_an_lstm(tmp_path):
    # A run's checkpoint written by the code before, and a model-only float16 export as it wrote
    # them (the shipped demo, written since, with the setting taken out of its config).
    demo = torch.load(DEMO, map_location="cpu", weights_only=True)
    del demo["config"]["cell"]
    torch.save(demo, tmp_path / "old-demo.pt")
    for path in (tmp_path / "old-demo.pt", OLD_RUN):
        raw = torch.load(path, map_location="cpu", weights_only=True)
        assert "cell" not in raw["config"]  # written by the code before this setting
        checkpoint = load_checkpoint(path)
        assert checkpoint.config.cell == "lstm"
        model = checkpoint.build_model()
        assert model.cell == "lstm" and fast_path(model) is not None


def test_an_old_run_resumes_where_it_stopped():
    checkpoint = load_checkpoint(OLD_RUN)
    dataset = prepare(TINY_TEXT, min_word_freq=0, fractions=(0.8, 0.1, 0.1), name="sonnet 18")
    trainer = Trainer(checkpoint.config.replace(epochs=1), dataset, resume=checkpoint)
    assert trainer.step == 5 and trainer.model.cell == "lstm"
    result = trainer.fit()
    assert result.checkpoint.step == 34 and result.checkpoint.config.cell == "lstm"


def test_weights_of_another_cell_than_the_config_says_are_refused(tmp_path):
    checkpoint = Trainer(TINY_CONFIG.replace(cell="gru", epochs=1), prepare(TINY_TEXT, 0, (0.8, 0.1, 0.1))).fit()
    plain = checkpoint.checkpoint.to_plain()
    plain["config"]["cell"] = "lstm"
    path = tmp_path / "mislabelled.pt"
    torch.save(plain, path)
    with pytest.raises(CheckpointError, match=r"missing lstm\.bias_hh_l0, .*lstm\.weight_hh_l0"):
        load_checkpoint(path)
    plain["config"]["cell"] = "rnn"  # the GRU's weights under a plain RNN's names would have the wrong shape
    torch.save({**plain, "weights": {k.replace("gru.", "rnn."): v for k, v in plain["weights"].items()}}, path)
    with pytest.raises(CheckpointError, match=r"rnn.weight_ih_l0 is \(72, 24\), the config asks for \(24, 24\)"):
        load_checkpoint(path)


def test_a_run_cannot_change_its_cell_when_resumed():
    checkpoint = load_checkpoint(OLD_RUN)
    with pytest.raises(ConfigError, match="cannot change cell when resuming"):
        Trainer(checkpoint.config.replace(cell="gru"), prepare(TINY_TEXT, 0, (0.8, 0.1, 0.1)), resume=checkpoint)


# ---- sampling, step by step, scoring: the fast path against the protocol's ------------------------


@pytest.fixture(scope="module", params=["gru", "rnn"])
def trained(request, sonnet_vocab) -> LSTMLanguageModel:
    """A 24-unit GRU or plain RNN trained briefly on sonnet 18."""
    torch.manual_seed(0)
    config = Config(cell=request.param, rnn_size=24, num_layers=2, output_layer="adaptive")
    model = LSTMLanguageModel(len(sonnet_vocab), config, [20, 50]).eval()
    train(model, sonnet_vocab.encode(tokenize(SONNET * 3)), steps=60)
    return model


@pytest.mark.parametrize(
    "options",
    [
        SamplingOptions(),
        SamplingOptions(method="sample", temperature=0.9, top_k=20, top_p=0.95, seed=3),
        SamplingOptions(method="beam", beam_width=3),
    ],
    ids=["greedy", "sample", "beam"],
)
def test_a_gru_or_rnn_writes_the_same_words_on_the_fast_path_as_the_protocols(trained, sonnet_vocab, options):
    assert fast_path(trained) is not None
    fast = generate(trained, sonnet_vocab, PRIME, 20, options)
    plain = generate(ProtocolOnly(trained), sonnet_vocab, PRIME, 20, options)
    assert fast.words == plain.words and len(fast.words) == 20


def test_a_gru_or_rnn_scores_a_text_as_its_forward_pass_does(trained, sonnet_vocab):
    fast = score(trained, sonnet_vocab, SONNET)
    plain = score(ProtocolOnly(trained), sonnet_vocab, SONNET)
    assert [w.rank for w in fast.words] == [w.rank for w in plain.words]
    torch.testing.assert_close(
        torch.tensor([w.probability for w in fast.words]),
        torch.tensor([w.probability for w in plain.words]),
        atol=1e-5,
        rtol=1e-4,
    )


def test_step_by_step_with_undo_comes_back_to_the_same_place(trained, sonnet_vocab):
    stepper = StepGenerator(trained, sonnet_vocab, PRIME)
    before, state = stepper.log_probs.clone(), stepper.state
    stepper.step("to")
    stepper.step("a")
    stepper.undo()
    stepper.undo()
    torch.testing.assert_close(stepper.log_probs, before)
    assert torch.equal(stepper.state[0], state[0]) and not stepper.state[1].any()


# ---- from the command line ------------------------------------------------------------------------


@pytest.mark.parametrize("cell", ["gru", "rnn"])
def test_each_cell_trains_from_the_command_line_then_generates_and_exports(tmp_path, capsys, cell):
    train_file, valid_file = tmp_path / "train.txt", tmp_path / "valid.txt"
    train_file.write_text(TINY_TEXT)
    valid_file.write_text(TINY_TEXT[:600])
    out = tmp_path / "run"
    flags = ["--train-file", str(train_file), "--valid-file", str(valid_file), "--out", str(out), "--json"]
    flags += [
        "--rnn-size",
        "16",
        "--batch-size",
        "4",
        "--training-seq-len",
        "8",
        "--epochs",
        "1",
        "--min-word-freq",
        "0",
    ]
    flags += ["--eval-every", "10", "--sample-length", "3", "--threads", "1", "--learning-rate", "0.01"]
    code = main(["train", "--preset", "cookbook", "--cell", cell, *flags])
    assert code == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out)["reason"] == "finished"
    checkpoint = load_checkpoint(out / "last.pt")
    assert checkpoint.config.cell == cell and f"{cell}.weight_hh_l0" in checkpoint.weights
    assert sorted(p.name for p in (out / "snapshots").iterdir())  # snapshots of this cell, loadable below
    for snapshot in (out / "snapshots").iterdir():
        assert load_checkpoint(snapshot).config.cell == cell
    assert main(["generate", "--checkpoint", str(out / "last.pt"), "--prime", "thou art", "-n", "5", "--json"]) == 0
    (generation,) = json.loads(capsys.readouterr().out)
    assert generation["text"].startswith("thou art") and len(generation["continuation"]) == 5
    assert main(["export", "--checkpoint", str(out / "last.pt"), "--out", str(tmp_path / "small.pt"), "--half"]) == 0
    assert load_checkpoint(tmp_path / "small.pt").build_model().cell == cell


@pytest.mark.slow
def test_torchrun_trains_a_gru_on_two_processes_as_one_process_does(tmp_path, capsys):
    train_file, valid_file = tmp_path / "train.txt", tmp_path / "valid.txt"
    train_file.write_text(TINY_TEXT)
    valid_file.write_text(TINY_TEXT[:600])
    flags = ["--preset", "cookbook", "--cell", "gru", "--rnn-size", "16", "--batch-size", "4", "--epochs", "1"]
    flags += ["--training-seq-len", "8", "--eval-every", "20", "--min-word-freq", "0", "--threads", "1", "--quiet"]
    flags += ["--train-file", str(train_file), "--valid-file", str(valid_file), "--learning-rate", "0.01"]
    assert main(["train", *flags, "--out", str(tmp_path / "one")]) == 0, capsys.readouterr().err
    two = subprocess.run(
        [*TORCHRUN, "-m", "lstm_core", "train", *flags, "--out", str(tmp_path / "two")],
        capture_output=True,
        text=True,
        timeout=240,
        env=torchrun_env(),
        cwd=tmp_path,
    )
    assert two.returncode == 0, two.stderr[-3000:]
    assert "2 processes (gloo" in two.stderr
    one, both = load_checkpoint(tmp_path / "one" / "last.pt"), load_checkpoint(tmp_path / "two" / "last.pt")
    assert both.config.cell == "gru" and both.carry is None  # the run's end: nothing carried
    losses = [[record["loss"] for record in c.history["steps"]] for c in (one, both)]
    assert len(losses[0]) == len(losses[1]) and max(abs(a - b) for a, b in zip(*losses, strict=True)) <= 1e-4
