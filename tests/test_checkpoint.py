import io

import pytest
import torch

from lstm_core.model.checkpoint import VERSION, CheckpointError, load_checkpoint, save_checkpoint
from lstm_core.training.trainer import Trainer


@pytest.fixture
def checkpoint(tiny_config, tiny_dataset):
    trainer = Trainer(tiny_config.replace(epochs=1, eval_every=0), tiny_dataset)
    return trainer.fit().checkpoint


def test_round_trip_keeps_everything(checkpoint, tmp_path):
    path = save_checkpoint(checkpoint, tmp_path / "model.pt")
    loaded = load_checkpoint(path)
    assert loaded.config == checkpoint.config
    assert loaded.vocab == checkpoint.vocab
    assert loaded.progress == checkpoint.progress
    assert loaded.history == checkpoint.history
    assert loaded.optimizer is not None and loaded.optimizer["param_groups"] == checkpoint.optimizer["param_groups"]
    ids = torch.randint(0, len(checkpoint.vocab), (2, 6))
    with torch.no_grad():
        expected = checkpoint.build_model().log_probs(checkpoint.build_model()(ids)[0])
        got = loaded.build_model().log_probs(loaded.build_model()(ids)[0])
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_bytes_round_trip_and_model_only_export(checkpoint):
    small = checkpoint.without_training_state()
    assert small.optimizer is None and small.carry is None
    data = small.to_bytes()
    assert len(data) < len(checkpoint.to_bytes())
    loaded = load_checkpoint(data)
    assert loaded.optimizer is None and loaded.vocab == checkpoint.vocab


@pytest.mark.parametrize("output_layer", ["full", "adaptive"])
def test_tied_weights_are_stored_once_also_in_half_precision(tiny_config, tiny_dataset, output_layer):
    config = tiny_config.replace(epochs=1, eval_every=0, tie_weights=True, output_layer=output_layer)
    checkpoint = Trainer(config, tiny_dataset).fit().checkpoint
    full, half = checkpoint.without_training_state(), checkpoint.without_training_state(half=True)
    output = "adaptive.weight" if output_layer == "adaptive" else "decoder.weight"
    stored = []
    for exported in (full, half):
        weights = load_checkpoint(exported.to_bytes()).weights
        assert weights[output].data_ptr() == weights["embedding.weight"].data_ptr()
        storages = {w.untyped_storage().data_ptr(): w.untyped_storage().nbytes() for w in weights.values()}
        stored.append(sum(storages.values()))
    assert stored[1] == stored[0] // 2  # every weight in half the bytes, the tied matrix once
    ids = torch.randint(0, len(checkpoint.vocab), (2, 6))
    with torch.no_grad():
        expected = checkpoint.build_model().log_probs(checkpoint.build_model()(ids)[0])
        loaded = load_checkpoint(half.to_bytes()).build_model()
        got = loaded.log_probs(loaded(ids)[0])
    torch.testing.assert_close(got, expected, rtol=0, atol=2e-2)


def test_the_file_holds_only_plain_data(checkpoint, tmp_path):
    path = save_checkpoint(checkpoint, tmp_path / "model.pt")
    data = torch.load(path, weights_only=True)  # would raise on any pickled object
    assert isinstance(data["config"], dict) and isinstance(data["vocab"]["words"], list)


def test_a_crash_during_save_leaves_the_previous_checkpoint_intact(checkpoint, tmp_path, monkeypatch):
    path = save_checkpoint(checkpoint, tmp_path / "last.pt")
    before = path.read_bytes()

    def crash(obj, file):
        file.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(checkpoint, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match=r"cannot load checkpoint .*nope\.pt: the file does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(CheckpointError, match="a folder"):
        load_checkpoint(tmp_path)


def test_truncated_file(checkpoint, tmp_path):
    data = checkpoint.to_bytes()
    path = tmp_path / "cut.pt"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"cut\.pt: the file is truncated or corrupt"):
        load_checkpoint(path)


def test_corrupt_and_foreign_bytes(tmp_path):
    for name, data in [("noise.pt", bytes(range(256)) * 40), ("notes.pt", b"just some text\n"), ("empty.pt", b"")]:
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(CheckpointError, match=name.replace(".", r"\.") + ": the file is truncated or corrupt"):
            load_checkpoint(path)


def test_a_torch_file_that_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"weight": torch.zeros(3)}, path)
    with pytest.raises(CheckpointError, match="not an LSTM Playhouse checkpoint"):
        load_checkpoint(path)


def test_a_pickled_object_is_refused_without_running_it(tmp_path):
    path = tmp_path / "module.pt"
    torch.save(torch.nn.Linear(2, 2), path)  # a pickled module, as torch.save(model) would write
    with pytest.raises(CheckpointError, match="not plain data"):
        load_checkpoint(path)


def test_an_incompatible_format_version(checkpoint, tmp_path):
    plain = checkpoint.to_plain()
    plain["version"] = VERSION + 1
    path = tmp_path / "future.pt"
    torch.save(plain, path)
    with pytest.raises(CheckpointError, match=f"future\\.pt: it is format version {VERSION + 1}"):
        load_checkpoint(path)


def test_inconsistent_contents(checkpoint, tmp_path):
    plain = checkpoint.to_plain()
    plain["config"]["rnn_size"] = 48  # the weights are for 24 units
    buffer = io.BytesIO()
    torch.save(plain, buffer)
    with pytest.raises(CheckpointError, match="the weights do not fit the model its config describes"):
        load_checkpoint(buffer.getvalue(), name="odd.pt")
    plain = checkpoint.to_plain()
    del plain["vocab"]
    buffer = io.BytesIO()
    torch.save(plain, buffer)
    with pytest.raises(CheckpointError, match=r"odd\.pt: its contents are incomplete"):
        load_checkpoint(buffer.getvalue(), name="odd.pt")


def test_an_averaging_run_keeps_its_raw_weights_beside_the_average(tiny_config, tiny_dataset, tmp_path):
    config = tiny_config.replace(epochs=1, eval_every=0, weight_average="uniform", average_start=0.5)
    checkpoint = Trainer(config, tiny_dataset).fit().checkpoint
    assert checkpoint.training_weights is not None and checkpoint.progress["averaged_steps"] > 1
    loaded = load_checkpoint(save_checkpoint(checkpoint, tmp_path / "averaged.pt"))
    for name, tensor in checkpoint.training_weights.items():
        assert torch.equal(loaded.training_weights[name], tensor)
    assert not torch.equal(loaded.weights["embedding.weight"], loaded.training_weights["embedding.weight"])
    exported = load_checkpoint(checkpoint.without_training_state(half=True).to_bytes())
    assert exported.training_weights is None  # the model alone
    torch.testing.assert_close(
        exported.weights["embedding.weight"].float(), checkpoint.weights["embedding.weight"], atol=1e-3, rtol=1e-3
    )
