"""The README's picture of the app: the Generate page writing with the demo model, as a visitor sees it.

    python docs/screenshot.py                 # writes docs/screenshot.png
    python docs/screenshot.py --out shot.png

Starts ``streamlit run streamlit_app.py`` on a free port with an empty data folder, opens the
Generate page in headless Chromium (Debian's, as the browser tests use it), waits until the
continuation is written and the script run is over, and saves the visible part of the page. Run it
again after a change to what the first screen of a page shows.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: the project's packages are one folder up
    sys.path.insert(0, str(ROOT))

from bench.bench_app import (  # noqa: E402  (after the path is set)
    CHROMIUM,
    CHROMIUM_FLAGS,
    free_port,
    page_done,
    start_server,
    stop_server,
    wait_healthy,
)

PAGE_TITLE = "Generate"
VIEWPORT = {"width": 1400, "height": 1000}


def take(out: Path) -> None:
    """Start a server, open the Generate page, and save what the browser shows to ``out``."""
    from playwright.sync_api import sync_playwright

    port = free_port()
    with tempfile.TemporaryDirectory() as data:
        server = start_server(port, data)
        try:
            wait_healthy(port, time.perf_counter())
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
                try:
                    page = browser.new_page(viewport=VIEWPORT)
                    page.goto(f"http://127.0.0.1:{port}/generate")
                    page_done(page, PAGE_TITLE)
                    # The widgets drawn, the continuation written, no element still a loading skeleton.
                    page.get_by_role("slider", name="Temperature").wait_for(timeout=60_000)
                    page.get_by_text("thou art more", exact=False).first.wait_for(timeout=60_000)
                    page.locator('[data-testid="stSkeleton"]').first.wait_for(state="detached", timeout=60_000)
                    page.wait_for_timeout(500)  # the last fonts and the tab underline settle
                    page.screenshot(path=str(out))
                finally:
                    browser.close()
        finally:
            stop_server(server)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshot.png", help="where to save the PNG")
    args = parser.parse_args()
    take(args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1000:.0f} kB)")


if __name__ == "__main__":
    main()
