"""The same training, checkpoints and sampling on a CUDA GPU (skipped on machines without one)."""

from __future__ import annotations

import math

import pytest
import torch

from lstm_core.checkpoint import load_checkpoint
from lstm_core.sampling import SamplingOptions, StepGenerator, generate, score
from lstm_core.trainer import Trainer

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
