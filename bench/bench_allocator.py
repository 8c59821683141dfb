"""Training speed and resident memory under each way of allocating memory, alternated in one run.

    python bench/bench_allocator.py --preset default --seconds 45 --rounds 2
    python bench/bench_allocator.py --preset default --seconds 45 --set weight_drop=0.3 --set batch_size=128

Each round trains the preset on all the plays with ``python -m lstm_core train`` (one thread, as
the app's runs do) for ``--seconds`` under each setting, one after the other:

* ``heap``: glibc's default (freed big blocks stay in its heap), PyTorch's 4 KB pages;
* ``huge pages``: the same with PyTorch's transparent huge pages (what the command line uses);
* ``returning``: glibc gives big freed blocks back at once (what a run does near its memory
  limit), 4 KB pages;
* ``returning, huge pages``: both.

It prints each setting's steps per second (the run's own count and clock) and its resident
memory (median of the second half of the samples, and the largest), one line per try, and
then the medians per setting.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lstm_core.system.allocator import FREED_MEMORY_THRESHOLD, HUGE_PAGES_VARIABLE  # noqa: E402
from lstm_core.system.processes import process_stat  # noqa: E402

# glibc reads these at start: the same as lstm_core.system.allocator.return_freed_memory from the first step
RETURNING = {
    "MALLOC_MMAP_THRESHOLD_": str(FREED_MEMORY_THRESHOLD),
    "MALLOC_TRIM_THRESHOLD_": str(FREED_MEMORY_THRESHOLD),
}
SETTINGS = {
    "heap": {HUGE_PAGES_VARIABLE: "0"},
    "huge pages": {HUGE_PAGES_VARIABLE: "1"},
    "returning": {HUGE_PAGES_VARIABLE: "0", **RETURNING},
    "returning, huge pages": {HUGE_PAGES_VARIABLE: "1", **RETURNING},
}


def resident_mb(pid: int) -> float | None:
    """Process ``pid``'s resident memory in MB (10^6 bytes; ``/proc/PID/stat``'s rss, in pages)."""
    fields = process_stat(pid)
    return None if fields is None else int(fields[21]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def one_try(flags: list[str], environment: dict[str, str], seconds: float) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        command = [sys.executable, "-m", "lstm_core", "train", "--threads", "1", "--quiet", "--out", folder, *flags]
        process = subprocess.Popen(
            command, cwd=ROOT, env={**os.environ, **environment}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        samples: list[float] = []
        end = time.monotonic() + seconds
        while time.monotonic() < end and process.poll() is None:
            time.sleep(0.5)
            size = resident_mb(process.pid)
            if size is not None:
                samples.append(size)
        process.send_signal(signal.SIGINT)  # the run saves and stops within a step
        _, errors = process.communicate(timeout=120)
        status = json.loads((Path(folder) / "status.json").read_text(encoding="utf-8"))
        if not status.get("step"):
            raise SystemExit(f"the run did not train: {errors.decode(errors='replace')[-2000:]}")
        late = samples[len(samples) // 2 :] or [0.0]
        return {
            "steps_per_s": status["step"] / status["elapsed_s"],
            "resident_mb": statistics.median(late),
            "peak_mb": max(samples or [0.0]),
        }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="default")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="a config field")
    parser.add_argument("--seconds", type=float, default=45.0, help="each try's length")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    flags = ["--preset", args.preset]
    for item in args.set:
        name, _, value = item.partition("=")
        flags += [f"--{name.replace('_', '-')}", value]
    print(f"python -m lstm_core train {' '.join(flags)} --threads 1, {args.seconds:g} s a try")
    results: dict[str, list[dict[str, float]]] = {name: [] for name in SETTINGS}
    for round_ in range(args.rounds):
        for name, environment in SETTINGS.items():
            result = one_try(flags, environment, args.seconds)
            results[name].append(result)
            print(
                f"round {round_ + 1} {name:>22}: {result['steps_per_s']:.2f} steps/s, "
                f"resident {result['resident_mb']:,.0f} MB (largest {result['peak_mb']:,.0f})",
                flush=True,
            )
    base = statistics.median(r["steps_per_s"] for r in results["heap"])
    print("medians:")
    for name, tries in results.items():
        speed = statistics.median(r["steps_per_s"] for r in tries)
        memory = statistics.median(r["resident_mb"] for r in tries)
        print(f"{name:>22}: {speed:.2f} steps/s ({speed / base:.2f}x heap), resident {memory:,.0f} MB")


if __name__ == "__main__":
    main()
