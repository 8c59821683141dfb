import math
import threading

import pytest
import torch

from lstm_core.config import ConfigError
from lstm_core.data.dataset import prepare
from lstm_core.evaluation.scoring import evaluate
from lstm_core.model.checkpoint import load_checkpoint
from lstm_core.training.events import CheckpointEvent, EndEvent, EvalEvent, SampleEvent, StepEvent
from lstm_core.training.schedule import learning_rate_at
from lstm_core.training.trainer import Trainer, TrainingDiverged


def losses(events):
    return [e.loss for e in events if isinstance(e, StepEvent)]


def run(config, dataset, **kwargs):
    events = []
    trainer = Trainer(config, dataset, callback=events.append, **kwargs)
    return trainer, trainer.fit(), events


@pytest.mark.slow
def test_the_model_learns_a_tiny_corpus_far_below_the_uniform_baseline(tiny_config, tiny_dataset):
    config = tiny_config.replace(epochs=8, eval_every=0)
    _, result, events = run(config, tiny_dataset)
    uniform = math.log(len(tiny_dataset.vocab))
    assert result.reason == "finished"
    assert losses(events)[0] > 0.9 * uniform
    assert losses(events)[-1] < 0.25 * uniform
    # The sonnet repeats, so the held-out block is predictable too.
    assert result.val_loss < 0.25 * uniform
    assert result.perplexity == pytest.approx(math.exp(result.val_loss))


@pytest.mark.slow
def test_same_config_and_seed_give_the_same_losses(tiny_config, tiny_dataset):
    first = losses(run(tiny_config, tiny_dataset)[2])
    second = losses(run(tiny_config, tiny_dataset)[2])
    assert first == second
    other_seed = losses(run(tiny_config.replace(seed=4), tiny_dataset)[2])
    assert other_seed != first


def test_dropout_runs_are_deterministic_too(tiny_config, tiny_dataset):
    config = tiny_config.replace(dropout=0.3, num_layers=2, epochs=1)
    assert losses(run(config, tiny_dataset)[2]) == losses(run(config, tiny_dataset)[2])


@pytest.mark.slow
@pytest.mark.parametrize("stop_at", [5, 34, 40])  # mid-epoch, at the epoch end, early in epoch 2
def test_resume_gives_the_same_losses_as_an_uninterrupted_run(tiny_config, tiny_dataset, tmp_path, stop_at):
    config = tiny_config.replace(dropout=0.2, num_layers=2)  # dropout: the RNG state must resume too
    _, full_result, full_events = run(config, tiny_dataset)

    events = []
    trainer = Trainer(config, tiny_dataset, out_dir=tmp_path, callback=events.append)

    def stop(event):
        events.append(event)
        if isinstance(event, StepEvent) and event.step == stop_at:
            trainer.request_stop()

    trainer.callback = stop
    assert trainer.fit().reason == "stopped"
    checkpoint = load_checkpoint(tmp_path / "last.pt")
    assert checkpoint.step == stop_at

    resumed_events = []
    resumed = Trainer(config, tiny_dataset, callback=resumed_events.append, resume=checkpoint)
    result = resumed.fit()
    assert result.reason == "finished"
    assert losses(resumed_events) == losses(full_events)[stop_at:]
    assert losses(events) == losses(full_events)[:stop_at]
    # The history continues: the whole run's step losses, in order, once each.
    assert [s["loss"] for s in result.checkpoint.history["steps"]] == losses(full_events)
    assert result.steps == full_result.steps
    for name, tensor in full_result.checkpoint.weights.items():
        torch.testing.assert_close(result.checkpoint.weights[name], tensor, rtol=0, atol=0)


def test_resume_may_extend_the_epochs_but_not_change_the_model(tiny_config, tiny_dataset):
    _, result, _ = run(tiny_config.replace(epochs=1, eval_every=0), tiny_dataset)
    longer = Trainer(tiny_config.replace(epochs=2, eval_every=0), tiny_dataset, resume=result.checkpoint)
    assert longer.step == result.steps and longer.total_steps == 2 * result.steps
    assert longer.fit().steps == 2 * result.steps
    with pytest.raises(ConfigError, match="cannot change rnn_size when resuming"):
        Trainer(tiny_config.replace(epochs=1, eval_every=0, rnn_size=32), tiny_dataset, resume=result.checkpoint)


def test_resume_on_a_different_text_is_refused(tiny_config, tiny_dataset):
    _, result, _ = run(tiny_config.replace(epochs=1), tiny_dataset)
    other = prepare("to be or not to be that is the question " * 60, 0, (0.8, 0.1, 0.1))
    with pytest.raises(ConfigError, match="different vocabulary"):
        Trainer(tiny_config.replace(epochs=1), other, resume=result.checkpoint)


def test_a_model_only_checkpoint_cannot_be_resumed(tiny_config, tiny_dataset):
    trainer, _, _ = run(tiny_config.replace(epochs=1), tiny_dataset)
    with pytest.raises(ConfigError, match="no optimizer state"):
        Trainer(tiny_config.replace(epochs=1), tiny_dataset, resume=trainer.checkpoint(training_state=False))


def test_stop_from_another_thread_ends_cleanly_with_a_valid_checkpoint(tiny_config, tiny_dataset, tmp_path):
    config = tiny_config.replace(epochs=1000, eval_every=0)
    started = threading.Event()
    trainer = Trainer(config, tiny_dataset, out_dir=tmp_path, callback=lambda e: started.set())
    results = []
    thread = threading.Thread(target=lambda: results.append(trainer.fit()))
    thread.start()
    assert started.wait(30)
    trainer.request_stop()
    thread.join(30)
    assert not thread.is_alive()
    (result,) = results
    assert result.reason == "stopped" and 0 < result.steps < trainer.total_steps
    checkpoint = load_checkpoint(tmp_path / "last.pt")
    assert checkpoint.step == result.steps
    # A stopped run still reports where it stands.
    assert checkpoint.history["evals"][-1]["step"] == result.steps
    assert (tmp_path / "best.pt").exists()


def test_time_limit_stops_cleanly(tiny_config, tiny_dataset):
    _, result, events = run(tiny_config, tiny_dataset, time_limit_s=0.0)
    assert result.reason == "time_limit" and result.steps == 1
    assert isinstance(events[-1], EndEvent) and events[-1].reason == "time_limit"


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_last_checkpoint(tiny_config, tiny_dataset, tmp_path):
    config = tiny_config.replace(save_every=2, eval_every=2)
    trainer = Trainer(config, tiny_dataset, out_dir=tmp_path)
    real_loss = trainer.model.loss

    def loss(hidden, targets):
        value = real_loss(hidden, targets)
        return value * float("nan") if trainer.step == 6 else value

    trainer.model.loss = loss
    with pytest.raises(TrainingDiverged) as caught:
        trainer.fit()
    message = str(caught.value)
    assert "the loss became nan at step 7" in message
    assert "lower learning rate" in message and str(tmp_path) in message
    checkpoint = load_checkpoint(tmp_path / "last.pt")
    assert checkpoint.step == 6
    assert all(torch.isfinite(t).all() for t in checkpoint.weights.values())


def test_events_report_steps_evaluations_samples_and_checkpoints(tiny_config, tiny_dataset, tmp_path):
    config = tiny_config.replace(save_every=20)
    trainer, result, events = run(config, tiny_dataset, out_dir=tmp_path)
    steps = [e for e in events if isinstance(e, StepEvent)]
    assert [e.step for e in steps] == list(range(1, trainer.total_steps + 1))
    assert all(e.tokens_per_s > 0 and e.eta_s >= 0 and e.total_steps == trainer.total_steps for e in steps)
    assert steps[-1].eta_s == 0
    evals = [e for e in events if isinstance(e, EvalEvent)]
    # Every eval_every steps and at the end; not at the first epoch's end (step 34) as well.
    assert trainer.total_steps == 68 and trainer.steps_per_epoch == 34
    assert [e.step for e in evals] == [10, 20, 30, 40, 50, 60, 68]
    assert evals[0].best and all(e.perplexity == pytest.approx(math.exp(e.val_loss)) for e in evals)
    samples = [e for e in events if isinstance(e, SampleEvent)]
    assert len(samples) == len(evals)
    for event in samples:
        assert list(event.samples) == list(config.prime_texts)
        for prime, text in event.samples.items():
            assert text.startswith(prime) and len(text.split()) == len(prime.split()) + config.sample_length
    saved = [e for e in events if isinstance(e, CheckpointEvent)]
    assert {e.path for e in saved} == {str(tmp_path / "last.pt"), str(tmp_path / "best.pt")}
    assert isinstance(events[-1], EndEvent) and events[-1].reason == "finished"
    assert result.best_val_loss == min(e.val_loss for e in evals)
    assert load_checkpoint(tmp_path / "best.pt").progress["last_val_loss"] == result.best_val_loss


def test_evaluate_is_the_mean_loss_per_token(tiny_config, tiny_dataset):
    trainer = Trainer(tiny_config, tiny_dataset)
    ids = tiny_dataset.valid
    loss, count = evaluate(trainer.model, ids, seq_len=1000, batch_size=1)
    assert count == ids.numel() - 1
    with torch.no_grad():
        hidden, _ = trainer.model.eval()(ids[:-1].unsqueeze(0))
        expected = trainer.model.token_nll(hidden, ids[1:].unsqueeze(0)).mean()
    assert loss == pytest.approx(float(expected), rel=1e-5)
    assert trainer.model.training is False  # left as it was
    with pytest.raises(ValueError, match="at least 2 words"):
        evaluate(trainer.model, ids[:1], seq_len=8)


def test_a_text_too_short_for_the_batch_says_what_the_minimum_is(tiny_config, tiny_dataset):
    with pytest.raises(ValueError, match=r"at least batch_size x \(seq_len \+ 1\) = 25,500 words"):
        Trainer(tiny_config.replace(batch_size=500, training_seq_len=50), tiny_dataset)


def test_snapshot_is_a_copy_that_training_does_not_change(tiny_config, tiny_dataset):
    trainer = Trainer(tiny_config.replace(epochs=1), tiny_dataset)
    snapshot = trainer.snapshot()
    before = {k: v.clone() for k, v in snapshot.state_dict().items()}
    trainer.fit()
    assert not snapshot.training
    for name, tensor in snapshot.state_dict().items():
        assert torch.equal(tensor, before[name])
    assert not torch.equal(trainer.model.embedding.weight.detach(), before["embedding.weight"])


def test_learning_rate_schedules(tiny_config):
    constant = tiny_config
    assert learning_rate_at(constant, 57, 10, 100) == constant.learning_rate
    exponential = tiny_config.replace(lr_schedule="exponential", lr_decay=0.5)
    assert learning_rate_at(exponential, 9, 10, 100) == pytest.approx(0.01)
    assert learning_rate_at(exponential, 25, 10, 100) == pytest.approx(0.0025)
    cosine = tiny_config.replace(lr_schedule="cosine")
    assert learning_rate_at(cosine, 0, 10, 100) == pytest.approx(0.01)
    assert learning_rate_at(cosine, 50, 10, 100) == pytest.approx(0.0055)
    assert learning_rate_at(cosine, 100, 10, 100) == pytest.approx(0.001)


@pytest.mark.parametrize(
    "changes", [{"output_layer": "adaptive"}, {"precision": "bf16"}, {"optimizer": "sgd", "learning_rate": 10.0}]
)
def test_other_output_layers_precisions_and_optimizers_learn(tiny_config, tiny_dataset, changes):
    config = tiny_config.replace(epochs=4, eval_every=0, **changes)
    _, result, events = run(config, tiny_dataset)
    assert losses(events)[-1] < 0.6 * losses(events)[0]
    assert math.isfinite(result.val_loss)


def test_activation_penalties_shape_the_gradients_but_not_the_reported_loss(tiny_config, tiny_dataset):
    plain = losses(run(tiny_config.replace(epochs=1), tiny_dataset)[2])
    penalised = losses(run(tiny_config.replace(epochs=1, activation_reg=2.0, temporal_reg=1.0), tiny_dataset)[2])
    assert penalised[0] == plain[0]  # the same weights score the same: the penalties are not in the loss shown
    assert penalised[1] != plain[1]  # but the first step followed their gradients too


def test_the_objective_adds_the_activation_penalties_to_the_loss(tiny_config, tiny_dataset):
    config = tiny_config.replace(dropout=0.4, locked_dropout=True, activation_reg=2.0, temporal_reg=1.0)
    trainer = Trainer(config, tiny_dataset)
    model = trainer.model.train()
    ids = tiny_dataset.train[: 4 * 9].view(4, 9)
    inputs, targets = ids[:, :-1], ids[:, 1:]
    torch.manual_seed(3)
    objective, loss, _ = trainer._objective(inputs, targets, None)
    torch.manual_seed(3)  # the same dropout masks
    raw, hidden, _ = model.features(inputs)
    assert not torch.equal(raw, hidden)  # AR reads the dropped outputs, TAR the raw ones
    expected_loss = model.loss(hidden, targets)
    slowness = (raw[:, 1:] - raw[:, :-1]).pow(2).mean()
    torch.testing.assert_close(loss, expected_loss)
    torch.testing.assert_close(objective, expected_loss + 2.0 * hidden.pow(2).mean() + 1.0 * slowness)


# ---- weight averaging ----


def raw_weights_by_step(config, dataset, **kwargs):
    """Train, recording the raw (trained) embedding matrix after every step."""
    seen = []
    trainer = Trainer(config, dataset, **kwargs)

    def record(event):
        if isinstance(event, StepEvent):
            seen.append(trainer.model.embedding.weight.detach().clone())

    trainer.callback = record
    return trainer, trainer.fit(), seen


@pytest.mark.parametrize("kind", ["uniform", "ema"])
def test_weight_averaging_validates_and_saves_the_average_of_the_last_steps(tiny_config, tiny_dataset, tmp_path, kind):
    config = tiny_config.replace(
        weight_average=kind, average_start=0.5, ema_decay=0.9, eval_every=0, output_layer="adaptive", tie_weights=True
    )
    trainer, result, seen = raw_weights_by_step(config, tiny_dataset, out_dir=tmp_path)
    start = trainer.average_start_step
    assert start == trainer.total_steps // 2 and result.checkpoint.progress["averaged_steps"] == len(seen) - start
    if kind == "uniform":
        expected = torch.stack(seen[start:]).mean(0)
    else:
        expected = seen[start]
        for weights in seen[start + 1 :]:
            expected = 0.9 * expected + 0.1 * weights
    saved = result.checkpoint.weights["embedding.weight"]
    torch.testing.assert_close(saved, expected)
    assert not torch.equal(saved, seen[-1])
    # The raw weights travel beside the average, for a resume; the model is the average.
    torch.testing.assert_close(result.checkpoint.training_weights["embedding.weight"], seen[-1], rtol=0, atol=0)
    assert result.checkpoint.weights["adaptive.weight"] is saved  # still tied: stored once
    assert result.val_loss == pytest.approx(evaluate(result.checkpoint.build_model(), tiny_dataset.valid, 8)[0])
    torch.testing.assert_close(trainer.snapshot().embedding.weight, expected)
    # Training itself went on with the raw weights.
    assert torch.equal(trainer.model.embedding.weight.detach(), seen[-1])
    last = load_checkpoint(tmp_path / "last.pt")
    assert torch.equal(last.weights["embedding.weight"], saved)
    assert last.without_training_state().training_weights is None


def test_before_the_average_starts_the_raw_weights_are_the_model(tiny_config, tiny_dataset):
    config = tiny_config.replace(weight_average="uniform", average_start=0.9, eval_every=5)
    trainer, result, _ = raw_weights_by_step(config, tiny_dataset)
    evals = result.checkpoint.history["evals"]
    early = [e for e in evals if e["step"] <= trainer.average_start_step]
    assert early and result.checkpoint.progress["averaged_steps"] == trainer.total_steps - trainer.average_start_step
    _, plain_result, _ = raw_weights_by_step(tiny_config.replace(eval_every=5), tiny_dataset)
    # Identical runs up to the start: averaging changes what is validated, never the training.
    assert [e["val_loss"] for e in early] == [e["val_loss"] for e in plain_result.checkpoint.history["evals"]][
        : len(early)
    ]
    assert [s["loss"] for s in result.checkpoint.history["steps"]] == [
        s["loss"] for s in plain_result.checkpoint.history["steps"]
    ]


@pytest.mark.parametrize("stop_at", [10, 40])  # before the average starts (at 34), and after
def test_a_resumed_averaging_run_is_the_uninterrupted_one(tiny_config, tiny_dataset, tmp_path, stop_at):
    config = tiny_config.replace(dropout=0.2, weight_average="uniform", average_start=0.5)
    _, full, full_events = run(config, tiny_dataset)
    trainer = Trainer(config, tiny_dataset, out_dir=tmp_path)

    def stop(event):
        if isinstance(event, StepEvent) and event.step == stop_at:
            trainer.request_stop()

    trainer.callback = stop
    trainer.fit()
    checkpoint = load_checkpoint(tmp_path / "last.pt")
    assert (checkpoint.training_weights is not None) == (stop_at > trainer.average_start_step)
    resumed = Trainer(config, tiny_dataset, resume=checkpoint).fit()
    assert [s["loss"] for s in resumed.checkpoint.history["steps"]] == losses(full_events)
    assert [e["val_loss"] for e in resumed.checkpoint.history["evals"] if e["step"] > stop_at] == [
        e["val_loss"] for e in full.checkpoint.history["evals"] if e["step"] > stop_at
    ]
    for name, tensor in full.checkpoint.weights.items():
        torch.testing.assert_close(resumed.checkpoint.weights[name], tensor, rtol=0, atol=0)
        torch.testing.assert_close(resumed.checkpoint.training_weights[name], full.checkpoint.training_weights[name])


def test_the_optimizer_is_the_fused_one_on_the_cpu(tiny_config, tiny_dataset):
    for optimizer in ("adam", "adamw", "sgd"):
        trainer = Trainer(tiny_config.replace(optimizer=optimizer), tiny_dataset)
        assert trainer.optimizer.defaults["fused"] is True


# ---- a time budget ----


def test_a_time_budget_drives_the_schedule_and_the_average_and_ends_the_run(tiny_config, tiny_dataset):
    now = [0.0]
    config = tiny_config.replace(
        train_minutes=0.5, lr_schedule="cosine", weight_average="uniform", average_start=0.5, epochs=100
    )
    events = []

    def trainer_of(config, **kwargs):
        trainer = Trainer(config, tiny_dataset, callback=events.append, clock=lambda: now[0], **kwargs)
        train_step = trainer._train_step

        def one_second_a_step(*args):
            now[0] += 1.0
            return train_step(*args)

        trainer._train_step = one_second_a_step
        return trainer

    trainer = trainer_of(config)
    result = trainer.fit()
    steps = [e for e in events if isinstance(e, StepEvent)]
    # 30 seconds: 30 steps, the last one's learning rate the schedule's end, and a last evaluation.
    assert result.reason == "finished" and result.steps == len(steps) == 30 and trainer.finished
    for event in steps:
        progress = (event.step - 1) / 30  # the time used before the step
        assert event.learning_rate == pytest.approx(learning_rate_at(config, 0, 1, 1, progress))
        assert event.eta_s == pytest.approx(30 - event.step)
    assert learning_rate_at(config, 0, 1, 1, 1.0) == pytest.approx(0.1 * config.learning_rate)
    assert trainer.average_start_step is None and result.checkpoint.progress["averaged_steps"] == 15
    assert result.checkpoint.history["evals"][-1]["step"] == 30
    # Resumed with its time used up, it ends at once; with more minutes it goes on.
    assert trainer_of(config, resume=result.checkpoint).fit().steps == 30
    assert trainer_of(config.replace(train_minutes=0.75), resume=result.checkpoint).fit().steps == 45
