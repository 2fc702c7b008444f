"""App render times: the graph page and the heatmap in headless Chromium, against an empty page.

A Streamlit server runs ``benchmarks/app_pages/empty.py`` (with ``pages/graph.py`` and
``pages/heatmap.py``) on 127.0.0.1 at a free port. Playwright drives the system Chromium
(never a downloaded browser) and times, for each page, from navigation until the content is
drawn: the text of the empty page, the vis-network canvas inside the graph iframe, the
plotly heatmap layer. The first visit of each page (imports, cold caches) is reported apart.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from typing import Any

from benchmarks.common import ROOT, Timer

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"]
PAGES = {"empty": "/", "graph": "/graph", "heatmap": "/heatmap"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server() -> tuple[subprocess.Popen, str]:
    """Start streamlit on a free loopback port; return the process and base URL."""
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "benchmarks" / "app_pages" / "empty.py"),
         "--server.headless", "true", "--server.address", "127.0.0.1", "--server.port", str(port),
         "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as reply:
                if reply.status == 200:
                    return proc, url
        except OSError:
            time.sleep(0.2)
    proc.terminate()
    raise RuntimeError("streamlit failed to start: /_stcore/health returned no 200 within 60 s")


def _wait(page, name: str) -> None:
    if name == "empty":
        page.get_by_text("benchmark page ready").wait_for(timeout=120_000)
    elif name == "graph":
        page.frame_locator("iframe").first.locator("canvas").wait_for(timeout=120_000)
    else:
        page.locator(".js-plotly-plot .heatmaplayer").first.wait_for(timeout=120_000)


def run(*, quick: bool, **_: Any) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    if not os.path.exists(CHROMIUM):
        return {"skipped": f"{CHROMIUM} not found"}
    repeats = 0 if quick else 5  # quick: first visits only
    proc, url = start_server()
    times: dict[str, list[float]] = {name: [] for name in PAGES}
    first: dict[str, float] = {}
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
            try:
                for rep in range(repeats + 1):  # visit 0 is the cold first visit
                    for name, path in PAGES.items():
                        page = browser.new_page(viewport={"width": 1400, "height": 900})
                        with Timer() as t:
                            page.goto(url + path)
                            _wait(page, name)
                        page.close()
                        if rep == 0:
                            first[name] = t.seconds
                        if rep > 0 or not repeats:
                            times[name].append(t.seconds)
            finally:
                browser.close()
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
    median = {name: sorted(v)[len(v) // 2] for name, v in times.items()}
    return {"repeats": repeats, "first_visit_seconds": first, "seconds": times, "median_seconds": median,
            "over_empty_seconds": {n: median[n] - median["empty"] for n in PAGES},
            "graph_nodes": 100, "heatmap_shape": [2000, 50]}
