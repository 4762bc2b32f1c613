"""The demo chat in a real browser: Playwright's Python package driving Debian's chromium.

No browser is downloaded: Playwright launches the system ``chromium``
(scripts/system-deps.sh installs it; without it these tests fail, they do
not skip). The server runs on a trustme certificate that chromium does not
know, so every browser context is made with ``ignore_https_errors=True``:
TLS is really negotiated (the page reports the TLS version monoport saw),
only the certificate check is waived. Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.conftest import ARTIFACTS

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

#: generous: two cores are shared by several test runs
WAIT_MS = 30_000

expect.set_options(timeout=WAIT_MS)


#: Chromium keeps spare TLS connections it has not used yet (backup connect jobs on a slow
#: connect, preconnects) and may send its next request on one seconds later. Such a connection
#: chose HTTP/1.1 by ALPN, and monoport serves it as HTTP however long it stays silent; a short
#: sniff timeout makes every browser test prove it (tests/test_core_e2e.py proves it by hand).
BROWSER_SNIFF = ["--sniff-timeout", "0.5"]


@pytest.fixture
def server(monoport, tls_args):
    """monoport with its default app (webapp) on a trustme certificate."""
    return monoport(tls_args + BROWSER_SNIFF)


@pytest.fixture
def console_errors() -> list[str]:
    """Every console error and uncaught exception of the pages a test opened (none are allowed)."""
    return []


@pytest.fixture
def open_page(browser: Browser, server, console_errors):
    contexts = []

    def open_(query: str = "", base: str | None = None, **context_options) -> Page:
        # the test CA is not in chromium's store: the certificate check is waived here, TLS is not
        context = browser.new_context(ignore_https_errors=True, **context_options)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        page.on("console", lambda msg: console_errors.append(f"{msg.type}: {msg.text} ({msg.location})")
                if msg.type == "error" else None)
        page.on("pageerror", lambda exc: console_errors.append(f"uncaught: {exc}"))
        page.goto((base or f"https://localhost:{server.port}") + "/" + query)
        expect(page.locator("body")).to_have_attribute("data-state", "connected")
        return page

    yield open_
    for context in contexts:
        context.close()
    assert console_errors == [], console_errors


def join(page: Page, room: str, nick: str) -> None:
    page.fill("#nick", nick)
    page.fill("#room", room)
    page.click("#join")
    expect(page.locator("body")).to_have_attribute("data-room", room)


def say(page: Page, text: str) -> None:
    page.fill("#text", text)
    page.press("#text", "Enter")
    expect(page.locator("#text")).to_have_value("")


def screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def test_two_browsers_chat_over_wss_and_a_third_on_polling_sees_it_all(open_page, server):
    alice, bob = open_page(), open_page()
    carol = open_page("?transport=polling")
    for page, nick in ((alice, "alice"), (bob, "bob"), (carol, "carol")):
        join(page, "demo", nick)
    for page in (alice, bob):
        expect(page.locator("body")).to_have_attribute("data-transport", "websocket")  # upgraded
        expect(page.locator("#transport")).to_have_text("transport: websocket")
        expect(page.locator("#tls")).to_contain_text("TLS: on (TLSv1.")
        expect(page.locator("#tls")).to_contain_text("ended by monoport")
    expect(carol.locator("#transport")).to_have_text("transport: polling (forced)")
    expect(alice.locator("#members li")).to_have_text(["alice", "bob", "carol"])

    bob.fill("#text", "typing away")
    expect(alice.locator("#typing")).to_have_text("bob is typing…")
    bob.fill("#text", "")

    say(alice, "hello <b>bob</b> & <img src=x onerror=alert(1)>")
    say(bob, "hi alice")
    texts = ["hello <b>bob</b> & <img src=x onerror=alert(1)>", "hi alice"]
    for page in (alice, bob, carol):
        expect(page.locator("#messages li .text")).to_have_text(texts)
        expect(page.locator("#messages li .nick")).to_have_text(["alice", "bob"])
        expect(page.locator("#messages li time")).to_have_count(2)
        assert page.locator("#messages b, #messages img").count() == 0  # shown as text, never as HTML
    expect(alice.locator("#typing")).to_have_text("")  # bob's message ended his typing notice

    say(carol, "carol over long-polling")
    expect(alice.locator("#messages li .text").last).to_have_text("carol over long-polling")
    assert carol.evaluate("document.body.dataset.transport") == "polling"  # never upgraded

    carol.fill("#text", "é" * 3000)  # 6000 bytes: over the 4 KB limit
    carol.press("#text", "Enter")
    expect(carol.locator("#error")).to_be_visible()
    expect(carol.locator("#error")).to_have_attribute("data-code", "too_long")
    screenshot(alice, "browser-chat.png")
    screenshot(carol, "browser-chat-polling.png")

    for page in (alice, bob, carol):
        page.context.close()  # the server logs a connection when it ends
    server.wait_log(" wss TLSv1.", timeout=20)
    server.wait_log(" polling-tls TLSv1.", timeout=20)


def test_a_reload_keeps_the_nickname_and_rejoins_with_history(open_page):
    dave = open_page()
    join(dave, "reload", "dave")
    say(dave, "before the reload")
    dave.reload()
    expect(dave.locator("body")).to_have_attribute("data-room", "reload")
    expect(dave.locator("#nick")).to_have_value("dave")
    expect(dave.locator("#members li")).to_have_text(["dave"])
    expect(dave.locator("#messages li .text")).to_have_text(["before the reload"])
    say(dave, "after the reload")
    expect(dave.locator("#messages li .text")).to_have_text(["before the reload", "after the reload"])


def test_the_page_is_readable_on_a_phone(open_page):
    phone = open_page(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True,
                      device_scale_factor=2)
    join(phone, "mobile", "pat")
    say(phone, "a long line " * 20)
    overflow = phone.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the page is {overflow}px wider than the phone"
    assert phone.locator("#send").is_visible() and phone.locator("#members").is_visible()
    screenshot(phone, "browser-phone.png")


def test_the_page_says_when_tls_is_off(open_page, monoport):
    clear = monoport(["--tls", "off"] + BROWSER_SNIFF)
    page = open_page(base=f"http://127.0.0.1:{clear.port}")
    join(page, "clear", "eve")
    expect(page.locator("#tls")).to_have_text("TLS: off")
    expect(page.locator("body")).to_have_attribute("data-scheme", "http")
    expect(page.locator("#transport")).to_have_text("transport: websocket")
    say(page, "over ws://")
    expect(page.locator("#messages li .text")).to_have_text(["over ws://"])


def test_the_page_loads_with_no_console_error_and_its_favicon_answers(open_page, console_errors):
    # chromium asks for /favicon.ico on every load; a 404 would be a console error
    page = open_page()
    join(page, "quiet", "quinn")
    say(page, "no errors")
    page.reload()
    expect(page.locator("#messages li .text")).to_have_text(["no errors"])
    assert page.evaluate("fetch('/favicon.ico').then((r) => r.status)") == 204
    assert console_errors == []  # (open_page checks it again after every test)


def test_a_recovered_reconnect_says_so_and_shows_the_missed_messages_in_place(open_page, monoport, tls_args):
    recovering = monoport(tls_args + BROWSER_SNIFF + ["--recovery", "30"])
    base = f"https://localhost:{recovering.port}"
    alice, bob = open_page(base=base), open_page(base=base)
    join(alice, "recover", "alice")
    join(bob, "recover", "bob")
    expect(alice.locator("body")).to_have_attribute("data-transport", "websocket")
    say(alice, "before")
    expect(bob.locator("#messages li .text")).to_have_text(["before"])
    # alice's connection drops (her Engine.IO socket closes its WebSocket without a goodbye: the
    # server sees a lost transport), and she stays away while bob talks
    alice.evaluate("() => { chatSocket.io.reconnection(false); chatSocket.io.engine.close(); }")
    expect(alice.locator("body")).to_have_attribute("data-state", "disconnected")
    expect(bob.locator("#members li")).to_have_text(["bob"])
    say(bob, "missed 1")
    say(bob, "missed 2")
    alice.evaluate("() => { chatSocket.io.reconnection(true); chatSocket.connect(); }")
    expect(alice.locator("body")).to_have_attribute("data-state", "connected")
    expect(alice.locator("body")).to_have_attribute("data-recovered", "true")
    expect(alice.locator("#conn")).to_have_text("connected (recovered, 2 missed messages shown)")
    texts = ["before", "missed 1", "missed 2"]
    expect(alice.locator("#messages li .text")).to_have_text(texts)  # in order, once each
    expect(alice.locator("#messages li.missed .text")).to_have_text(["missed 1", "missed 2"])
    expect(bob.locator("#members li")).to_have_text(["alice", "bob"])
    say(bob, "after")
    expect(alice.locator("#messages li .text")).to_have_text(texts + ["after"])
    screenshot(alice, "browser-recovered.png")


def test_messages_are_shown_in_id_order_and_once_whatever_order_they_arrive_in(open_page):
    # two instances deliver through Redis with ids from one counter: a later id may arrive first
    page = open_page()
    join(page, "order", "olga")
    say(page, "one")
    page.evaluate("""() => {
        const deliver = chatSocket.listeners("message")[0];
        const first = Number(document.querySelector("#messages li").dataset.id);
        const msg = (n, text) => ({id: first + n, room: "order", nick: "x", text: text, ts: Date.now()});
        deliver(msg(2, "three")); deliver(msg(1, "two")); deliver(msg(1, "two")); deliver(msg(3, "four"));
    }""")
    expect(page.locator("#messages li .text")).to_have_text(["one", "two", "three", "four"])


def test_two_tabs_with_one_nickname_are_one_member(open_page):
    tab1, tab2, other = open_page(), open_page(), open_page()
    join(tab1, "tabs", "tess")
    join(tab2, "tabs", "tess")
    join(other, "tabs", "otto")
    for page in (tab1, tab2, other):
        expect(page.locator("#members li")).to_have_text(["otto", "tess"])
    tab1.context.close()
    say(other, "still one tess")
    expect(tab2.locator("#members li")).to_have_text(["otto", "tess"])
