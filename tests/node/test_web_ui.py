"""The web UI end to end: Debian's Chromium, driven by Playwright, opens the
page of a demo node, places an order through the form and sees it in the
order book and in the open orders, all from the WebSocket; then cancels it.

Needs PyPI `playwright` and /usr/bin/chromium (scripts/setup-system.sh
installs it; `make test` runs that). Outside CI the test skips when either
is missing; in CI it fails."""

from __future__ import annotations

import os
import re
import time

import pytest

from lxdex import commands as C
from lxdex.node.bots import demo_config
from lxdex.node.server import Node

from .wsutil import Served

CHROMIUM = "/usr/bin/chromium"


def _playwright():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        why = "PyPI playwright is not installed"
    else:
        if os.path.exists(CHROMIUM):
            return sync_playwright
        why = f"{CHROMIUM} is missing (scripts/setup-system.sh installs Debian's chromium)"
    if os.environ.get("CI"):
        pytest.fail(why)
    pytest.skip(why)


@pytest.fixture
def demo_node(tmp_path):
    n = Node(tmp_path / "node", demo_config(), sync="none")
    n.start()
    # a little market so that the page has a book, a trade and a candle
    for acct, side, price in ((1, "sell", "60010"), (1, "sell", "60020"), (2, "buy", "59990"), (2, "buy", "59980")):
        assert n.execute(C.PlaceOrder(account=acct, market="BTC-USD", side=side, qty="0.5", price=price)).ok
    assert n.execute(C.PlaceOrder(account=3, market="BTC-USD", side="buy", qty="0.1", order_type="market")).ok
    s = Served(n)
    yield n, s
    s.close()
    n.stop()


def test_place_and_cancel_an_order_in_the_browser(demo_node, tmp_path):
    sync_playwright = _playwright()
    node, served = demo_node
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--disable-gpu", "--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.goto(served.url + "/")
            page.wait_for_selector("#conn.up", timeout=15_000)
            page.wait_for_selector('#asks .lvl[data-price="60010.00"]', timeout=10_000)
            assert page.locator("#markets tbody tr").count() == 3
            assert page.locator("#trades div").first.inner_text().startswith("60,010.00")

            page.fill("#f-price", "59000")
            page.fill("#f-size", "0.25")
            page.click("#f-submit")
            page.wait_for_selector("#f-msg.ok", timeout=10_000)
            msg = page.inner_text("#f-msg")
            order_id = int(re.search(r"Order (\d+) new", msg).group(1))
            # from the user stream and the depth stream, not from a reload
            row = page.wait_for_selector(f'#orders tr[data-order-id="{order_id}"]', timeout=10_000)
            assert "59,000.00" in row.inner_text() and "0.2500" in row.inner_text()
            level = page.wait_for_selector('#bids .lvl[data-price="59000.00"]', timeout=10_000)
            assert "0.2500" in level.inner_text()
            page.wait_for_timeout(300)  # let the canvases settle for the picture
            page.screenshot(path=str(tmp_path / "ui.png"))
            with node.lock:
                assert [o["order_id"] for o in node.exchange.open_orders(0)] == [order_id]

            page.click(f'#orders tr[data-order-id="{order_id}"] button')
            page.wait_for_selector(f'#orders tr[data-order-id="{order_id}"]', state="detached", timeout=10_000)
            page.wait_for_selector('#bids .lvl[data-price="59000.00"]', state="detached", timeout=10_000)
            with node.lock:
                assert node.exchange.open_orders(0) == []

            # a market buy from the form trades against the book and shows up as a fill
            page.select_option("#f-type", "market")
            page.fill("#f-size", "0.1")
            page.click("#f-submit")
            page.wait_for_function("document.querySelector('#f-msg').textContent.includes('filled')", timeout=10_000)
            page.click('#tabs button[data-tab="fills"]')
            page.wait_for_function("document.querySelectorAll('#fills tbody tr td').length > 3", timeout=10_000)
            assert "taker" in page.inner_text("#fills tbody")
            deadline = time.time() + 5
            while "60,010.00" not in page.inner_text("#trades div:first-child") and time.time() < deadline:
                time.sleep(0.05)
            assert page.inner_text("#trades div:first-child").startswith("60,010.00")
        finally:
            browser.close()
    assert (tmp_path / "ui.png").stat().st_size > 10_000
    assert errors == []


def test_lxdex_demo_prints_the_ui_url_and_serves_it(tmp_path):
    import subprocess
    import sys

    import httpx

    from .nodeutil import free_port

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "lxdex", "demo", "--seconds", "4", "--http-port", str(port),
                             "--zmq-port", "0", "--sync", "none", "--data-dir", str(tmp_path / "d")],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("Trading page"):
                break
        url = f"http://127.0.0.1:{port}/"
        assert lines and lines[-1].rstrip().endswith(url), lines
        page = httpx.get(url, timeout=10)
        assert page.status_code == 200 and "/web/app.js" in page.text
        assert httpx.get(url + "ui/api/demo", timeout=10).json()["account"] == 0
        assert proc.wait(30) == 0
    finally:
        proc.kill()
        proc.wait()
