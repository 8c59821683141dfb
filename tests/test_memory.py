"""The memory estimate (lstm_core/model/memory.py) against real training processes, and the limits."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from lstm_core.config import preset
from lstm_core.data.dataset import Dataset, prepare_encoded
from lstm_core.model.memory import MB, check_memory, estimate_memory, format_bytes
from lstm_core.runs import folder as runs
from lstm_core.system.allocator import HUGE_PAGES_VARIABLE
from lstm_core.text.corpus import bundled_plays
from lstm_core.text.encoded import EncodedText

ROOT = Path(__file__).resolve().parent.parent
# A training process as the app starts one: the data loaded from a run's dataset folder, a few
# steps, an evaluation and both checkpoints written (the peak is where they overlap).
PEAK = """
import json, sys
import torch
torch.set_num_threads(1)
from lstm_core.config import preset
from lstm_core.data.dataset import Dataset
from lstm_core.training.events import StepEvent
from lstm_core.training.trainer import Trainer
dataset = Dataset.load(sys.argv[1])
config = preset(sys.argv[2]).replace(eval_every=3, device="cpu")
trainer = None
def stop(event):
    if isinstance(event, StepEvent) and event.step >= 4:
        trainer.request_stop()
trainer = Trainer(config, dataset, out_dir=sys.argv[3], callback=stop)
trainer.fit()
# VmHWM is this program's own peak: ru_maxrss would also count the test process it was forked from.
peak = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"peak": peak * 1024}))
"""


@pytest.fixture(scope="module")
def plays(tmp_path_factory) -> Dataset:
    folder = tmp_path_factory.mktemp("plays")
    dataset = prepare_encoded(EncodedText.from_text(bundled_plays().text), 5, (0.9, 0.05, 0.05), "plays")
    dataset.save(folder)
    return dataset


@pytest.mark.slow
@pytest.mark.parametrize("name", ["cookbook", "quick", "default"])
def test_the_estimate_is_within_30_percent_of_a_real_training_process(plays, tmp_path, name):
    folder = tmp_path / "data"
    plays.save(folder)
    result = subprocess.run(
        [sys.executable, "-c", PEAK, str(folder), name, str(tmp_path / "run")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, HUGE_PAGES_VARIABLE: "1"},  # as `python -m lstm_core train` has it
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    measured = json.loads(result.stdout)["peak"]
    tokens = plays.train.numel() + plays.valid.numel() + plays.test.numel()
    estimate = estimate_memory(preset(name), plays.vocab.counts, tokens).total
    assert 0.7 <= estimate / measured <= 1.3, f"{name}: estimate {estimate / MB:.0f} MB, measured {measured / MB:.0f}"


def test_the_cap_refuses_batch_256_by_200_with_the_full_softmax(plays):
    tokens = plays.train.numel() + plays.valid.numel() + plays.test.numel()
    big = preset("cookbook", batch_size=256, training_seq_len=200)
    estimate = estimate_memory(big, plays.vocab.counts, tokens)
    assert estimate.activations > 4_000 * MB  # 51,200 words x 7,025 scores, about three times over
    message = check_memory(estimate, 1_000 * MB)
    assert message is not None and message.startswith(f"This run would need about {format_bytes(estimate.total)}")
    assert check_memory(estimate_memory(preset("quick"), plays.vocab.counts, tokens), 1_000 * MB) is None
    adaptive = estimate_memory(big.replace(output_layer="adaptive"), plays.vocab.counts, tokens)
    assert adaptive.activations < estimate.activations / 4  # the adaptive softmax is the way out


WATCHED = """
import sys
from lstm_core.system.runtime import MemoryWatchdog, resident_bytes
limit = resident_bytes() + 200_000_000
MemoryWatchdog(limit, lambda rss: print("over", rss > limit, flush=True), exit_code=3, interval=0.02).start()
chunks = []
for _ in range(100):  # 1 GB, 10 MB at a time
    chunks.append(bytearray(10_000_000))
    import time; time.sleep(0.005)
print("survived", flush=True)
"""


@pytest.mark.slow
def test_the_watchdog_ends_a_process_that_outgrows_its_limit():
    result = subprocess.run([sys.executable, "-c", WATCHED], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == runs.EXIT_OUT_OF_MEMORY == 3
    assert result.stdout.strip() == "over True"


LIMITED = """
from lstm_core.system.runtime import MemoryWatchdog, resident_bytes
watchdog = MemoryWatchdog(resident_bytes() + 100_000_000, lambda rss: None, exit_code=3)
watchdog.limit_address_space(headroom=100_000_000)
import torch
try:
    torch.empty(4_000_000_000, dtype=torch.uint8)  # 4 GB in one go
    print("allocated")
except RuntimeError as error:
    print("refused", "allocate" in str(error))
"""


@pytest.mark.slow
def test_the_address_space_limit_refuses_one_huge_allocation():
    result = subprocess.run([sys.executable, "-c", LIMITED], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.stdout.strip() == "refused True", result.stderr


def test_weight_averaging_adds_the_average_and_the_raw_copy_to_the_estimate(plays):
    tokens = plays.train.numel()
    plain = estimate_memory(preset("default", weight_average="off"), plays.vocab.counts, tokens)
    averaged = estimate_memory(preset("default", weight_average="uniform"), plays.vocab.counts, tokens)
    assert averaged.parameters - plain.parameters == 2 * 4 * plain.parameter_count


ON_GLIBC = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="tunes glibc's allocator")

FRAGMENTED = """
import json, sys
from lstm_core.system.runtime import resident_bytes, return_freed_memory
MB = 1_000_000
if sys.argv[1] == "return":
    return_freed_memory()
start = resident_bytes()
big = bytearray(16 * MB)
del big  # by default glibc now serves blocks up to this size from its heap, and keeps them
blocks = [bytearray(4 * MB) for _ in range(50)]
del blocks[:-1]  # 196 MB freed below the last block, which keeps the heap's top from shrinking
freed = resident_bytes()
returned = return_freed_memory()
print(json.dumps({"returned": returned, "kept": freed - start, "after_return": resident_bytes() - start}))
"""


@pytest.mark.slow
@ON_GLIBC
def test_returning_freed_memory_gives_the_heap_back_and_maps_big_blocks_of_their_own():
    def run(mode: str) -> dict:
        result = subprocess.run(
            [sys.executable, "-c", FRAGMENTED, mode], capture_output=True, text=True, cwd=ROOT, timeout=120
        )
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    default, returning = run("keep"), run("return")
    assert default["returned"] is returning["returned"] is True
    # By default the heap keeps the 196 MB freed; asked, it gives them back.
    assert default["kept"] > 150 * MB
    assert default["after_return"] < 40 * MB
    # Asked first, big blocks get pages of their own, which go back as each is freed.
    assert returning["kept"] < 40 * MB


PRESSED = """
import time
from lstm_core.system.runtime import MemoryWatchdog, resident_bytes
MB = 1_000_000
start = resident_bytes()
limit, line = start + 400 * MB, start + 200 * MB
watchdog = MemoryWatchdog(
    limit, lambda rss: print("over", flush=True), exit_code=3, interval=0.02,
    on_pressure=lambda rss: print("pressure", rss > line, flush=True), pressure=line / limit, trim_every=0.05,
).start()
held = [bytearray(10 * MB) for _ in range(25)]  # 250 MB: past the line, within the limit
time.sleep(0.5)
held += [bytearray(10 * MB) for _ in range(5)]  # still past the line: no second call
time.sleep(0.5)
print("survived", watchdog.returning_memory, flush=True)
"""


@pytest.mark.slow
@ON_GLIBC
def test_near_its_limit_the_watchdog_returns_freed_memory_once_and_lets_the_process_go_on():
    result = subprocess.run([sys.executable, "-c", PRESSED], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:-1] == ["pressure True", "survived True"]


HUGE = """
import os, runpy, sys
sys.argv = ["lstm_core", "plays"]
try:
    runpy.run_module("lstm_core", run_name="__main__")  # what `python -m lstm_core plays` runs
except SystemExit:
    pass
import torch
block = torch.empty(64 * 1024 * 1024, dtype=torch.uint8)
address = block.data_ptr()
flags = ""
with open("/proc/self/smaps", encoding="ascii") as smaps:
    inside = False
    for line in smaps:
        if "-" in line.split()[0] and ":" not in line.split()[0]:
            start, end = (int(part, 16) for part in line.split()[0].split("-"))
            inside = start <= address < end
        elif inside and line.startswith("VmFlags:"):
            flags = line.split()[1:]
print(os.environ.get("THP_MEM_ALLOC_ENABLE"), "hg" in flags)
"""


@pytest.mark.slow
@pytest.mark.skipif(not Path("/sys/kernel/mm/transparent_hugepage").exists(), reason="no transparent huge pages")
@pytest.mark.parametrize(("given", "expected"), [(None, "1 True"), ("0", "0 False")])
def test_the_command_line_asks_pytorch_for_huge_pages_unless_told_not_to(given, expected):
    environment = {key: value for key, value in os.environ.items() if key != HUGE_PAGES_VARIABLE}
    if given is not None:
        environment[HUGE_PAGES_VARIABLE] = given
    result = subprocess.run(
        [sys.executable, "-c", HUGE], capture_output=True, text=True, cwd=ROOT, env=environment, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == expected


@pytest.mark.slow
@ON_GLIBC
def test_a_run_whose_heap_would_outgrow_its_limit_returns_memory_and_goes_on(tmp_path):
    # This recipe's process settles near 1 GB with glibc's heap keeping freed blocks (more than
    # the 950 MB limit: the watchdog would end it) and near 700 MB when they go back at once.
    folder = tmp_path / "run"
    recipe = ["--weight-drop", "0.3", "--activation-reg", "2", "--temporal-reg", "1", "--batch-size", "128"]
    limits = ["--threads", "1", "--memory-limit-mb", "950", "--max-minutes", "0.6"]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "lstm_core",
            "train",
            "--preset",
            "default",
            *recipe,
            *limits,
            "--quiet",
            "--out",
            str(folder),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert "note: memory reached" in result.stderr
    status = runs.read_json(folder / runs.STATUS_FILE)
    assert status["state"] == "time_limit", status
    assert status["step"] > 0 and (folder / runs.LAST_CHECKPOINT).exists()
