"""The single source of hyperparameters: one frozen dataclass, its validation, and named presets.

The CLI builds its flags and the app its widgets from the fields' types and ``metadata`` (help
text, bounds, steps: :mod:`lstm_core.fields`), and checkpoints store :meth:`Config.to_dict`. Changes go
through :func:`dataclasses.replace`, which validates again.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from lstm_core.errors import InputError
from lstm_core.fields import meta

OutputLayer = Literal["full", "adaptive"]
Precision = Literal["fp32", "bf16", "auto"]
Optimizer = Literal["adam", "adamw", "sgd"]
Schedule = Literal["constant", "exponential", "cosine"]
WeightAverage = Literal["off", "uniform", "ema"]
Cell = Literal["lstm", "gru", "rnn"]
CELL_NAMES: dict[str, str] = {"lstm": "LSTM", "gru": "GRU", "rnn": "plain RNN"}
"""Each cell's name in prose ("a GRU 1 x 128")."""

RECIPE_PRIME_TEXTS = ("thou art more", "to be or not to", "wherefore art thou")

# The values the app's sliders offer for sizes (any whole number in range is valid).
_SIZES = (16, 32, 64, 96, 128, 192, 256, 384, 512, 768, 1024)
_BATCHES = (1, 2, 4, 8, 16, 20, 32, 50, 64, 100, 128, 200, 256, 512)


class ConfigError(InputError):
    """A setting, or a combination of settings, that cannot work. The message says which and why.

    ``problems`` lists each reason separately, so a UI can show them one per line.
    """

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems if problems is not None else [message]


@dataclass(frozen=True)
class Config:
    """Every hyperparameter of a run. Defaults are the cookbook recipe's values."""

    # --- data ---
    min_word_freq: int = field(default=5, metadata=meta("keep words seen MORE than this many times", 0, 50))
    valid_fraction: float = field(default=0.05, metadata=meta("share of the text held out for validation", 0.01, 0.3))
    test_fraction: float = field(default=0.05, metadata=meta("share of the text held out for the final test", 0.0, 0.3))
    # --- model ---
    cell: Cell = field(
        default="lstm",
        metadata=meta(
            "the recurrent cell: lstm (three gates and a memory cell that is added to), gru (two gates, the "
            "output is the memory) or rnn (a plain tanh layer without gates: the one whose gradient vanishes)",
            label="cell",
            choice_labels={"lstm": "LSTM", "gru": "GRU", "rnn": "plain RNN (tanh)"},
        ),
    )
    rnn_size: int = field(
        default=128,
        metadata=meta(
            "hidden units per layer of the recurrent cell", 16, 1024, values=_SIZES, label="rnn_size (units per layer)"
        ),
    )
    embedding_size: int = field(
        default=0,
        metadata=meta(
            "word-vector size (0 means the same as rnn_size)",
            0,
            1024,
            values=(0, *_SIZES),
            label="embedding_size (0 = rnn_size)",
        ),
    )
    num_layers: int = field(default=1, metadata=meta("stacked recurrent layers", 1, 4))
    dropout: float = field(
        default=0.0,
        metadata=meta(
            "dropout on the recurrent layers' outputs: between layers and before the softmax", 0.0, 0.8, step=0.05
        ),
    )
    input_dropout: float = field(
        default=0.0,
        metadata=meta("dropout on the word vectors entering the recurrent layers (their inputs)", 0.0, 0.8, step=0.05),
    )
    embedding_dropout: float = field(
        default=0.0,
        metadata=meta(
            "drop whole words: a dropped word's vector is zero wherever it appears in the window", 0.0, 0.5, step=0.05
        ),
    )
    locked_dropout: bool = field(
        default=False,
        metadata=meta(
            "one dropout mask per stream for the whole window (variational dropout) instead of a new one per word",
            label="locked_dropout (one mask per window)",
        ),
    )
    weight_drop: float = field(
        default=0.0,
        metadata=meta(
            "DropConnect on the recurrent hidden-to-hidden weights: this share of them is zero for a whole window",
            0.0,
            0.8,
            step=0.05,
        ),
    )
    activation_reg: float = field(
        default=0.0,
        metadata=meta(
            "activation regularisation: this times the mean square of the recurrent layers' (dropped) outputs is "
            "added to the loss, which keeps them small",
            0.0,
            4.0,
            step=0.5,
        ),
    )
    temporal_reg: float = field(
        default=0.0,
        metadata=meta(
            "temporal activation regularisation: this times the mean square of the change of the recurrent outputs "
            "from one word to the next is added to the loss, which keeps the state from jumping",
            0.0,
            4.0,
            step=0.5,
        ),
    )
    tie_weights: bool = field(
        default=False,
        metadata=meta(
            "share the embedding matrix with the output layer",
            label="tie_weights (share embedding and output matrices)",
        ),
    )
    output_layer: OutputLayer = field(
        default="full",
        metadata=meta(
            "full softmax (the recipe's) or adaptive softmax (frequent words get a cheap path: several times faster "
            "on big vocabularies, same kind of model)",
            label="output layer",
        ),
    )
    # --- training ---
    epochs: int = field(default=10, metadata=meta("passes over the training text", 1, 100))
    train_minutes: float = field(
        default=0.0,
        metadata=meta(
            "train for this many minutes (0 = for the epochs): the cosine schedule and weight averaging follow "
            "the share of the time used, and the run ends when it is up, the epochs only capping it. The steps "
            "then depend on the machine's speed, so such a run does not repeat step for step",
            0.0,
            60.0,
            step=0.5,
            label="train_minutes (0 = by epochs)",
        ),
    )
    batch_size: int = field(
        default=100,
        metadata=meta("parallel text streams per step", 1, 512, values=_BATCHES, label="batch_size (parallel streams)"),
    )
    training_seq_len: int = field(
        default=50,
        metadata=meta(
            "words per stream per step (truncated BPTT length)", 2, 400, label="training_seq_len (words per step)"
        ),
    )
    learning_rate: float = field(
        default=0.001, metadata=meta("optimizer step size", 1e-5, 1.0, log=True, label="learning_rate (log scale)")
    )
    optimizer: Optimizer = field(
        default="adam", metadata=meta("adam (the recipe's), adamw (Adam with decoupled weight decay) or sgd")
    )
    weight_decay: float = field(
        default=0.0,
        metadata=meta(
            "weight decay: with adamw every step shrinks each weight by learning_rate x this (decoupled); with "
            "adam and sgd it is an L2 penalty added to the gradients instead",
            0.0,
            0.5,
            values=(0.0, 0.0001, 0.001, 0.01, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5),
        ),
    )
    lr_schedule: Schedule = field(
        default="constant",
        metadata=meta(
            "constant, exponential (x lr_decay per epoch), or cosine to 10% at the end", label="learning-rate schedule"
        ),
    )
    lr_decay: float = field(
        default=1.0, metadata=meta("learning-rate factor per epoch for the exponential schedule", 0.1, 1.0)
    )
    grad_clip: float = field(
        default=4.5,
        metadata=meta(
            "clip the global gradient norm to this (0 = off)", 0.0, 20.0, step=0.5, label="grad_clip (0 = off)"
        ),
    )
    weight_average: WeightAverage = field(
        default="off",
        metadata=meta(
            "validate and save an average of the weights over the last part of the run: off, uniform (every "
            "step's weights count the same) or ema (an exponential moving average)",
            label="weight averaging",
        ),
    )
    average_start: float = field(
        default=0.5,
        metadata=meta("share of the run's steps after which the weights are averaged", 0.0, 0.95, step=0.05),
    )
    ema_decay: float = field(
        default=0.999,
        metadata=meta("how much of the average each step keeps (ema only)", 0.9, 0.9999, step=0.0001),
    )
    precision: Precision = field(
        default="fp32", metadata=meta("fp32, bf16 (mixed precision where the hardware has it) or auto")
    )
    device: str = field(default="auto", metadata=meta("auto (cuda, then mps, then cpu), cpu, cuda, cuda:1 or mps"))
    seed: int = field(
        default=42, metadata=meta("random seed: same config + same seed = same run on the CPU", 0, 2**31 - 1)
    )
    # --- monitoring ---
    eval_every: int = field(
        default=50,
        metadata=meta(
            "validate every this many steps, and at the run's end (0 = at each epoch's end)",
            0,
            10_000,
            step=10,
            label="eval_every (steps; 0 = each epoch)",
        ),
    )
    save_every: int = field(
        default=500,
        metadata=meta(
            "save last.pt every this many steps, besides at each evaluation and the run's end (0 = only there)",
            0,
            100_000,
        ),
    )
    prime_texts: tuple[str, ...] = field(
        default=RECIPE_PRIME_TEXTS, metadata=meta("texts to continue at each evaluation")
    )
    sample_length: int = field(
        default=10, metadata=meta("words generated for each prime text at an evaluation", 1, 100)
    )

    def __post_init__(self) -> None:
        # Lists from JSON or the CLI become tuples, so the config stays hashable and immutable.
        object.__setattr__(self, "prime_texts", tuple(self.prime_texts))
        problems = self.problems()
        if problems:
            raise ConfigError("invalid settings: " + "; ".join(problems), problems)

    @property
    def embedding_dim(self) -> int:
        """The embedding size actually used (``embedding_size``, or ``rnn_size`` when that is 0)."""
        return self.embedding_size or self.rnn_size

    @property
    def draws_masks(self) -> bool:
        """Whether training draws random masks (some dropout or weight drop is on)."""
        return any(getattr(self, name) > 0 for name in ("dropout", "input_dropout", "embedding_dropout", "weight_drop"))

    def problems(self) -> list[str]:
        """Every reason this config cannot work, in words a user understands (empty if none)."""
        out: list[str] = []
        for name in ("rnn_size", "num_layers", "epochs", "batch_size", "training_seq_len", "sample_length"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                out.append(f"{name} must be a whole number of at least 1, got {value!r}")
        for name in ("min_word_freq", "embedding_size", "eval_every", "save_every", "seed"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                out.append(f"{name} must be a whole number of 0 or more, got {value!r}")
        for name in (
            "learning_rate",
            "grad_clip",
            "weight_decay",
            "train_minutes",
            "dropout",
            "input_dropout",
            "embedding_dropout",
            "weight_drop",
            "activation_reg",
            "temporal_reg",
            "average_start",
            "ema_decay",
            "lr_decay",
            "valid_fraction",
            "test_fraction",
        ):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                out.append(f"{name} must be a finite number, got {value!r}")
        if out:
            return out
        if self.learning_rate <= 0:
            out.append(f"learning_rate must be greater than 0, got {self.learning_rate}")
        for name in ("grad_clip", "activation_reg", "temporal_reg"):
            if getattr(self, name) < 0:
                out.append(f"{name} must be 0 (off) or positive, got {getattr(self, name)}")
        if self.weight_decay < 0:
            out.append(f"weight_decay must be 0 or positive, got {self.weight_decay}")
        if self.train_minutes < 0:
            out.append(f"train_minutes must be 0 (train for the epochs) or positive, got {self.train_minutes}")
        for name in ("dropout", "input_dropout", "embedding_dropout", "weight_drop", "average_start"):
            if not 0 <= getattr(self, name) < 1:
                out.append(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if not 0 < self.ema_decay < 1:
            out.append(f"ema_decay must be in (0, 1), got {self.ema_decay}")
        if not 0 < self.lr_decay <= 1:
            out.append(f"lr_decay must be in (0, 1], got {self.lr_decay}")
        if not 0 < self.valid_fraction < 1 or not 0 <= self.test_fraction < 1:
            out.append("valid_fraction must be in (0, 1) and test_fraction in [0, 1)")
        elif self.valid_fraction + self.test_fraction >= 0.9:
            out.append(
                f"valid_fraction + test_fraction = {self.valid_fraction + self.test_fraction:.2f} leaves too little "
                "to train on; keep their sum below 0.9"
            )
        if self.tie_weights and self.embedding_dim != self.rnn_size:
            out.append(
                f"tie_weights needs embedding_size equal to rnn_size (got {self.embedding_dim} and {self.rnn_size}); "
                "set embedding_size to 0 or to rnn_size, or turn tie_weights off"
            )
        for name in ("cell", "output_layer", "precision", "optimizer", "lr_schedule", "weight_average"):
            allowed = get_args(_FIELD_TYPES[name])
            if getattr(self, name) not in allowed:
                out.append(f"{name} must be one of {', '.join(allowed)}; got {getattr(self, name)!r}")
        if not (self.device == "auto" or self.device in ("cpu", "mps", "cuda") or self.device.startswith("cuda:")):
            out.append(f"device must be auto, cpu, cuda, cuda:N or mps; got {self.device!r}")
        if not self.prime_texts or not all(isinstance(p, str) and p.strip() for p in self.prime_texts):
            out.append("prime_texts must be one or more non-empty texts")
        return out

    @property
    def split_fractions(self) -> tuple[float, float, float]:
        train = 1.0 - self.valid_fraction - self.test_fraction
        return (train, self.valid_fraction, self.test_fraction)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["prime_texts"] = list(self.prime_texts)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Config:
        """Build from plain data; unknown keys are an error (they usually mean a typo)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown setting(s): {', '.join(unknown)}")
        if "input_dropout" not in data and "dropout" in data:
            # Saved before the inputs had a dropout of their own: ``dropout`` was on them too.
            data = {**data, "input_dropout": data["dropout"]}
        return cls(**data)

    def replace(self, **changes: Any) -> Config:
        return dataclasses.replace(self, **changes)


_FIELD_TYPES = {
    "cell": Cell,
    "output_layer": OutputLayer,
    "precision": Precision,
    "optimizer": Optimizer,
    "lr_schedule": Schedule,
    "weight_average": WeightAverage,
}

PRESETS: dict[str, Config] = {
    # The cookbook recipe exactly: 1 x 128 LSTM, 128-d embeddings, full softmax, Adam 0.001,
    # batch 100 x 50 words, gradient norm clipped at 4.5, 10 epochs.
    "cookbook": Config(),
    # The recipe's model made fast (bench/RESULTS.md): the adaptive softmax and bf16 where the
    # hardware has it make each step several times cheaper, and a higher learning rate with more,
    # smaller steps learns more per word read.
    "quick": Config(
        output_layer="adaptive",
        precision="auto",
        learning_rate=0.005,
        batch_size=64,
        training_seq_len=35,
        epochs=6,
        eval_every=200,
    ),
    # The best model for about ten minutes of a small CPU (bench/RESULTS.md): one wide layer whose
    # output layer shares the embedding matrix (tied weights), locked dropout (one mask per window:
    # it regularises better, and drawing per-element masks took 13% of a step), more of it on the
    # LSTM's inputs than on its outputs, the activation penalties AR and TAR, AdamW's decoupled
    # weight decay, batches of 128 (more words a second than 64) at a higher learning rate, a
    # cosine learning-rate decay, and the average of the second half's weights as the model.
    # Weight drop (DropConnect on the recurrent weights) paid before the weight decay and the
    # input dropout came, and no longer does. 22 epochs took 8.4 minutes with 2 threads on 2026-11-28
    # and did not fit ten minutes on 2026-12-07, a day the same machine ran at half that speed;
    # for a run cut at about 14 epochs a learning rate of 0.006 beat 0.004 on every fold's
    # validation plays (0.009 was behind 0.006 from its first evaluations).
    "default": Config(
        rnn_size=512,
        tie_weights=True,
        dropout=0.35,
        input_dropout=0.65,
        locked_dropout=True,
        activation_reg=2.0,
        temporal_reg=1.0,
        output_layer="adaptive",
        precision="auto",
        learning_rate=0.006,
        optimizer="adamw",
        weight_decay=0.15,
        lr_schedule="cosine",
        batch_size=128,
        training_seq_len=35,
        epochs=22,
        weight_average="uniform",
        average_start=0.5,
        eval_every=250,
    ),
    # Ten minutes of one CUDA GPU, planned by time (the steps a GPU makes in ten minutes differ
    # tenfold between cards). A GPU reads the plays' 724,000 training words in a second or two, so
    # ten minutes are hundreds of epochs: what limits the model is overfitting, not computation
    # (2 x 1024 and 1 x 1500 with dropout alone were past their best within 2.5 minutes). So: a
    # bigger model, every regulariser (locked dropout on its inputs and outputs, whole words
    # dropped, DropConnect on the recurrent weights) and the average of the second half's weights.
    # On an H200 (bench/RESULTS.md) dropouts of 0.5 (0.1 for whole words) still let the model
    # overfit within 5,000 steps; with 0.6 (0.15) it was still improving at 10,000 and scored
    # 151.0 on the held-out plays against 161.5, in the one comparison made (3.4 minutes).
    # The full softmax, because on a GPU the adaptive one saves nothing worth its host reads.
    "gpu": Config(
        rnn_size=1024,
        num_layers=2,
        tie_weights=True,
        dropout=0.6,
        input_dropout=0.6,
        locked_dropout=True,
        embedding_dropout=0.15,
        weight_drop=0.6,
        output_layer="full",
        precision="auto",
        learning_rate=0.002,
        lr_schedule="cosine",
        batch_size=64,
        training_seq_len=70,
        epochs=1000,
        train_minutes=10.0,
        weight_average="uniform",
        average_start=0.5,
        eval_every=5000,
    ),
}
PRESET_HELP: dict[str, str] = {
    "cookbook": "the original recipe's settings, unchanged (10 epochs: about 13 minutes on a 2-core CPU)",
    "quick": "the recipe's model trained fast: as good as the whole recipe after half a minute on a 2-core CPU",
    "default": "the best model for about ten minutes of a 2-core CPU: one wide layer, tied weights, dropout, "
    "activation penalties, weight decay, weight averaging",
    "gpu": "ten minutes of a CUDA GPU: 2 x 1024, every regulariser, weight averaging (too big for a CPU)",
}


def preset(name: str, **changes: Any) -> Config:
    """A named preset, optionally with some settings changed."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name].replace(**changes) if changes else PRESETS[name]
