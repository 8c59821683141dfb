"""From Start to the first training step: a local child process against a Ray job; the Ray head's memory.

    python bench/bench_runners.py [--repeats 5]

Each repeat starts a Quick run on all the plays (as the Train page's Start does:
:func:`lstm_core.runs.control.start_run`, one thread per run) with each runner in turn, and times
from the call to the first step the run's folder reports (``status.json``'s ``step`` past 0: the
training process has started, read its data, written its baselines and built the model). The
run is then stopped and waited for. The Ray runner trains on a head started here on 127.0.0.1
(``tests/ray_cluster.py``: two CPUs, token authentication on); its memory is the sum of PSS over
the head's processes, idle after its start, and the time the head took to answer. Also timed, in
fresh processes: importing Ray's Jobs API client, which a web server with the Ray runner pays
once, and its memory. Prints Markdown tables; figures go in ``bench/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: the project's packages are one folder up
    sys.path.insert(0, str(ROOT))

from tests.ray_cluster import LocalRayHead, use_token  # noqa: E402

use_token()  # before Ray is imported anywhere here: the head below requires the token

from bench.bench_app import memory_mb  # noqa: E402
from lstm_core.config import PRESETS  # noqa: E402
from lstm_core.data.dataset import Dataset, prepare  # noqa: E402
from lstm_core.runs import control  # noqa: E402
from lstm_core.runs import folder as run_files  # noqa: E402
from lstm_core.runs.limits import RunLimits  # noqa: E402
from lstm_core.runs.local import LocalRunner  # noqa: E402
from lstm_core.runs.runner import Runner  # noqa: E402
from lstm_core.text.corpus import bundled_plays  # noqa: E402

LIMITS = RunLimits(threads=1)


def wait(folder: Path, until, timeout: float = 300.0) -> run_files.RunSummary:
    deadline = time.monotonic() + timeout
    while True:
        run = run_files.read_run(folder)
        if run is not None and until(run):
            return run
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting on {folder}: {run}")
        time.sleep(0.01)


def first_step_s(runner: Runner, data: Path, visitor: str, dataset: Dataset) -> float:
    """Seconds from Start to the run's first reported step; the run is stopped and waited for after."""
    config = PRESETS["quick"]
    started = time.perf_counter()
    run = control.start_run(data, data / "visitors" / visitor / "runs", config, dataset, LIMITS, runner)
    wait(run.path, lambda r: r.step > 0 or not r.active)
    elapsed = time.perf_counter() - started
    control.stop_run(run, runner)
    ended = wait(run.path, lambda r: not r.active)
    if ended.state != "stopped":
        raise RuntimeError(f"the run ended {ended.state}: {ended.message}")
    return elapsed


def import_cost() -> tuple[float, float]:
    """Seconds to import Ray's Jobs API client in a fresh process, and the MB of resident memory it
    added (``VmRSS``: a forked child inherits its parent's peak, so ``ru_maxrss`` would not do)."""
    code = (
        "import time\n"
        "def rss(): return int(open('/proc/self/status').read().split('VmRSS:')[1].split()[0])\n"
        "before = rss(); start = time.perf_counter(); import ray.job_submission\n"
        "print(time.perf_counter() - start, (rss() - before) * 1024 / 1e6)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    seconds, megabytes = done.stdout.split()
    return float(seconds), float(megabytes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    print("preparing all the plays (Quick's vocabulary) ...", file=sys.stderr)
    config = PRESETS["quick"]
    dataset = prepare(bundled_plays().text, config.min_word_freq, config.split_fractions, name="all the plays")
    temp = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))
    head = LocalRayHead(temp / "t", temp / "head.log")
    began = time.perf_counter()
    head.start()
    head_start_s = time.perf_counter() - began
    try:
        time.sleep(10)  # let the head settle before its memory is read
        head_pss, head_rss = memory_mb(head.pids())
        head_processes = len(head.pids())
        from lstm_core.runs.cluster import RayRunner

        runners: dict[str, Runner] = {"local process": LocalRunner(), "Ray job": RayRunner(head.address)}
        times: dict[str, list[float]] = {name: [] for name in runners}
        data = temp / "data"
        for repeat in range(args.repeats):
            for name, runner in runners.items():  # alternately, so both see the same load
                seconds = first_step_s(runner, data, f"{name.split()[0]}-{repeat}", dataset)
                times[name].append(seconds)
                print(f"{name} {repeat + 1}: {seconds:.2f} s", file=sys.stderr)
    finally:
        head.remove()
        shutil.rmtree(temp, ignore_errors=True)
    imports = [import_cost() for _ in range(3)]

    print(f"\nStart to first step, Quick on all the plays, 1 thread, median of {args.repeats}:\n")
    print("| runner | median s | min s | max s |")
    print("|---|---|---|---|")
    for name, found in times.items():
        print(f"| {name} | {statistics.median(found):.2f} | {min(found):.2f} | {max(found):.2f} |")
    local, ray = (statistics.median(found) for found in times.values())
    print(f"\nRay adds {ray - local:.2f} s (median against median).\n")
    print("| Ray head (2 CPUs, dashboard on) | figure |")
    print("|---|---|")
    print(f"| start until the Jobs API answers | {head_start_s:.1f} s |")
    print(f"| processes | {head_processes} |")
    print(f"| memory, idle: PSS (RSS) | {head_pss:,.0f} MB ({head_rss:,.0f} MB) |")
    seconds = statistics.median(took for took, _ in imports)
    megabytes = statistics.median(added for _, added in imports)
    print(f"| a web server's `import ray.job_submission`, median of 3 | {seconds:.2f} s, +{megabytes:,.0f} MB RSS |")


if __name__ == "__main__":
    main()
