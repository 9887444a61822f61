"""A real headless Chromium (Playwright driving /usr/bin/chromium) against a running dashboard
served by the `datapipe-dashboard` entry point: every page renders its charts and key elements,
screenshots go to artifacts/dashboard/; the outage state recovers by itself in the browser."""

from __future__ import annotations

import os
import re
import subprocess
import time
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


# -- portfolio input that cannot hurt (issue 15) ------------------------------------------------------

UPLOAD_INPUT = '[data-testid="stFileUploaderDropzoneInput"]'
# User text markdown would render as formatting, links, HTML, maths, a colour, an emoji.
PAYLOADS = ("**bold**", "[click](http://x.io)", "www.x.io", "a@b.co", "<img src=x onerror=1>", "$x^2$",
            ":red[red]", ":smile:")
# The invisible WORD JOINER that keeps URL-like text from becoming a link (ui.plain).
WORD_JOINER = "\u2060"


def open_portfolio(page, dashboard: str) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{dashboard}/portfolio", wait_until="domcontentloaded")
    page.get_by_text("Market value").first.wait_for(timeout=WAIT_MS)
    page.wait_for_selector(UPLOAD_INPUT, state="attached", timeout=WAIT_MS)


def upload_csv(page, name: str, data: bytes) -> None:  # type: ignore[no-untyped-def]
    page.locator(UPLOAD_INPUT).set_input_files(files=[{"name": name, "mimeType": "text/csv", "buffer": data}])


def test_portfolio_problems_are_shown_literally_in_chromium(dashboard, page) -> None:
    open_portfolio(page, dashboard)
    rows = "".join(f'MSFT,"{p}",1\n' for p in PAYLOADS) + 'IBM,"1,5",100\n' + "".join(
        f"ZZ{i:02d},1,1\n" for i in range(30))
    upload_csv(page, "**evil**.csv", f"symbol,shares,cost_basis\n{rows}MSFT,1,100\n".encode())
    alert = page.locator('[data-testid="stAlert"]').filter(has_text="row(s) of CSV")
    alert.wait_for(timeout=WAIT_MS)
    text = alert.inner_text().replace(WORD_JOINER, "")
    for payload in PAYLOADS:  # shown as typed: no bold, link, image, formula, colour or emoji made of it
        assert f"shares '{payload}' is not a number" in text, text
    assert "shares '1,5' contains a comma: write numbers like 1500 or 1.5" in text
    assert "39 row(s) of CSV **evil**.csv ignored" in text
    assert alert.locator("a, img, .katex, h1, h2, h3").count() == 0
    assert alert.locator("strong").all_inner_texts() == ["39 row(s) of CSV **evil**.csv ignored:"]
    assert alert.locator("li").count() == 21 and "and 19 more not shown" in text  # capped at 20
    page.screenshot(path=str(ARTIFACTS / "portfolio-problems.png"), full_page=True)


def test_uploads_over_one_megabyte_are_refused_by_the_browser_and_the_server(dashboard, page) -> None:
    # the server tells the browser where to upload over the app's WebSocket (session id inside)
    frames: list[bytes] = []
    page.on("websocket", lambda ws: ws.on(
        "framereceived", lambda f: frames.append(f if isinstance(f, bytes) else f.encode())))
    open_portfolio(page, dashboard)
    small = b"symbol,shares,cost_basis\nMSFT,2,300\n"
    upload_csv(page, "small.csv", small)
    deadline = time.monotonic() + WAIT_MS / 1000
    while not (doors := [m for f in frames for m in re.findall(rb"/_stcore/upload_file/[0-9a-f-]{36}/", f)]):
        assert time.monotonic() < deadline, "the server gave the browser no upload URL"
        page.wait_for_timeout(100)
    big = b"symbol,shares,cost_basis\n" + b"MSFT,1,1\n" * 150_000  # 1.35 MB
    assert len(big) > 1024 * 1024

    # the browser refuses it: the server's limit reaches the page
    upload_csv(page, "big.csv", big)
    page.get_by_text("or smaller", exact=False).first.wait_for(timeout=WAIT_MS)

    # the server refuses it even when a client skips the browser's check: a real HTTP PUT to this
    # session's upload endpoint with its XSRF cookie and header, answered 413 before it is read
    door = f"{dashboard}{doors[0].decode()}"
    token = next(c["value"] for c in page.context.cookies() if c["name"] == "_streamlit_xsrf")
    refused = page.request.put(f"{door}bypass-big", headers={"X-Xsrftoken": token},
                               multipart={"file": {"name": "big.csv", "mimeType": "text/csv", "buffer": big}})
    assert refused.status == 413, (refused.status, refused.text()[:200])
    accepted = page.request.put(f"{door}bypass-small", headers={"X-Xsrftoken": token},
                                multipart={"file": {"name": "small.csv", "mimeType": "text/csv", "buffer": small}})
    assert accepted.status == 204, (accepted.status, accepted.text()[:200])  # the same door, under 1 MB
