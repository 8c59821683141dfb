"""App benchmarks in a real browser: cold start and page switches, memory per training visitor, load.

    python bench/bench_app.py cold [--repeats 3]
    python bench/bench_app.py memory [--visitors 2] [--train-seconds 30]
    python bench/bench_app.py load [--visitors 1,5,10] [--moves 20] [--nice 10,0]

Every server is ``streamlit run streamlit_app.py`` started afresh on a free port (a process group
of its own, stopped at the end), driven by Debian's headless Chromium (/usr/bin/chromium) through
Playwright. Each subcommand prints Markdown tables; nothing here is a test.

**cold**: a server's data folder is made once and kept across the starts, as on a host that has
run before; the first start on the empty folder (which also builds the plays' cache, see
:mod:`lstm_core.text.plays_cache`) is reported on its own. For each of ``--repeats`` fresh starts:
the health endpoint's first ``ok``; from it, the first content of the first page (the Data
page's metrics) and the whole page (its two charts drawn, the script run over); then the page
switches Data -> Train -> Generate -> Inside -> About, each from the click on the link to the
new page's title shown and its script run over (``--read-seconds``: a pause on each page before
the click, a visitor reading; none by default, the hardest case). Then the server's memory: the sum of PSS over
its processes (``/proc/PID/smaps_rollup``; RSS would count the shared libraries once per
process).

**memory**: on one fresh server, visitors one after another start a Quick run on all the plays
(each in its own browser context, runs left going); the server's memory (its processes, the
training ones included) is read ``--train-seconds`` after each start.

**load**: for each ``--nice`` value, a fresh server (``LSTM_PLAYHOUSE_NICE``) and two training
runs on all the plays (the Quick preset's model and batches, with ``--run-epochs`` epochs so that
they train throughout; started with :func:`lstm_core.runs.control.start_run` on the server's data folder and
caps, as its Train page does, so they are the bench's child processes, not the server's, and
their memory is added to the server's), once one visitor has opened the Generate page (so that
the server has loaded torch and the demo model). First the runs' words per second with no
visitor; then,
for each K in ``--visitors``, K browser contexts on the Generate page each move the temperature
``--moves`` times (alternately to its ends, so the text always changes), waiting a random
0.5-1.5 s between moves. Reported: the time from the key press to the continuation's new text
(measured inside the browser: a keydown listener and a MutationObserver, so Playwright's round
trips are not in it), median and 95th percentile; the same for the server alone, from the
entry script's start to its end for the Generate page's runs (``LSTM_PLAYHOUSE_TIMING_LOG``):
the browsers share the server's cores, and this figure leaves their own work out; the memory
(PSS of the server's processes and the two runs, mean and peak, sampled every 0.5 s); and the
runs' words per second in that window. Any run that ended (finished, out of memory) is named.
A second table gives processor time, which waiting for a core does not inflate: each Generate
script run's own thread (the timing log's ``cpu``), the server's processes per move, and the
cores' worth of time the server, the runs and everything else (the browsers) used in the window.
``--pin`` puts the server and the two runs on one core and the browsers on the others, so that
the browsers' rendering does not take the server's processor (a one-core server, with the runs
at their lower priority beside it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: the project's packages are one folder up
    sys.path.insert(0, str(ROOT))

from lstm_core.system.processes import process_stat  # noqa: E402  (after the path is set; no torch)

CHROMIUM = os.environ.get("LSTM_PLAYHOUSE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SWITCHES = ("Train", "Generate", "Inside the LSTM", "About")
IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'
TEMPERATURE = "Temperature"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---- the server and its memory -------------------------------------------------------------------


def start_server(
    port: int, data: Path | str | None = None, cores: set[int] | None = None, **settings: str
) -> subprocess.Popen:
    """``streamlit run streamlit_app.py`` on ``port`` in a new session, with ``LSTM_PLAYHOUSE_*`` settings
    (and, given ``cores``, every thread of it on those cores only)."""
    env = {**os.environ, "LSTM_PLAYHOUSE_DATA": str(data or tempfile.mkdtemp()), "LSTM_PLAYHOUSE_THREADS": "1"}
    env.update({f"LSTM_PLAYHOUSE_{name.upper()}": value for name, value in settings.items()})
    command = [sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.headless", "true"]
    if cores is not None:
        command = ["taskset", "-c", ",".join(map(str, sorted(cores))), *command]
    command += ["--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"]
    return subprocess.Popen(
        command, cwd=ROOT, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def stop_server(server: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=30)


def wait_healthy(port: int, started: float) -> float:
    """Seconds from ``started`` (``time.perf_counter()``) until the health endpoint answers ``ok``."""
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=1) as response:
                if response.read() == b"ok":
                    return time.perf_counter() - started
        except OSError:
            time.sleep(0.02)
        if time.perf_counter() - started > 120:
            raise RuntimeError("the server did not become healthy in 120 s")


def session_pids(session: int) -> list[int]:
    """The processes of a session (the server started with ``start_new_session``, and its children)."""
    pids = (int(path.parent.name) for path in Path("/proc").glob("[0-9]*/stat"))
    return [pid for pid in pids if (fields := process_stat(pid)) is not None and int(fields[3]) == session]


def memory_mb(pids: Iterable[int]) -> tuple[float, float]:
    """``(PSS, RSS)`` of these processes together, in MB (10^6 bytes). PSS shares each shared page
    among the processes that map it, so the sum is what they hold together."""
    pss = rss = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    pss += int(line.split()[1])
                elif line.startswith("Rss:"):
                    rss += int(line.split()[1])
        except (OSError, ValueError):
            continue  # the process ended meanwhile
    return pss * 1024 / 1e6, rss * 1024 / 1e6


class MemorySampler:
    """PSS of the server's session and of other processes (the runs), every ``interval`` seconds, in a
    thread; and with each sample the processor time they and the whole machine have used so far."""

    def __init__(self, session: int, extra: Iterable[int] = (), interval: float = 0.5) -> None:
        self.session, self.extra, self.interval = session, list(extra), interval
        self.samples: list[tuple[float, float]] = []  # (server, the others)
        self.cpu: list[tuple[float, float, float, float]] = []  # (time, server, the others, machine busy)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            server = session_pids(self.session)
            self.samples.append((memory_mb(server)[0], memory_mb(self.extra)[0]))
            self.cpu.append((time.time(), cpu_seconds(server), cpu_seconds(self.extra), busy_seconds()))
            self._stop.wait(self.interval)

    def cores(self, start: float, end: float) -> tuple[float, float, float]:
        """Cores' worth of processor time the server, the others and the rest of the machine used
        between the first sample at or after ``start`` and the last at or before ``end``."""
        inside = [sample for sample in self.cpu if start <= sample[0] <= end]
        if len(inside) < 2:
            return math.nan, math.nan, math.nan
        (t0, server0, others0, busy0), (t1, server1, others1, busy1) = inside[0], inside[-1]
        server, others = server1 - server0, others1 - others0
        rest = max(0.0, busy1 - busy0 - server - others)
        return server / (t1 - t0), others / (t1 - t0), rest / (t1 - t0)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._stop.set()
        self._thread.join()


def cpu_seconds(pids: Iterable[int]) -> float:
    """Processor time (user + system, every thread) these processes have used so far, in seconds."""
    ticks = 0
    for pid in pids:
        fields = process_stat(pid)
        if fields is not None:
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def busy_seconds() -> float:
    """Processor time the whole machine has spent on anything but idling, summed over its cores."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle, iowait
    return (sum(values[:8]) - idle) / os.sysconf("SC_CLK_TCK")  # user..steal; guest time is in user


def percentile(values: list[float], share: float) -> float:
    """The ``share`` quantile (0.95: the 95th percentile), interpolated between the nearest ranks."""
    ordered = sorted(values)
    position = share * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


# ---- cold start and page switches ----------------------------------------------------------------


@dataclass
class ColdStart:
    healthy: float
    content: float  # from healthy to the first page's metrics
    page: float  # from healthy to the first page complete
    switches: dict[str, float] = field(default_factory=dict)
    pss_mb: float = 0.0


def page_done(page: Any, title: str, timeout_ms: float = 120_000) -> None:
    """Wait until the page titled ``title`` is on screen and its script run is over."""
    page.locator("h1").filter(has_text=title).first.wait_for(timeout=timeout_ms)
    page.locator(IDLE).wait_for(timeout=timeout_ms)


def one_start(browser: Any, data: Path, switches: bool = True, read_seconds: float = 0.0) -> ColdStart:
    port = free_port()
    started = time.perf_counter()
    server = start_server(port, data)
    try:
        healthy = wait_healthy(port, started)
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        page.goto(f"http://127.0.0.1:{port}/")
        page.get_by_text("Words in the text").wait_for(timeout=120_000)
        content = time.perf_counter() - started - healthy
        charts = page.locator('[data-testid="stVegaLiteChart"]')
        charts.nth(1).wait_for(timeout=120_000)
        page_done(page, "Data")
        result = ColdStart(healthy, content, time.perf_counter() - started - healthy)
        for title in SWITCHES if switches else ():
            time.sleep(read_seconds)  # a visitor reading the page before clicking on
            clicked = time.perf_counter()
            page.get_by_role("link", name=title).click()
            page_done(page, title)
            if title == "Generate":
                page.locator(".generated").first.wait_for(timeout=120_000)
            result.switches[title] = time.perf_counter() - clicked
        if page.locator('[data-testid="stException"]').count():
            raise RuntimeError("a page showed an exception")
        result.pss_mb = memory_mb(session_pids(server.pid))[0]
        context.close()
        return result
    finally:
        stop_server(server)


def cold(args: argparse.Namespace) -> None:
    from playwright.sync_api import sync_playwright

    data = Path(tempfile.mkdtemp(prefix="bench-app-"))
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        try:
            first = one_start(browser, data, switches=False)  # an empty data folder: builds the plays' cache
            starts = [one_start(browser, data, read_seconds=args.read_seconds) for _ in range(args.repeats)]
        finally:
            browser.close()
            shutil.rmtree(data, ignore_errors=True)

    def row(label: str, s: ColdStart) -> str:
        cells = [f"{s.healthy:.2f}", f"{s.content:.2f}", f"{s.page:.2f}"]
        cells += [f"{s.switches[t]:.2f}" if t in s.switches else "" for t in SWITCHES]
        return f"| {label} | " + " | ".join(cells) + f" | {s.pss_mb:.0f} |"

    median = ColdStart(
        statistics.median(s.healthy for s in starts),
        statistics.median(s.content for s in starts),
        statistics.median(s.page for s in starts),
        {t: statistics.median(s.switches[t] for s in starts) for t in SWITCHES},
        statistics.median(s.pss_mb for s in starts),
    )
    print(f"App cold start, {args.repeats} fresh server starts on one data folder, seconds (server memory in MB).")
    print("First page: from the health endpoint's first ok. Switches: from the click to the page done, each click")
    print(f"{args.read_seconds:g} s after the previous page was done.")
    print()
    header = ["start", "to health ok", "first content (metrics)", "first page done"]
    header += [f"-> {t}" for t in SWITCHES] + ["server PSS, MB"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for number, start in enumerate(starts, start=1):
        print(row(str(number), start))
    print(row(f"**median of {args.repeats}**", median))
    print(row("first start, empty data folder", first))


# ---- memory per training visitor ---------------------------------------------------------------


def visitors_memory(args: argparse.Namespace) -> None:
    """Server memory after each of ``--visitors`` starts a Quick run: (PSS, RSS, words per second shown)."""
    from playwright.sync_api import sync_playwright

    port = free_port()
    data = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    server = start_server(port, data, max_runs=str(args.visitors))
    figures = []
    try:
        wait_healthy(port, time.perf_counter())
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
            for _ in range(args.visitors):
                page = browser.new_context().new_page()
                page.goto(f"http://127.0.0.1:{port}/train", timeout=120_000)
                page.get_by_role("button", name="Quick", exact=True).click(timeout=120_000)
                page.get_by_role("button", name="Start training").click(timeout=60_000)
                page.get_by_text("Training...").first.wait_for(timeout=120_000)
                time.sleep(args.train_seconds)
                speed = page.get_by_test_id("stMetric").filter(has_text="Words per second").inner_text()
                pss, rss = memory_mb(session_pids(server.pid))
                figures.append((pss, rss, float(speed.split()[-1].replace(",", ""))))
            browser.close()
    finally:
        stop_server(server)  # its runs are in its process group: they stop with it
        shutil.rmtree(data, ignore_errors=True)
    print(f"Server memory with visitors training the Quick preset on all plays, {args.train_seconds:.0f} s after")
    print("each start (1 thread per run; the words/s figure is what that visitor's Train page showed).")
    print("| visitors training | server PSS (its processes together) | server RSS (summed) | that visitor's words/s |")
    print("|---|---|---|---|")
    for count, (pss, rss, speed) in enumerate(figures, start=1):
        print(f"| {count} | {pss:.0f} MB | {rss:.0f} MB | {speed:,.0f} |")


# ---- load: visitors moving the temperature while two runs train -----------------------------------


@dataclass
class Window:
    nice: int
    visitors: int
    latencies_ms: list[float] = field(default_factory=list)
    server_ms: list[float] = field(default_factory=list)
    pss_mean: float = 0.0
    pss_peak: float = 0.0
    server_peak: float = 0.0
    runs_peak: float = 0.0
    words_per_s: float = 0.0
    ended: list[str] = field(default_factory=list)
    script_cpu_ms: list[float] = field(default_factory=list)  # each script run's own thread
    server_cores: float = 0.0  # cores' worth of time used while the visitors moved: the server's,
    runs_cores: float = 0.0  # the two runs,
    other_cores: float = 0.0  # and everything else (the browsers)
    server_cpu_per_move_ms: float = 0.0


WATCH = """() => {
  const text = () => { const el = document.querySelector('.generated'); return el ? el.innerText : null; };
  const t = { before: text(), pressed: null, changed: null };
  window.__move = t;
  document.addEventListener('keydown', () => { if (t.pressed === null) t.pressed = performance.now(); },
                            { capture: true, once: true });
  const observer = new MutationObserver(() => {
    const now = text();
    if (t.pressed !== null && t.changed === null && now !== null && now !== t.before) {
      t.changed = performance.now();
      observer.disconnect();
    }
  });
  observer.observe(document.body, { subtree: true, childList: true, characterData: true });
}"""


async def visitor(browser: Any, url: str, moves: int, ready: asyncio.Barrier, seed: int) -> list[float]:
    """One visitor: open the Generate page, then move the temperature ``moves`` times; ms per change."""
    chance = random.Random(seed)
    context = await browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        page = await context.new_page()
        await page.goto(f"{url}/generate", timeout=180_000)
        await page.locator(".generated").first.wait_for(timeout=180_000)
        slider = page.get_by_role("slider", name=TEMPERATURE)
        await ready.wait()  # everyone's page is open before anyone moves
        latencies = []
        for move in range(moves):
            await asyncio.sleep(chance.uniform(0.5, 1.5))
            await page.evaluate(WATCH)
            await slider.focus()
            await slider.press("End" if move % 2 == 0 else "Home")
            await page.wait_for_function("window.__move.changed !== null", timeout=60_000)
            latencies.append(await page.evaluate("window.__move.changed - window.__move.pressed"))
        return latencies
    finally:
        await context.close()


async def visitors_window(url: str, count: int, moves: int) -> tuple[list[float], float, float]:
    """``count`` visitors at once; their latencies and the wall-clock window (epoch seconds) of the moves."""
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        ready = asyncio.Barrier(count + 1)
        tasks = [asyncio.create_task(visitor(browser, url, moves, ready, seed)) for seed in range(count)]
        # The window measures moves, not page loads: it starts once every page is open.
        opened = asyncio.create_task(ready.wait())
        done, _ = await asyncio.wait([opened, *tasks], return_when=asyncio.FIRST_COMPLETED)
        if opened not in done:
            await asyncio.gather(*tasks)  # a visitor failed before its page opened: raise its error
        start = time.time()
        results = await asyncio.gather(*tasks)
        end = time.time()
        await browser.close()
    return [latency for result in results for latency in result], start, end


def server_times(log: Path, start: float, end: float, page: str = "Generate") -> tuple[list[float], list[float]]:
    """The page's script runs that started within ``[start, end]``, from the timing log: their wall
    times and their threads' processor times, in ms."""
    times, cpu = [], []
    for line in log.read_text(encoding="utf-8").splitlines() if log.is_file() else []:
        entry = json.loads(line)
        if entry["page"] == page and start <= entry["start"] <= end:
            times.append((entry["end"] - entry["start"]) * 1000)
            cpu.append(entry.get("cpu", math.nan) * 1000)
    return times, cpu


def start_training(data: Path, epochs: int) -> list[Path]:
    """Two runs on all the plays, as the Train page starts them (this process's children)."""
    from app.visitor import Workspace, new_key
    from lstm_core.config import PRESETS
    from lstm_core.data.dataset import prepare_encoded
    from lstm_core.runs import control as runs
    from lstm_core.runs.limits import RunLimits
    from lstm_core.text.plays_cache import encoded_plays

    config = replace(PRESETS["quick"], epochs=epochs)
    limits = RunLimits.from_environment()
    dataset = prepare_encoded(
        encoded_plays(data).encoded, config.min_word_freq, config.split_fractions, name="all plays"
    )
    folders = []
    for _ in range(2):
        workspace = Workspace.for_key(new_key(), data)
        folders.append(runs.start_run(data, workspace.runs, config, dataset, limits).path)
    return folders


def run_steps(folders: list[Path]) -> list[tuple[int, str, int | None]]:
    from lstm_core.runs import folder as run_files

    found = []
    for folder in folders:
        run = run_files.read_run(folder)
        found.append((run.step, run.state, run.pid) if run else (0, "missing", None))
    return found


def load_for_nice(args: argparse.Namespace, nice: int) -> list[Window]:
    from lstm_core.config import PRESETS
    from lstm_core.runs import folder as run_files

    data = Path(tempfile.mkdtemp(prefix="bench-load-"))
    log = data / "timing.jsonl"
    settings = {"nice": str(nice), "idle_minutes": "120", "max_runs": "2", "timing_log": str(log)}
    os.environ.update({f"LSTM_PLAYHOUSE_{name.upper()}": value for name, value in settings.items()})
    os.environ["LSTM_PLAYHOUSE_DATA"], os.environ["LSTM_PLAYHOUSE_THREADS"] = str(data), "1"
    port = free_port()
    everything = os.sched_getaffinity(0)
    if args.pin and len(everything) < 2:
        raise SystemExit("--pin needs at least two cores: one for the server and the runs, the rest for the browsers")
    server_cores = {min(everything)} if args.pin else None
    if server_cores is not None:  # the browsers (started by this process) keep off the server's core
        os.sched_setaffinity(0, everything - server_cores)
    server = start_server(port, data, server_cores, **settings)
    quick = PRESETS["quick"]
    words_per_step = quick.batch_size * quick.training_seq_len
    windows = []
    folders: list[Path] = []
    try:
        wait_healthy(port, time.perf_counter())
        # One visitor's page first, so that the server is as after its first visitors (torch and
        # the demo model loaded) before anything is measured.
        asyncio.run(visitors_window(f"http://127.0.0.1:{port}", 1, 0))
        if server_cores is not None:  # the runs share the server's core, at their lower priority
            os.sched_setaffinity(0, server_cores)
        folders = start_training(data, args.run_epochs)
        if server_cores is not None:
            os.sched_setaffinity(0, everything - server_cores)
        while not all(step > 0 for step, _, _ in run_steps(folders)):
            time.sleep(0.5)
        pids = [pid for _, _, pid in run_steps(folders) if pid]
        for count in [0, *args.visitors]:
            window = Window(nice, count)
            before, began = run_steps(folders), time.time()
            with MemorySampler(server.pid, pids) as sampler:
                if count:
                    latencies, start, end = asyncio.run(visitors_window(f"http://127.0.0.1:{port}", count, args.moves))
                    window.latencies_ms = latencies
                    window.server_ms, window.script_cpu_ms = server_times(log, start, end)
                else:
                    start = time.time()
                    time.sleep(args.idle_seconds)
                    end = time.time()
            after, ended = run_steps(folders), time.time()
            # Processor time while the visitors moved the temperature (their pages' loads left out).
            window.server_cores, window.runs_cores, window.other_cores = sampler.cores(start, end)
            moves_per_s = len(window.latencies_ms) / (end - start)
            window.server_cpu_per_move_ms = window.server_cores * 1000 / moves_per_s if count else 0.0
            totals = [server + others for server, others in sampler.samples]
            window.pss_mean, window.pss_peak = statistics.mean(totals), max(totals)
            window.server_peak = max(server for server, _ in sampler.samples)
            window.runs_peak = max(others for _, others in sampler.samples)
            steps = sum(a[0] - b[0] for a, b in zip(after, before, strict=True))
            window.words_per_s = steps * words_per_step / (ended - began)
            window.ended = [f"{folder.name}: {state}" for folder, (_, state, _) in zip(folders, after, strict=True)]
            window.ended = [text for text in window.ended if not text.endswith(("running", "starting"))]
            windows.append(window)
    finally:
        for folder in folders:
            run_files.request_stop(folder)
        stop_server(server)
        for pid in [pid for _, _, pid in run_steps(folders) if pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        # The runs' processes are reaped by the local runner's waiting threads (lstm_core.runs.local),
        # which then write exit.json.
        deadline = time.monotonic() + 60
        while not all((folder / run_files.EXIT_FILE).exists() for folder in folders):
            if time.monotonic() > deadline:
                break
            time.sleep(0.2)
        shutil.rmtree(data, ignore_errors=True)
        os.sched_setaffinity(0, everything)
    return windows


def load(args: argparse.Namespace) -> None:
    windows = [window for nice in args.nice for window in load_for_nice(args, nice)]
    print(f"Visitors on the Generate page moving the temperature ({args.moves} moves each, 0.5-1.5 s apart) while")
    print(f"two runs train (Quick preset's model, all plays, 1 thread each) at the given nice; {os.cpu_count()} cores.")
    print("Browser: key press to the new continuation in the page. Server: the Generate page's script run.")
    print(
        "Memory: PSS of the server's processes and the two runs together, sampled every 0.5 s (and each part's peak)."
    )
    print()
    if args.pin:
        print("Pinned: the server and the two runs on one core, the browsers on the others.")
    print()
    header = ["nice", "visitors", "moves", "browser median ms", "browser p95 ms", "server median ms", "server p95 ms"]
    header += ["memory mean MB", "memory peak MB", "server peak MB", "runs' peak MB"]
    header += ["runs' words/s (both)", "runs ended"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))

    def spread(values: list[float]) -> list[str]:
        return [f"{statistics.median(values):.0f}", f"{percentile(values, 0.95):.0f}"] if values else ["", ""]

    for w in windows:
        cells = [str(w.nice), str(w.visitors), str(len(w.latencies_ms)), *spread(w.latencies_ms), *spread(w.server_ms)]
        cells += [f"{w.pss_mean:.0f}", f"{w.pss_peak:.0f}", f"{w.server_peak:.0f}", f"{w.runs_peak:.0f}"]
        cells += [f"{w.words_per_s:,.0f}", ", ".join(w.ended) or "none"]
        print("| " + " | ".join(cells) + " |")
    print()
    print("Processor time while the visitors moved the temperature (their pages' loads left out): each")
    print("Generate script run's own thread (median, p95), the server's processes per move, and the cores'")
    print("worth of time each part used.")
    print()
    header = ["nice", "visitors", "script CPU median ms", "script CPU p95 ms", "server CPU ms per move"]
    header += ["server cores", "runs' cores", "other cores (browsers)"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for w in windows:
        cells = [str(w.nice), str(w.visitors), *spread(w.script_cpu_ms)]
        cells += [f"{w.server_cpu_per_move_ms:.0f}" if w.visitors else ""]
        cells += [f"{w.server_cores:.2f}", f"{w.runs_cores:.2f}", f"{w.other_cores:.2f}"]
        print("| " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    cold_parser = commands.add_parser("cold", help="first page after a fresh start, and page switches")
    cold_parser.add_argument("--repeats", type=int, default=3)
    cold_parser.add_argument(
        "--read-seconds", type=float, default=0.0, help="pause on each page before the next click (default: none)"
    )
    memory_parser = commands.add_parser("memory", help="server memory as visitors start training")
    memory_parser.add_argument("--visitors", type=int, default=2, help="training visitors, one after another")
    memory_parser.add_argument("--train-seconds", type=float, default=30.0)
    load_parser = commands.add_parser("load", help="visitors moving the temperature while two runs train")
    load_parser.add_argument("--visitors", type=_numbers, default=[1, 5, 10], help="comma-separated K values")
    load_parser.add_argument("--moves", type=int, default=20, help="temperature moves per visitor")
    load_parser.add_argument("--nice", type=_numbers, default=[10, 0], help="the runs' nice values, comma-separated")
    load_parser.add_argument("--run-epochs", type=int, default=40, help="epochs of the two runs (they must outlast)")
    load_parser.add_argument("--idle-seconds", type=float, default=15.0, help="the runs alone, before the visitors")
    load_parser.add_argument(
        "--pin", action="store_true", help="the server and the runs on one core, the browsers on the others"
    )
    args = parser.parse_args()
    {"cold": cold, "memory": visitors_memory, "load": load}[args.command](args)


def _numbers(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


if __name__ == "__main__":
    main()
