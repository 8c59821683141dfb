"""Training on several processes (torchrun, DistributedDataParallel) against one process.

The tests that start torchrun use two CPU processes with Gloo, one thread each, on the tiny
sonnet corpus. Their losses are compared with a single process's within ``LOSS_TOLERANCE``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from lstm_core.cli.main import main
from lstm_core.errors import InputError
from lstm_core.model.checkpoint import load_checkpoint, save_checkpoint
from lstm_core.runs.folder import list_snapshots
from lstm_core.runs.setup import RunSetup
from lstm_core.training import distributed as distributed
from lstm_core.training.distributed import DistributedContext, Peer, check_batch_split, rank_device, rank_seed
from lstm_core.training.events import StepEvent
from lstm_core.training.handshake import setup_bytes, setup_from_bytes
from lstm_core.training.trainer import Trainer
from tests.conftest import TINY_TEXT
from tests.distributed_worker import TORCHRUN, launch, torchrun_env, worker_config, worker_dataset

LOSS_TOLERANCE = 1e-4
"""Two ranks add their halves of the gradient and of the loss in another order than one process
sums the whole batch, so float32 rounding differs; over the 68 steps of these runs the largest
difference measured was 2.4e-6 in the step loss (about 4.4 falling to 2.9) and 2e-6 in the
validation loss. 1e-4 leaves a factor of 40 for other CPUs' kernels, and is far below what a real
mistake does: a learning rate 1% off moves the losses by 3e-2 in this run, two ranks training
the same rows by 0.9."""
needs_proc = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds processes through /proc (Linux)")


def step_losses(checkpoint) -> list[float]:
    return [record["loss"] for record in checkpoint.history["steps"]]


def assert_close(actual: list[float], expected: list[float], tolerance: float = LOSS_TOLERANCE) -> None:
    assert len(actual) == len(expected)
    difference = max(abs(a - b) for a, b in zip(actual, expected, strict=True))
    assert difference <= tolerance, f"largest difference {difference:.2e}"


# ---- the pieces, in one process ---------------------------------------------------------------


@pytest.mark.parametrize("size", [2, 4])
def test_rank_r_trains_its_rows_of_the_single_process_streams(size):
    config, dataset = worker_config().replace(batch_size=8), worker_dataset()
    single = Trainer(config, dataset)
    shares = [Trainer(config, dataset, distributed=DistributedContext(rank=r, size=size)) for r in range(size)]
    assert torch.equal(torch.cat([share.train_streams for share in shares]), single.train_streams)
    for rank, share in enumerate(shares):
        rows = 8 // size
        assert torch.equal(share.train_streams, single.train_streams[rank * rows : (rank + 1) * rows])
        assert share.steps_per_epoch == single.steps_per_epoch  # every rank steps in lockstep


def test_buffer_syncing_is_turned_off_by_the_name_the_installed_torch_knows():
    """torch 2.13 renamed DDP's ``broadcast_buffers`` to ``forward_sync_buffers`` (the old name
    warns); a machine's own older torch (2.11 on the H200 this was checked on) knows only the old."""
    from torch.nn.parallel import DistributedDataParallel

    class OlderDDP:
        def __init__(self, module, device_ids=None, broadcast_buffers=True, process_group=None):
            pass

    assert distributed._buffer_sync_argument(OlderDDP) == "broadcast_buffers"
    expected = "forward_sync_buffers" if torch.__version__ >= "2.13" else "broadcast_buffers"
    assert distributed._buffer_sync_argument(DistributedDataParallel) == expected


def test_a_batch_that_does_not_divide_among_the_ranks_is_refused():
    with pytest.raises(InputError, match=r"batch_size 10 does not divide among 4 processes.*\(e\.g\. 8 or 12\)"):
        check_batch_split(10, 4)
    with pytest.raises(InputError, match=r"e\.g\. 4\)"):
        check_batch_split(3, 4)
    check_batch_split(12, 4)
    with pytest.raises(InputError, match="does not divide"):
        Trainer(worker_config().replace(batch_size=5), worker_dataset(), distributed=DistributedContext(size=2))


@pytest.mark.parametrize(("rows", "size"), [(15, 2), (15, 4), (3, 4), (16, 16), (1, 3)])
def test_validation_rows_are_shared_without_gap_or_overlap(rows, size):
    shares = [DistributedContext(rank=r, size=size).share(rows) for r in range(size)]
    assert shares[0][0] == 0 and shares[-1][1] == rows
    assert all(shares[r][1] == shares[r + 1][0] for r in range(size - 1))
    assert max(last - first for first, last in shares) - min(last - first for first, last in shares) <= 1


def test_ranks_other_than_0_write_nothing_and_report_nothing(tmp_path):
    events = []
    world = DistributedContext(rank=1, size=2)  # no process group: the rank's own side only
    trainer = Trainer(worker_config(), worker_dataset(), out_dir=tmp_path, callback=events.append, distributed=world)
    result = trainer.fit()
    assert result.reason == "finished" and result.steps == trainer.total_steps
    assert events == [] and list(tmp_path.iterdir()) == []


def test_each_rank_draws_its_own_random_stream_and_rank_0_keeps_the_run_seed():
    assert rank_seed(42, 0) == 42
    seeds = {rank_seed(42, rank) for rank in range(8)}
    assert len(seeds) == 8 and all(0 <= seed < 2**63 for seed in seeds)
    assert rank_seed(42, 1, step=100) != rank_seed(42, 1) != rank_seed(43, 1)


def test_the_torchrun_environment_says_whether_this_is_one_rank_of_several(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert distributed.torchrun_ranks() is None
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert distributed.torchrun_ranks() is None  # torchrun with one process is a single process
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert distributed.torchrun_ranks() == (3, 4, 1)
    monkeypatch.setenv("RANK", "4")
    with pytest.raises(InputError, match="RANK 4 is not within WORLD_SIZE 4"):
        distributed.torchrun_ranks()


def test_the_device_of_a_rank():
    assert rank_device("cpu", 3) == torch.device("cpu")
    with pytest.raises(InputError, match="each one uses the GPU of its local rank; use --device cuda"):
        rank_device("cuda:1", 0)
    with pytest.raises(InputError, match="MPS cannot train with several processes"):
        rank_device("mps", 0)
    if not torch.cuda.is_available():
        assert rank_device("auto", 1) == torch.device("cpu")
        with pytest.raises(InputError, match="CUDA is not available"):
            rank_device("cuda", 0)
    else:
        with pytest.raises(InputError, match="use --nproc_per_node"):
            rank_device("cuda", torch.cuda.device_count())


def test_the_setup_rank_0_sends_the_others_comes_back_the_same(tmp_path):
    config, dataset = worker_config(), worker_dataset()
    checkpoint = Trainer(config.replace(epochs=1), dataset).fit().checkpoint
    sent = RunSetup(config, dataset, tmp_path / "run", checkpoint)
    received = setup_from_bytes(setup_bytes(sent))
    assert received is not None
    assert received.config == config and received.out == tmp_path / "run"
    assert received.dataset.vocab == dataset.vocab and received.dataset.name == dataset.name
    for split in ("train", "valid", "test"):
        assert torch.equal(getattr(received.dataset, split), getattr(dataset, split))
    assert received.resume.step == checkpoint.step
    assert step_losses(received.resume) == step_losses(checkpoint)
    assert setup_from_bytes(setup_bytes(None)) is None  # rank 0 could not prepare the run


def test_every_ranks_random_state_travels_in_the_checkpoint(tmp_path):
    checkpoint = Trainer(worker_config().replace(epochs=1), worker_dataset()).fit().checkpoint
    checkpoint.rank_rng_states = [torch.get_rng_state(), torch.get_rng_state()]
    save_checkpoint(checkpoint, tmp_path / "a.pt")
    loaded = load_checkpoint(tmp_path / "a.pt")
    assert [torch.equal(a, b) for a, b in zip(loaded.rank_rng_states, checkpoint.rank_rng_states, strict=True)]
    assert loaded.without_training_state().rank_rng_states is None
    checkpoint.rank_rng_states = [torch.zeros(3)]  # not a generator's state
    save_checkpoint(checkpoint, tmp_path / "b.pt")
    with pytest.raises(InputError, match="rank_rng_states are not a list of random-generator states"):
        load_checkpoint(tmp_path / "b.pt")


@needs_proc
def test_the_message_for_a_lost_rank_names_the_one_that_ended():
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    running = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        host, machine = __import__("socket").gethostname(), distributed._machine_id()
        me = Peer(0, host, os.getpid(), None, machine)
        error = RuntimeError("[../gloo/transport/tcp/pair.cc:537] Read error: Connection reset by peer. GLHF")
        assert distributed.is_lost_rank_error(error)
        assert not distributed.is_lost_rank_error(RuntimeError("CUDA out of memory"))
        peers = (me, Peer(1, host, ended.pid, None, machine), Peer(2, host, running.pid, None, machine))
        world = DistributedContext(size=3, peers=peers)
        message = world.lost_rank_message(error, wait_s=0)
        assert message.startswith(f"rank 1 (pid {ended.pid}) has ended unexpectedly, so this run on 3 processes")
        assert message.endswith("(Read error: Connection reset by peer)")
        # Rank 2 runs on another machine: its pid, which names no process here, is not looked up here.
        peers = (me, Peer(1, host, running.pid, None, machine), Peer(2, "node-b", 12345678, None, machine + 1))
        world = DistributedContext(size=3, peers=peers)
        message = world.lost_rank_message(RuntimeError("Timed out waiting 300000ms for recv"), wait_s=0)
        assert "every rank on this machine is still running" in message and "node-b" in message
    finally:
        running.kill()
        running.wait()


# ---- two processes under torchrun -------------------------------------------------------------


@pytest.mark.slow
def test_two_ranks_take_the_single_process_steps(tmp_path):
    """The trainer scenarios of tests/distributed_worker.py, against single-process runs."""
    config, dataset = worker_config(), worker_dataset()
    uninterrupted = Trainer(config, dataset).fit()
    single = Trainer(config, dataset)

    def stop_at_9(event):
        if isinstance(event, StepEvent) and event.step == 9:
            single.request_stop()

    single.callback = stop_at_9
    save_checkpoint(single.fit().checkpoint, tmp_path / "single.pt")  # resumed by the ranks

    started = launch(tmp_path)
    assert started.returncode == 0, started.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank-{r}.json").read_text()) for r in range(2)]
    assert [(r["rank"], r["size"], r["backend"]) for r in ranks] == [(0, 2, "gloo"), (1, 2, "gloo")]

    # Each rank trained two of the four rows; together, the single process's batch.
    assert torch.equal(torch.tensor(ranks[0]["rows"] + ranks[1]["rows"]), Trainer(config, dataset).train_streams)
    # The same steps, losses and validation losses (every rank reports the whole batch's).
    expected = step_losses(uninterrupted.checkpoint)
    for report in ranks:
        assert report["full"]["steps"] == uninterrupted.steps
        assert_close(report["full"]["losses"], expected)
        assert_close(report["full"]["val_losses"], [e["val_loss"] for e in uninterrupted.checkpoint.history["evals"]])
    adaptive = Trainer(config.replace(output_layer="adaptive", epochs=1), dataset).fit()
    assert_close(ranks[0]["adaptive"], step_losses(adaptive.checkpoint))

    # A stop asked of rank 0 alone, the time limit on rank 0's clock: every rank ends at the same step.
    assert [r["stopped"]["steps"] for r in ranks] == [5, 5]
    assert {r["stopped"]["reason"] for r in ranks} == {"stopped"}
    assert [r["time_limit"] for r in ranks] == [{"reason": "time_limit", "steps": 1}] * 2

    # Dropout, stopped and resumed on two ranks: exactly the run without a stop (each rank's
    # random state came back).
    for report in ranks:
        assert report["dropout"]["stopped_at"] == 7
        assert report["dropout"]["resumed"] == report["dropout"]["whole"]
        assert report["dropout"]["max_weight_difference"] == 0.0

    # A checkpoint of two ranks, stopped mid-epoch, resumes in one process, and the other way round.
    stopped = load_checkpoint(tmp_path / "stopped.pt")
    assert stopped.step == 5 and stopped.carry[0].shape == (1, 4, 24)  # the whole batch's carried state
    assert len(stopped.rank_rng_states) == 2
    resumed = Trainer(config, dataset, resume=stopped).fit()
    assert_close(step_losses(resumed.checkpoint), expected)
    for report in ranks:
        assert report["from_single"]["start"] == 9
        assert_close(report["from_single"]["losses"], expected)


CLI_FLAGS = ["--preset", "cookbook", "--rnn-size", "16", "--batch-size", "4", "--training-seq-len", "8"]
CLI_FLAGS += ["--epochs", "2", "--learning-rate", "0.01", "--eval-every", "20", "--min-word-freq", "0"]
CLI_FLAGS += ["--sample-length", "3", "--threads", "1", "--dropout", "0", "--quiet"]


@pytest.fixture
def texts(tmp_path):
    train, valid = tmp_path / "train.txt", tmp_path / "valid.txt"
    train.write_text(TINY_TEXT)
    valid.write_text(TINY_TEXT[:600])
    return ["--train-file", str(train), "--valid-file", str(valid)]


def torchrun_train(cwd: Path, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*TORCHRUN, "-m", "lstm_core", "train", *flags],
        capture_output=True,
        text=True,
        timeout=240,
        env=torchrun_env(),
        cwd=cwd,
    )


@pytest.mark.slow
def test_torchrun_trains_and_resumes_one_run_that_loads_like_any_other(tmp_path, texts, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["train", *texts, *CLI_FLAGS, "--out", str(tmp_path / "single")]) == 0
    out = tmp_path / "two"
    first = torchrun_train(tmp_path, *texts, *CLI_FLAGS, "--epochs", "1", "--out", str(out))
    assert first.returncode == 0, first.stderr[-3000:]
    # Resumed on two processes from the run folder alone (rank 0 sends its data and checkpoint).
    started = torchrun_train(tmp_path, "--resume", str(out), "--epochs", "2", "--threads", "1", "--json")
    assert started.returncode == 0, started.stderr[-3000:]
    assert json.loads(started.stdout)["reason"] == "finished"  # one summary, from rank 0
    assert started.stderr.count("validation loss") == 3  # one line per evaluation, not one per rank
    assert "2 processes (gloo" in started.stderr

    # One run's files, written once; nothing anywhere else.
    assert sorted(p.name for p in out.iterdir()) == [
        "baselines.json",
        "best.pt",
        "dataset",
        "events.jsonl",
        "last.pt",
        "run.json",
        "snapshots",
        "status.json",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["single", "train.txt", "two", "valid.txt"]
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    assert [e["kind"] for e in events].count("end") == 2  # one for each of the two sessions
    assert [e["step"] for e in events if e["kind"] == "eval"] == [20, 40, 43, 60, 80, 86]
    assert [step for step, _ in list_snapshots(out)] == [20, 40, 43, 60, 80, 86]  # by rank 0, at its evaluations
    # The same training as one process, and a checkpoint like any other.
    two, one = load_checkpoint(out / "last.pt"), load_checkpoint(tmp_path / "single" / "last.pt")
    assert_close(step_losses(two), step_losses(one))
    # Step 43 was the end of the first session (1 epoch), evaluated as every run's end is.
    resumed_evals = [e["val_loss"] for e in two.history["evals"] if e["step"] != 43]
    assert_close(resumed_evals, [e["val_loss"] for e in one.history["evals"]])
    assert set(two.weights) == set(one.weights)  # the inner model's names: no "module." prefix
    capsys.readouterr()
    args = ["generate", "--checkpoint", str(out / "best.pt"), "--prime", "thou art more", "-n", "5", "--json"]
    assert main(args) == 0
    (generation,) = json.loads(capsys.readouterr().out)
    assert generation["text"].startswith("thou art more") and len(generation["continuation"]) == 5


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if parent == pid:
                found.append(int(entry.name))
    return found


def _rank_of(pid: int) -> int | None:
    try:
        variables = (Path("/proc") / str(pid) / "environ").read_bytes().split(b"\0")
    except OSError:
        return None
    ranks = [int(v.split(b"=", 1)[1]) for v in variables if v.startswith(b"RANK=")]
    return ranks[0] if ranks else None


def start_long_run(tmp_path: Path, texts: list[str], out: Path) -> subprocess.Popen:
    """torchrun training a run that would take long, once both ranks are stepping."""
    flags = [*CLI_FLAGS, "--epochs", "1000", "--eval-every", "0"]
    torchrun = subprocess.Popen(
        [*TORCHRUN, "-m", "lstm_core", "train", *texts, *flags, "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=torchrun_env(),
        cwd=tmp_path,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and torchrun.poll() is None:
        status = json.loads((out / "status.json").read_text()) if (out / "status.json").exists() else {}
        if status.get("step", 0) >= 20:  # both ranks are training: they step together
            return torchrun
        time.sleep(0.1)
    output = torchrun.communicate(timeout=60)[0] if torchrun.poll() is not None else "still starting"
    torchrun.kill()
    raise AssertionError(f"the run did not get going: {output[-3000:]}")


@pytest.mark.slow
def test_ctrl_c_to_torchrun_stops_every_rank_at_one_step_and_saves(tmp_path, texts):
    out = tmp_path / "run"
    torchrun = start_long_run(tmp_path, texts, out)
    try:
        torchrun.send_signal(signal.SIGINT)  # what Ctrl-C in its terminal does; torchrun passes it on
        output, _ = torchrun.communicate(timeout=60)
    finally:
        if torchrun.poll() is None:
            torchrun.kill()
            torchrun.wait()
    assert "stopping every process after this step and saving" in output
    assert "ChildFailedError" not in output  # every rank ended by itself, none was killed
    status = json.loads((out / "status.json").read_text())
    assert status["state"] == "stopped"
    assert load_checkpoint(out / "last.pt").step == status["step"] > 20
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    assert [(e["reason"], e["step"]) for e in events if e["kind"] == "end"] == [("stopped", status["step"])]


@pytest.mark.slow
@needs_proc
def test_a_rank_killed_mid_run_ends_the_whole_run_naming_it(tmp_path, texts):
    out = tmp_path / "run"
    torchrun = start_long_run(tmp_path, texts, out)
    try:
        ranks = {_rank_of(pid): pid for pid in _children(torchrun.pid)}
        os.kill(ranks[1], signal.SIGKILL)
        output, _ = torchrun.communicate(timeout=60)  # the bound: no hang until a timeout
    finally:
        if torchrun.poll() is None:
            torchrun.kill()
            torchrun.wait()
    assert torchrun.returncode != 0
    assert f"error: rank 1 (pid {ranks[1]}) has ended unexpectedly, so this run on 2 processes stopped" in output
    assert f"local_rank: 1 (pid: {ranks[1]})" in output  # torchrun's own report of the failure
    status = json.loads((out / "status.json").read_text())
    assert status["state"] == "failed" and status["message"].startswith(f"rank 1 (pid {ranks[1]}) has ended")
