"""App cold start: server start to health endpoint, to the first page a browser shows, and memory.

    python bench/bench_app.py [--repeats 3]

Each repeat starts ``streamlit run streamlit_app.py`` afresh on a free port, times the health
endpoint's first ``ok``, then opens the page in headless Chromium (Debian's, at
/usr/bin/chromium) and times until the Data page's metrics are on screen (the first render
imports torch and reads the plays). The server's resident memory is read after that page.
Then, on one more fresh server, visitors one after another start a Quick run on all the plays
(``--visitors``, each in its own browser context, runs left going) and the server's memory is read
``--train-seconds`` after each start: what each training visitor adds.
Prints Markdown tables of medians; nothing here is a test.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def resident_mb(pid: int) -> float:
    """Resident memory of a process and its children, from /proc (Linux)."""
    total = 0
    for path in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = path.read_text().split(") ")[-1].split()
            if int(path.parent.name) == pid or int(fields[1]) == pid:
                status = (path.parent / "status").read_text()
                total += int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))
        except (OSError, ValueError, StopIteration):
            continue
    return total / 1024


def start_server(port: int, **settings: str) -> subprocess.Popen:
    """``streamlit run streamlit_app.py`` on ``port``, with ``LSTM_PLAYHOUSE_*`` settings."""
    env = {**os.environ, "LSTM_PLAYHOUSE_DATA": tempfile.mkdtemp(), "LSTM_PLAYHOUSE_THREADS": "1"}
    env.update({f"LSTM_PLAYHOUSE_{name.upper()}": value for name, value in settings.items()})
    command = [sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.headless", "true"]
    command += ["--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"]
    return subprocess.Popen(
        command, cwd=ROOT, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def wait_healthy(port: int, started: float) -> float:
    """Seconds from ``started`` until the health endpoint answers ``ok``."""
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=1) as response:
                if response.read() == b"ok":
                    return time.perf_counter() - started
        except OSError:
            time.sleep(0.05)
        if time.perf_counter() - started > 120:
            raise RuntimeError("the server did not become healthy in 120 s")


def one_start(browser: object) -> tuple[float, float, float]:
    port = free_port()
    started = time.perf_counter()
    server = start_server(port)
    try:
        healthy = wait_healthy(port, started)
        page = browser.new_page()  # type: ignore[attr-defined]
        page.goto(f"http://127.0.0.1:{port}/")
        page.get_by_text("Words in the text").wait_for(timeout=120_000)
        first_page = time.perf_counter() - started
        memory = resident_mb(server.pid)
        page.close()
        return healthy, first_page, memory
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def visitors_memory(browser: object, visitors: int, seconds: float) -> list[tuple[float, float]]:
    """Server memory after each of ``visitors`` starts a Quick run: (MB, words per second shown)."""
    port = free_port()
    server = start_server(port, max_runs=str(visitors))
    contexts, figures = [], []
    try:
        wait_healthy(port, time.perf_counter())
        for _ in range(visitors):
            context = browser.new_context()  # type: ignore[attr-defined]
            contexts.append(context)
            page = context.new_page()
            page.goto(f"http://127.0.0.1:{port}/train", timeout=120_000)
            page.get_by_role("button", name="Quick", exact=True).click(timeout=120_000)
            page.get_by_role("button", name="Start training").click(timeout=60_000)
            page.get_by_text("Training...").first.wait_for(timeout=120_000)
            time.sleep(seconds)
            speed = page.get_by_test_id("stMetric").filter(has_text="Words per second").inner_text()
            figures.append((resident_mb(server.pid), float(speed.split()[-1].replace(",", ""))))
        return figures
    finally:
        for context in contexts:
            context.close()
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--visitors", type=int, default=2, help="training visitors for the memory figure (0: skip)")
    parser.add_argument("--train-seconds", type=float, default=30.0)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=CHROMIUM_FLAGS)
        runs = [one_start(browser) for _ in range(args.repeats)]
        training = visitors_memory(browser, args.visitors, args.train_seconds) if args.visitors else []
        browser.close()
    healthy, first_page, memory = (statistics.median(values) for values in zip(*runs, strict=True))
    each = ", ".join(f"{h:.1f}/{p:.1f} s" for h, p, _ in runs)
    print(f"App cold start, median of {args.repeats} fresh server starts (each, health/page: {each}).")
    print("| server start to health ok | to the first page rendered (Data page metrics) | server memory after it |")
    print("|---|---|---|")
    print(f"| {healthy:.1f} s | {first_page:.1f} s | {memory:.0f} MB |")
    if training:
        print()
        print(f"Server memory with visitors training the Quick preset on all plays, {args.train_seconds:.0f} s after")
        print("each start (1 thread per run; the words/s figure is what that visitor's Train page showed).")
        print("| visitors training | server memory | that visitor's words/s |")
        print("|---|---|---|")
        for count, (megabytes, speed) in enumerate(training, start=1):
            print(f"| {count} | {megabytes:.0f} MB | {speed:,.0f} |")


if __name__ == "__main__":
    main()
