import dataclasses

import pytest

from lstm_core.config import PRESETS, RECIPE_PRIME_TEXTS, Config, ConfigError, preset


def test_defaults_are_the_recipes_settings():
    config = Config()
    assert (config.min_word_freq, config.rnn_size, config.embedding_dim) == (5, 128, 128)
    assert (config.epochs, config.batch_size, config.training_seq_len) == (10, 100, 50)
    assert (config.learning_rate, config.grad_clip, config.optimizer) == (0.001, 4.5, "adam")
    assert config.prime_texts == RECIPE_PRIME_TEXTS == ("thou art more", "to be or not to", "wherefore art thou")
    assert preset("cookbook") == config


def test_embedding_size_zero_means_rnn_size():
    assert Config(rnn_size=64).embedding_dim == 64
    assert Config(rnn_size=64, embedding_size=32).embedding_dim == 32


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"tie_weights": True, "embedding_size": 64}, "tie_weights needs embedding_size equal to rnn_size"),
        ({"dropout": 1.0}, "dropout must be in [0, 1)"),
        ({"dropout": -0.1}, "dropout must be in [0, 1)"),
        ({"input_dropout": 1.0}, "input_dropout must be in [0, 1)"),
        ({"rnn_size": 0}, "rnn_size must be a whole number of at least 1"),
        ({"batch_size": -3}, "batch_size must be a whole number of at least 1"),
        ({"epochs": 2.5}, "epochs must be a whole number"),
        ({"learning_rate": 0.0}, "learning_rate must be greater than 0"),
        ({"learning_rate": float("nan")}, "learning_rate must be a finite number"),
        ({"grad_clip": -1.0}, "grad_clip must be 0 (off) or positive"),
        ({"output_layer": "hierarchical"}, "output_layer must be one of full, adaptive"),
        ({"device": "tpu"}, "device must be auto, cpu, cuda, cuda:N or mps"),
        ({"valid_fraction": 0.5, "test_fraction": 0.45}, "leaves too little to train on"),
        ({"prime_texts": ()}, "prime_texts must be one or more non-empty texts"),
        ({"lr_decay": 0.0}, "lr_decay must be in (0, 1]"),
        ({"embedding_dropout": 1.0}, "embedding_dropout must be in [0, 1)"),
        ({"weight_drop": -0.2}, "weight_drop must be in [0, 1)"),
        ({"activation_reg": -1.0}, "activation_reg must be 0 (off) or positive"),
        ({"temporal_reg": float("inf")}, "temporal_reg must be a finite number"),
        ({"average_start": 1.0}, "average_start must be in [0, 1)"),
        ({"ema_decay": 1.0}, "ema_decay must be in (0, 1)"),
        ({"weight_average": "swa"}, "weight_average must be one of off, uniform, ema"),
    ],
)
def test_impossible_settings_are_explained(changes, message):
    with pytest.raises(ConfigError) as caught:
        Config(**changes)
    assert message in str(caught.value)


def test_all_problems_are_reported_at_once():
    with pytest.raises(ConfigError) as caught:
        Config(dropout=2.0, learning_rate=-1.0)
    assert "dropout" in str(caught.value) and "learning_rate" in str(caught.value)


def test_replace_validates_again():
    with pytest.raises(ConfigError):
        Config().replace(rnn_size=-1)


def test_plain_data_round_trip_and_unknown_keys():
    config = Config(rnn_size=64, prime_texts=("o romeo",), dropout=0.25)
    data = config.to_dict()
    assert data["prime_texts"] == ["o romeo"]  # plain JSON-friendly data
    assert Config.from_dict(data) == config
    with pytest.raises(ConfigError, match="unknown setting"):
        Config.from_dict({**data, "rnn_sise": 3})


def test_a_config_saved_before_input_dropout_existed_drops_its_inputs_as_it_trained():
    old = {name: value for name, value in Config(dropout=0.35).to_dict().items() if name != "input_dropout"}
    assert Config.from_dict(old).input_dropout == 0.35  # ``dropout`` was on the inputs too
    assert Config.from_dict({**old, "input_dropout": 0.1}).input_dropout == 0.1
    assert Config.from_dict({}).input_dropout == 0.0


def test_training_draws_masks_when_any_dropout_or_weight_drop_is_on():
    assert not Config().draws_masks
    for name in ("dropout", "input_dropout", "embedding_dropout", "weight_drop"):
        assert Config(**{name: 0.1}).draws_masks, name


def test_every_preset_is_valid_and_unknown_preset_is_explained():
    for name, config in PRESETS.items():
        assert isinstance(config, Config), name
    with pytest.raises(ConfigError, match="unknown preset 'fast'"):
        preset("fast")


def test_every_field_has_help_text():
    for field in dataclasses.fields(Config):
        assert field.metadata.get("help"), field.name
