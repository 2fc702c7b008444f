"""End-to-end test of the app in a real browser: Playwright driving Debian's chromium.

The test starts ``streamlit run app.py`` on 127.0.0.1 with ``GCP_PROJECT_DIR`` pointing at
a copy of the demo project, walks through the workflow (graph, acquisition, teacher,
training, diagnostics, graph edit, intervention playground) and saves a screenshot of
every page to ``test-artifacts/screenshots/`` and the server log to
``test-artifacts/streamlit-e2e.log``. The browser resolves no host but
127.0.0.1. Without ``/usr/bin/chromium`` the test is skipped, unless ``GCP_REQUIRE_BROWSER``
is set (as in CI), where a missing browser fails it.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = REPO / "test-artifacts" / "screenshots"
XSS = "<img src=x onerror=alert(1)>"
BROWSER_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]
TIMEOUT_MS = 90_000  # one Streamlit rerun on a loaded 2-core machine stays well under this
JOB_TIMEOUT_MS = 240_000  # proposing, annotating or training through the UI

pytestmark = pytest.mark.browser

if not CHROMIUM.exists():
    if os.environ.get("GCP_REQUIRE_BROWSER"):
        pytest.fail(f"GCP_REQUIRE_BROWSER is set but {CHROMIUM} is missing: install Debian's "
                    "chromium (apt-get install chromium)", pytrace=False)
    pytest.skip(f"{CHROMIUM} not found: install Debian's chromium to run the browser tests",
                allow_module_level=True)

from playwright.sync_api import Frame, Page, expect, sync_playwright  # noqa: E402
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError  # noqa: E402

from gcp.loop import Studio, demo_project  # noqa: E402

expect.set_options(timeout=TIMEOUT_MS)


# ---------------------------------------------------------------------- fixtures


def shared_demo(tmp_path_factory) -> Path:
    """Build the demo project with every embedding cached, once per test session."""
    folder = tmp_path_factory.getbasetemp() / "gcp-demo-embedded"
    marker = folder / ".embedded"
    if not marker.exists():
        demo_project(folder)
        with Studio.open(folder) as studio:
            studio.embeddings()
        marker.touch()
    return folder


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_health(url: str, process: subprocess.Popen, log_path: Path) -> None:
    """Poll Streamlit's health endpoint for up to 60 s; fail if the server exits first."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"streamlit exited with code {process.returncode}; see {log_path}")
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    process.kill()
    pytest.fail(f"streamlit did not answer {url}/_stcore/health within 60 s; see {log_path}")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """URL of a Streamlit server on a fresh copy of the demo project; stopped by PID after."""
    project = tmp_path_factory.mktemp("e2e") / "project"
    shutil.copytree(shared_demo(tmp_path_factory), project)
    port = free_port()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    log_path = SCREENSHOTS.parent / "streamlit-e2e.log"
    env = dict(os.environ, GCP_PROJECT_DIR=str(project), GCP_NUM_THREADS="2")
    command = [
        sys.executable, "-m", "streamlit", "run", "app.py",
        "--server.address", "127.0.0.1", "--server.port", str(port),
        "--server.headless", "true", "--browser.gatherUsageStats", "false",
        "--server.fileWatcherType", "none",
    ]
    with log_path.open("w") as log:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        wait_for_health(url, process, log_path)

        yield {"url": url, "project": project}

        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


@pytest.fixture(scope="module")
def browser_page(server):
    """A chromium page and the list of JavaScript dialogs (alert, confirm, prompt) it saw."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=BROWSER_ARGS
        )
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(TIMEOUT_MS)
        dialogs: list[str] = []

        def on_dialog(dialog) -> None:
            dialogs.append(dialog.message)
            dialog.dismiss()

        page.on("dialog", on_dialog)
        yield page, dialogs
        browser.close()


# ---------------------------------------------------------------------- helpers


def open_page(page: Page, slug: str, title: str) -> None:
    """Click the sidebar link of a page (same session) and wait for its title."""
    page.locator(f'[data-testid="stSidebarNav"] a[href$="/{slug}"]').click()
    expect(page.get_by_role("heading", name=title, exact=True)).to_be_visible()
    settle(page)


def settle(page: Page) -> None:
    """Wait until Streamlit has no script run in progress."""
    page.wait_for_timeout(300)
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=TIMEOUT_MS
    )


def screenshot(page: Page, name: str) -> None:
    settle(page)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def graph_frame(page: Page) -> Frame:
    """The iframe with the vis-network drawing, once its canvas is drawn."""
    page.frame_locator("iframe").first.locator("canvas").wait_for()
    frames = [f for f in page.frames if f != page.main_frame and f.evaluate(
        "() => typeof network !== 'undefined'")]
    assert len(frames) == 1
    return frames[0]


def hover_node(page: Page, frame: Frame, node: str) -> str:
    """Move the mouse over a graph node and return the tooltip's text."""
    point = frame.evaluate(
        "(id) => network.canvasToDOM(network.getPositions([id])[id])", node
    )
    canvas = frame.frame_element().bounding_box()
    offset = frame.evaluate(
        "() => { const r = document.getElementById('mynetwork').getBoundingClientRect();"
        " return {x: r.left, y: r.top}; }"
    )
    page.mouse.move(canvas["x"] + offset["x"] + point["x"], canvas["y"] + offset["y"] + point["y"])
    tooltip = frame.locator("div.vis-tooltip")
    expect(tooltip).to_be_visible()
    return tooltip.inner_text()


def choose(page: Page, label: str, option: str) -> None:
    """Pick `option` in the Streamlit selectbox or multiselect labelled `label`."""
    box = page.get_by_role("combobox", name=label, exact=True)
    widget = page.locator('[data-testid="stSelectbox"], [data-testid="stMultiSelect"]').filter(
        has=box)
    for _ in range(3):
        settle(page)
        box.click()
        box.fill(option)  # typing filters the options and opens the list
        try:
            page.get_by_role("option", name=option, exact=True).click(timeout=10_000)
        except PlaywrightTimeoutError:
            page.keyboard.press("Escape")  # a rerun re-rendered the widget; try again
        settle(page)
        multiselect = widget.get_attribute("data-testid") == "stMultiSelect"
        if multiselect and widget.get_by_text(option, exact=True).count():
            return
        if not multiselect and box.input_value() == option:
            return
    page.screenshot(path=str(SCREENSHOTS / "failed-choose.png"))
    raise AssertionError(f"could not choose {option!r} in {label!r}")


def metric_value(page: Page, label: str) -> str:
    metric = page.locator('[data-testid="stMetric"]').filter(has_text=label)
    return metric.locator('[data-testid="stMetricValue"]').inner_text()


# ---------------------------------------------------------------------- the journey


def test_e2e_workflow_journey(server, browser_page):
    (page, dialogs), url = browser_page, server["url"]

    # Project page: overview cards of the demo project.
    page.goto(url + "/")
    expect(page.get_by_text("Labels used")).to_be_visible()
    assert metric_value(page, "Labels used") == "0"
    folder = page.get_by_test_id("stSidebar").get_by_label("Project folder", exact=True)
    folder.fill(str(server["project"] / "missing"))
    folder.press("Enter")
    sidebar = page.get_by_test_id("stSidebar")
    expect(sidebar.get_by_text("project folder not found")).to_be_visible()
    folder.fill(str(server["project"]))
    folder.press("Enter")
    expect(sidebar.get_by_text("project folder not found")).to_have_count(0)
    screenshot(page, "01-project")

    # Concept graph: vis-network drew every node offline.
    open_page(page, "concept_graph", "Concept graph")
    frame = graph_frame(page)
    assert frame.evaluate("network.body.data.nodes.length") == 14
    assert frame.evaluate("typeof vis") == "object"
    screenshot(page, "02-concept-graph")

    # Acquisition: propose a random round, approve it, ask the recorded teacher.
    open_page(page, "acquisition", "Acquisition")
    strategy = page.get_by_role("combobox", name="Strategy", exact=True)
    expect(strategy).to_have_value(re.compile(r"^random: "))  # no student yet
    page.get_by_label("Batch size", exact=True).fill("120")
    page.get_by_role("button", name="Propose a round").click()
    expect(page.get_by_text("Round 1: review the candidates")).to_be_visible(timeout=JOB_TIMEOUT_MS)
    expect(page.get_by_text("120 candidates: 0 approved")).to_be_visible()
    screenshot(page, "03-acquisition-candidates")
    page.get_by_role("button", name="Approve all").click()
    expect(page.get_by_text("120 candidates: 120 approved")).to_be_visible()
    page.get_by_role("button", name=re.compile(r"^Send 120 approved to the teacher")).click()
    expect(page.get_by_text("120 answered, 0 failed")).to_be_visible(timeout=JOB_TIMEOUT_MS)
    expect(page.get_by_text("Teacher answers")).to_be_visible()
    screenshot(page, "04-acquisition-answers")

    # Training: a full training with few epochs; reload while it runs, the job survives.
    open_page(page, "training", "Training")
    page.get_by_text("Training settings").click()
    page.get_by_label("Maximum epochs", exact=True).fill("15")
    page.get_by_label("Maximum epochs", exact=True).press("Enter")
    settle(page)
    page.get_by_role("button", name="Train the student").click()
    expect(page.get_by_text(re.compile(r"Training the student(:| finished)")).first).to_be_visible()
    page.reload()
    expect(page.get_by_text("Training the student finished")).to_be_visible(timeout=JOB_TIMEOUT_MS)
    expect(page.get_by_text("round 1 closed")).to_be_visible()
    page.locator(".js-plotly-plot").first.wait_for()
    screenshot(page, "05-training")

    # Diagnostics: the texts x nodes heatmap, then the intervention playground.
    open_page(page, "diagnostics", "Diagnostics")
    page.locator(".js-plotly-plot .heatmaplayer").first.wait_for(timeout=JOB_TIMEOUT_MS)
    screenshot(page, "06-diagnostics-heatmap")
    page.get_by_role("tab", name="Intervention playground").click()
    text = page.get_by_label("Text", exact=True)
    text.fill("A dull, lifeless film.")
    text.press("Control+Enter")
    expect(page.get_by_text("Output with overrides")).to_be_visible()
    choose(page, "ironic", "no")
    choose(page, "tone", "positive")
    expect(page.locator('[data-testid="stMetric"]').filter(has_text="Output with overrides")
           .locator('[data-testid="stMetricValue"]')).to_have_text("fresh")
    choose(page, "tone", "negative")
    expect(page.locator('[data-testid="stMetric"]').filter(has_text="Output with overrides")
           .locator('[data-testid="stMetricValue"]')).to_have_text("rotten")
    screenshot(page, "07-intervention-playground")

    # Concept graph: nodes are coloured by the trained student's accuracy.
    open_page(page, "concept_graph", "Concept graph")
    colours = graph_frame(page).evaluate("network.body.data.nodes.get().map(n => n.color)")
    assert len(set(colours)) > 1
    assert "#c8c8c8" not in colours  # grey: no metric
    screenshot(page, "08-concept-graph-coloured")

    # Concept graph: add a node through the form and read the retraining plan.
    page.get_by_role("tab", name="Add node").click()
    page.get_by_label("New node name", exact=True).fill("sarcastic")
    page.get_by_label("Question for the teacher").fill(f"Is it sarcastic? {XSS}")
    page.get_by_label("Description (optional)").fill(XSS)
    children = "Children (at least one path must reach the output node)"
    choose(page, children, "tone")
    page.keyboard.press("Escape")
    page.get_by_role("button", name="Add node").click()
    expect(page.get_by_text("Saved graph version 2: added node sarcastic")).to_be_visible()
    expect(page.get_by_text("Modules to retrain:")).to_be_visible()
    frame = graph_frame(page)
    assert frame.evaluate("network.body.data.nodes.length") == 15
    tooltip = hover_node(page, frame, "sarcastic")
    assert f"Question: Is it sarcastic? {XSS}" in tooltip
    assert f"Description: {XSS}" in tooltip
    assert frame.locator("div.vis-tooltip img").count() == 0
    screenshot(page, "09-concept-graph-edited")

    # The same markup typed as a node name is rejected, and the message shows it as text.
    page.get_by_role("tab", name="Add node").click()
    page.get_by_label("New node name", exact=True).fill(XSS)
    page.get_by_label("Question for the teacher").fill("Is it a test?")
    choose(page, children, "tone")
    page.keyboard.press("Escape")
    page.get_by_role("button", name="Add node").click()
    error = page.locator('[data-testid="stAlertContentError"]').filter(has_text="invalid node name")
    expect(error).to_contain_text(f"invalid node name '{XSS}'")
    assert page.locator('[data-testid="stMain"] img[src="x"]').count() == 0
    screenshot(page, "10-invalid-node-name")

    # Node details show the question and description literally.
    page.get_by_text("Node details").click()
    choose(page, "Node", "sarcastic")
    expect(page.locator('[data-testid="stText"]').filter(has_text=XSS).first).to_be_visible()

    # The remaining pages render; every page has a screenshot.
    open_page(page, "annotations", "Annotations")
    screenshot(page, "11-annotations")
    open_page(page, "export", "Export")
    expect(page.get_by_role("button", name="Annotations as CSV")).to_be_visible()
    screenshot(page, "12-export")

    assert dialogs == []
