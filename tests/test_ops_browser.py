"""The stats page in a real headless Chromium, with a websocket client connected meanwhile."""

from __future__ import annotations

from tests.clients import sio_client
from tests.conftest import ARTIFACTS

APP = ["--app", "tests.apps.echo_app:app"]


def test_stats_page_renders_in_chromium_and_shows_the_connected_websocket(monoport, tls_args, tls_files, browser):
    server = monoport(APP + tls_args + ["--instance-id", "demo1"])
    client = sio_client(server.url, tls_files["ca"], ["websocket"])
    try:
        assert client.call("echo", "hi", timeout=10) == "hi"
        page = browser.new_page(ignore_https_errors=True, viewport={"width": 1000, "height": 900})
        try:
            response = page.goto(server.url + "/monoport/stats", timeout=30_000)
            assert response is not None and response.status == 200
            assert page.title() == "monoport demo1 stats"
            refresh = page.locator('meta[http-equiv="refresh"]').get_attribute("content")
            assert refresh and int(refresh) > 0
            clients = page.locator("section", has_text="Clients connected now")
            wss_rows = clients.locator("tbody tr", has_text="wss")
            assert wss_rows.count() == 1
            assert "TLSv1" in wss_rows.first.inner_text()
            kinds = page.locator("section", has_text="Connections now, by kind").inner_text()
            assert "wss" in kinds and "https" in kinds  # the websocket and the browser itself
            assert "Socket.IO sessions" in page.inner_text("body")
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "stats-page.png"), full_page=True)
            # readable on a phone: the page fits a narrow viewport without horizontal page scroll
            page.set_viewport_size({"width": 390, "height": 844})
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= 400
            page.screenshot(path=str(ARTIFACTS / "stats-page-phone.png"), full_page=False)
        finally:
            page.close()
    finally:
        client.disconnect()
