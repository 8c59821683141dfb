"""The same training, checkpoints and sampling on a CUDA GPU (skipped on machines without one)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from lstm_core.config import preset
from lstm_core.evaluation.scoring import evaluate, score
from lstm_core.model.checkpoint import load_checkpoint
from lstm_core.model.network import LSTMLanguageModel, keep_mask
from lstm_core.sampling.decoding import generate
from lstm_core.sampling.options import SamplingOptions
from lstm_core.sampling.step import StepGenerator
from lstm_core.training.trainer import Trainer

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")


@pytest.mark.parametrize("output_layer", ["full", "adaptive"])
def test_training_on_the_gpu_learns_and_saves_a_cpu_loadable_checkpoint(
    tiny_config, tiny_dataset, tmp_path, output_layer
):
    config = tiny_config.replace(device="auto", precision="auto", output_layer=output_layer, epochs=4)
    trainer = Trainer(config, tiny_dataset, out_dir=tmp_path)
    assert trainer.device.type == "cuda"
    assert trainer.train_streams.device.type == "cuda"  # the id stream is copied once
    assert next(trainer.model.parameters()).device.type == "cuda"
    result = trainer.fit()
    losses = [entry["loss"] for entry in result.checkpoint.history["steps"]]
    assert all(math.isfinite(loss) for loss in losses)
    assert losses[-1] < math.log(len(tiny_dataset.vocab))
    loaded = load_checkpoint(tmp_path / "last.pt")
    assert all(t.device.type == "cpu" for t in loaded.weights.values())
    # The GPU model and its CPU copy give the same distribution (float32 evaluation on both).
    gpu_model, cpu_model = loaded.build_model("cuda"), loaded.build_model("cpu")
    ids = torch.randint(0, len(tiny_dataset.vocab), (2, 6))
    with torch.no_grad():
        on_gpu = gpu_model.log_probs(gpu_model(ids.cuda())[0]).cpu()
        on_cpu = cpu_model.log_probs(cpu_model(ids)[0])
    torch.testing.assert_close(on_gpu, on_cpu, rtol=1e-3, atol=1e-3)
    assert torch.allclose(on_gpu.exp().sum(-1), torch.ones(2, 6), atol=1e-4)


def test_sampling_and_scoring_on_the_gpu(tiny_config, tiny_dataset):
    checkpoint = Trainer(tiny_config.replace(device="cuda"), tiny_dataset).fit().checkpoint
    model = checkpoint.build_model("cuda")
    greedy = generate(model, tiny_dataset.vocab, "thou art more", 8, SamplingOptions())
    assert greedy.words == generate(model, tiny_dataset.vocab, "thou art more", 8, SamplingOptions()).words
    sampled = SamplingOptions(method="sample", temperature=0.9, top_k=10, seed=5)
    assert len(generate(model, tiny_dataset.vocab, "thou art more", 8, sampled).words) == 8
    stepper = StepGenerator(model, tiny_dataset.vocab, "shall i compare")
    candidates = stepper.distribution(SamplingOptions(method="sample"), n=5)
    assert math.isclose(sum(c.probability for c in candidates.candidates) + candidates.rest, 1.0, abs_tol=1e-4)
    assert math.isfinite(score(model, tiny_dataset.vocab, "shall i compare thee to a summer's day").perplexity)


# ---- several processes (torchrun) -------------------------------------------------------------

CUDA_LOSS_TOLERANCE = 2e-3
"""Looser than the CPU's 1e-4 (tests/test_distributed.py): on half the batch a GPU may pick other
kernels for cuDNN's LSTM, and its embedding gradients are summed by atomic adds in no fixed
order, so rounding differs more between one GPU and two (TF32 is off in both); a learning rate
1% off still moves these losses by 3e-2."""


def test_a_rank_on_the_gpu_keeps_its_collective_tensors_there(tiny_config, tiny_dataset, tmp_path):
    from lstm_core.training.distributed import DistributedContext

    # Rank 1 of 2 without a process group: its own side of every collective, on cuda:0.
    world = DistributedContext(rank=1, size=2, device=torch.device("cuda", 0))
    config = tiny_config.replace(device="cuda", dropout=0.2, num_layers=2)
    trainer = Trainer(config, tiny_dataset, out_dir=tmp_path, distributed=world)
    assert trainer.train_streams.device == torch.device("cuda", 0) and trainer.train_streams.size(0) == 2
    result = trainer.fit()
    assert result.reason == "finished" and math.isfinite(result.val_loss)
    assert list(tmp_path.iterdir()) == []  # not rank 0: nothing written
    assert result.checkpoint.carry is None and len(result.checkpoint.rank_rng_states) == 1


def test_two_cpu_ranks_on_a_gpu_machine_use_gloo_beside_nccl(tmp_path):
    """With CUDA present the process group carries both backends; a CPU run uses Gloo."""
    from tests.distributed_worker import launch, worker_config, worker_dataset
    from tests.test_distributed import assert_close

    started = launch(tmp_path, "cpu")
    assert started.returncode == 0, started.stderr[-3000:]
    report = json.loads((tmp_path / "rank-1.json").read_text())
    assert (report["device"], report["backend"]) == ("cpu", "gloo")
    single = Trainer(worker_config(), worker_dataset()).fit()
    assert_close(report["full"]["losses"], [s["loss"] for s in single.checkpoint.history["steps"]])


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA GPUs")
def test_two_gpus_train_with_nccl_like_one_gpu(tmp_path):
    from tests.distributed_worker import full_float32, launch, worker_config, worker_dataset
    from tests.test_distributed import assert_close

    started = launch(tmp_path, "cuda")
    assert started.returncode == 0, started.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank-{r}.json").read_text()) for r in range(2)]
    assert [(r["device"], r["backend"]) for r in ranks] == [("cuda:0", "nccl"), ("cuda:1", "nccl")]
    config, dataset = worker_config().replace(device="cuda"), worker_dataset()
    allowed = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    full_float32()  # as the worker does
    try:
        single = Trainer(config, dataset).fit()
        stopped = load_checkpoint(tmp_path / "stopped.pt")
        resumed = Trainer(config, dataset, resume=stopped).fit()  # two GPUs' checkpoint, one GPU
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = allowed
    expected = [s["loss"] for s in single.checkpoint.history["steps"]]
    for report in ranks:
        assert_close(report["full"]["losses"], expected, CUDA_LOSS_TOLERANCE)
        assert_close(
            report["full"]["val_losses"],
            [e["val_loss"] for e in single.checkpoint.history["evals"]],
            CUDA_LOSS_TOLERANCE,
        )
    # On a GPU the ranks agree on a stop where they read their losses back (an evaluation, or
    # every CUDA_SYNC_EVERY steps), so a stop asked at step 5 ends both at the same later step.
    assert ranks[0]["stopped"]["steps"] == ranks[1]["stopped"]["steps"] < 68
    assert ranks[0]["time_limit"] == ranks[1]["time_limit"] and ranks[0]["time_limit"]["reason"] == "time_limit"
    assert stopped.carry[0].shape == (1, 4, 24) and stopped.carry[0].device.type == "cpu"
    assert_close([s["loss"] for s in resumed.checkpoint.history["steps"]], expected, CUDA_LOSS_TOLERANCE)


# ---- the gpu preset: regularisers, weight averaging and a time budget on the GPU -------------------


def small_gpu_preset(**changes):
    """The gpu preset's recipe on a model and batch the tiny corpus can feed."""
    return preset(
        "gpu", rnn_size=32, batch_size=4, training_seq_len=8, epochs=3, train_minutes=0.0, eval_every=0
    ).replace(**changes)


def test_the_gpu_preset_trains_with_every_regulariser_and_saves_its_average(tiny_dataset, tmp_path):
    config = small_gpu_preset(epochs=20, learning_rate=0.01)  # dropouts of 0.6 learn slowly
    assert config.locked_dropout and config.embedding_dropout and config.weight_drop and config.num_layers == 2
    trainer = Trainer(config, tiny_dataset, out_dir=tmp_path)
    assert trainer.device.type == "cuda" and trainer.optimizer.defaults["fused"] is True
    result = trainer.fit()
    losses = [entry["loss"] for entry in result.checkpoint.history["steps"]]
    assert all(math.isfinite(loss) for loss in losses)
    assert sum(losses[-10:]) < 0.8 * sum(losses[:10])  # it learns, through all that noise
    last = load_checkpoint(tmp_path / "last.pt")  # the average, and the raw weights beside it
    assert last.progress["averaged_steps"] == trainer.total_steps - trainer.average_start_step
    assert last.training_weights is not None
    # The validation loss is the average's, and the CPU scores the saved average the same.
    cpu_loss, _ = evaluate(last.build_model("cpu"), tiny_dataset.valid, config.training_seq_len)
    assert cpu_loss == pytest.approx(result.val_loss, rel=2e-2)  # bf16 autocast on the GPU


def test_weight_drop_on_the_gpu_is_the_lstm_with_masked_recurrent_weights():
    config = small_gpu_preset(dropout=0.0, input_dropout=0.0, embedding_dropout=0.0)
    torch.manual_seed(0)
    model = LSTMLanguageModel(40, config).cuda().train()
    ids = torch.randint(0, 40, (3, 7), device="cuda")
    torch.manual_seed(1)
    hidden, _ = model(ids)
    torch.manual_seed(1)  # the same draws: one mask per layer, in layer order
    masked = [(w := getattr(model.lstm, f"weight_hh_l{layer}")) * keep_mask(w, w.shape, 0.5) for layer in range(2)]
    reference = LSTMLanguageModel(40, config.replace(weight_drop=0.0)).cuda()
    reference.load_state_dict(model.state_dict())
    with torch.no_grad():
        for layer, weight in enumerate(masked):
            getattr(reference.lstm, f"weight_hh_l{layer}").copy_(weight)
        expected, _ = reference.eval()(ids)
    torch.testing.assert_close(hidden, expected, rtol=1e-3, atol=1e-3)


def test_the_time_budget_ends_a_gpu_run_and_averages_its_second_half(tiny_dataset):
    config = small_gpu_preset(epochs=100_000, train_minutes=0.05)  # 3 seconds
    trainer = Trainer(config, tiny_dataset)
    result = trainer.fit()
    assert result.reason == "finished" and 0 < result.steps < trainer.total_steps
    assert result.elapsed_s >= 3.0
    averaged = result.checkpoint.progress["averaged_steps"]
    assert 0 < averaged < result.steps


@pytest.mark.parametrize("cell", ["gru", "rnn"])
def test_a_gru_or_plain_rnn_trains_with_weight_drop_on_the_gpu_and_samples_like_on_the_cpu(
    tiny_config, tiny_dataset, cell
):
    config = tiny_config.replace(device="cuda", cell=cell, num_layers=2, weight_drop=0.3, epochs=1)
    checkpoint = Trainer(config, tiny_dataset).fit().checkpoint  # cuDNN's GRU / RNN with dropped weights
    assert all(math.isfinite(entry["loss"]) for entry in checkpoint.history["steps"])
    gpu_model, cpu_model = checkpoint.build_model("cuda"), checkpoint.build_model("cpu")
    ids = torch.randint(0, len(tiny_dataset.vocab), (2, 6))
    with torch.no_grad():  # cuDNN's kernel and the CPU's give the same distribution (float32 on both)
        on_gpu = gpu_model.log_probs(gpu_model(ids.cuda())[0]).cpu()
        on_cpu = cpu_model.log_probs(cpu_model(ids)[0])
    torch.testing.assert_close(on_gpu, on_cpu, rtol=1e-4, atol=1e-4)
    assert len(generate(gpu_model, tiny_dataset.vocab, "thou art more", 8, SamplingOptions()).words) == 8
    assert math.isfinite(score(gpu_model, tiny_dataset.vocab, "shall i compare thee to a summer's day").perplexity)
