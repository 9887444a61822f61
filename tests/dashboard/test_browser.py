"""A real headless Chromium (Playwright driving /usr/bin/chromium) against a running dashboard
served by the `datapipe-dashboard` entry point: every page renders its charts and key elements,
screenshots go to artifacts/dashboard/; the outage state recovers by itself in the browser."""

from __future__ import annotations

import os
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from dashboard_helpers import ROOT, free_port, start_warehouse, stop_warehouse, venv_bin, wait_http

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = ROOT / "artifacts" / "dashboard"
# Generous: the machine is shared.
WAIT_MS = 90_000
# Vega-Lite charts drawn: the view has rendered its marks (SVG).
CHARTS_DRAWN = ("Array.from(document.querySelectorAll('[data-testid=\"stVegaLiteChart\"]'))"
                ".filter(e => e.querySelector('svg.marks .role-mark')).length")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def serve(env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [str(venv_bin("dashboard", "datapipe-dashboard")), "--port", str(port), "--address", "127.0.0.1"],
        env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    wait_http(f"{base}/_stcore/health", timeout_s=60, proc=proc)
    return proc, base


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


def dashboard_env(dataset, **extra: str) -> dict[str, str]:
    return {**dataset.settings.libpq, "DASHBOARD_NOW": dataset.settings.now().isoformat(), **extra}


@pytest.fixture(scope="module")
def dashboard(published) -> Iterator[str]:
    """The dashboard over the pipeline-published dataset."""
    proc, base = serve(dashboard_env(published))
    yield base
    stop(proc)


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test-dashboard` installs it (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1600, "height": 1000})
    p = context.new_page()
    yield p
    context.close()


def test_health_endpoint_for_kubernetes_probes(dashboard) -> None:
    with urllib.request.urlopen(f"{dashboard}/_stcore/health", timeout=5) as resp:
        assert resp.status == 200 and resp.read() == b"ok"


PAGES = {
    # url path: (texts that must be visible, Vega-Lite charts expected, min dataframes)
    "": (["Market overview", "Data as of {last_day}", "Advancers"], 0, 1),
    "symbol?symbol=IBM": (["Symbol detail", "International Business Machines", "Company", "RSI 14"], 1, 0),
    "portfolio": (["Portfolio", "Market value", "Value over time", "Allocation"], 2, 2),
    "quality": (["Data quality", "Requests today", "Last quality gate", "Publish history",
                 "Freshness per symbol"], 0, 4),
}


@pytest.mark.parametrize("path", list(PAGES))
def test_every_page_renders_in_chromium(dashboard, published, page, path) -> None:
    texts, charts, frames = PAGES[path]
    texts = [t.format(last_day=published.last_day) for t in texts]
    page.goto(f"{dashboard}/{path}", wait_until="domcontentloaded")
    page.wait_for_selector('[data-testid="stMain"]', timeout=WAIT_MS)
    for text in texts:
        page.get_by_text(text, exact=False).first.wait_for(timeout=WAIT_MS)
    if charts:
        page.wait_for_function(f"{CHARTS_DRAWN} >= {charts}", timeout=WAIT_MS)
        assert page.locator('[data-testid="stVegaLiteChart"]').count() == charts
    if frames:
        page.wait_for_function(
            f"document.querySelectorAll('[data-testid=\"stDataFrame\"] canvas').length >= {frames}", timeout=WAIT_MS
        )
    page.wait_for_timeout(500)  # let the grids paint before the screenshot
    assert page.locator('[data-testid="stException"]').count() == 0
    nav = page.locator('[data-testid="stSidebarNav"] a')
    labels = sorted(t.split("\n")[-1] for t in nav.all_inner_texts())  # the icon's ligature comes first
    assert labels == ["Data quality", "Market overview", "Portfolio", "Symbol detail"]
    assert page.get_by_text("Page not found").count() == 0
    shot = ARTIFACTS / f"{path.split('?')[0] or 'market'}.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 20_000


def test_outage_recovers_in_the_browser_without_reload(dataset, page) -> None:
    proc, base = serve(dashboard_env(dataset, DASHBOARD_RETRY_SECONDS="2"))
    server = dataset.warehouse.server
    try:
        stop_warehouse(server)
        try:
            page.goto(f"{base}/", wait_until="domcontentloaded")
            page.get_by_text("The warehouse is not reachable").wait_for(timeout=WAIT_MS)
            page.get_by_text("Retrying in", exact=False).wait_for(timeout=10_000)
            assert page.locator('[data-testid="stException"]').count() == 0
            page.screenshot(path=str(ARTIFACTS / "outage.png"), full_page=True)
        finally:
            start_warehouse(server)
        # No reload: the retry countdown notices the warehouse and reruns the page.
        page.get_by_text("Data as of 2026-11-25").wait_for(timeout=WAIT_MS)
        page.wait_for_selector('[data-testid="stDataFrame"]', timeout=WAIT_MS)
        assert page.get_by_text("The warehouse is not reachable").count() == 0
        page.screenshot(path=str(ARTIFACTS / "recovered.png"), full_page=True)
    finally:
        stop(proc)
