"""Personal frames on the dashboard, in a real browser (issue 23): Chromium, daphne, the market and Redis.

A signed-in page shows a toast and bumps its unread badge when an alert frame for its user is published to the
channel layer; another user's page, open at the same time on the same process, shows nothing of it. The
alerts API is answered here by the page's own route (its contract: docs/protocol.md, "Personal frames"), so
this test is about the push and the page, not the API.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json

import pytest
from playwright.sync_api import expect

from ticker.wire import personal

from .test_browser import ALWAYS_OPEN, browser  # noqa: F401 (the fixture)
from .test_personal import SIGN_IN

pytestmark = [pytest.mark.browser, pytest.mark.processes]


def fired(alert_id: int, symbol: str, note: str) -> dict:
    """An alert as it fired, in the alert JSON's one shape."""
    return {
        "id": alert_id,
        "symbol": symbol,
        "condition": "price_above",
        "value": "101.00",
        "note": note,
        "state": "triggered",
        "created_at": "2026-01-02T10:00:00+00:00",
        "triggered_at": "2026-01-02T10:05:00+00:00",
        "price": 101.5,
        "change_pct": 1.5,
        "step": 40,
        "read": False,
    }


@pytest.fixture(scope="module")
def site(tmp_path_factory, redis_server):
    from .processes import running_site

    with running_site(
        tmp_path_factory.mktemp("browser-personal"), redis_server.url, market=True, env=ALWAYS_OPEN
    ) as site:
        printed = [line.split() for line in site.manage("shell", "-c", SIGN_IN).splitlines()]
        site.users = {line[0]: (int(line[1]), line[2]) for line in printed if line[:1] in (["alice"], ["bob"])}
        yield site


def publish(site, *events: tuple[int, dict]) -> None:
    from channels_redis.core import RedisChannelLayer

    async def send():
        layer = RedisChannelLayer(hosts=[site.env["REDIS_URL"]], prefix=site.env["TICKER_CHANNEL_PREFIX"])
        await layer.group_send(personal.PERSONAL_GROUP, personal.message(list(events)))

    # Playwright's sync API runs a loop in this thread: the send gets a thread and a loop of its own.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, send()).result(timeout=10)


def signed_in_page(browser, site, name: str, unread: int):  # noqa: F811 (the fixture's name)
    """A page of ``name``'s session, its alerts API answered with an empty list and ``unread`` unread."""
    context = browser.new_context()
    context.add_cookies([{"name": "sessionid", "value": site.users[name][1], "url": site.base}])
    page = context.new_page()
    page.errors = []
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    page.marked_read = []

    def alerts_api(route):
        if route.request.method == "POST" and route.request.url.endswith("/api/alerts/read/"):
            page.marked_read.append(route.request.headers.get("x-csrftoken"))
            route.fulfill(status=200, content_type="application/json", body=json.dumps({"unread": 0}))
        else:
            listed = json.dumps({"alerts": [], "unread": unread})
            route.fulfill(status=200, content_type="application/json", body=listed)

    page.route("**/api/alerts/**", alerts_api)
    page.route("**/api/alerts/", alerts_api)
    page.goto(site.base + "/")
    expect(page.locator("#alerts-toggle")).to_be_visible()
    expect(page.locator("#badge")).to_have_attribute("data-state", "live", timeout=10_000)
    expect(page.locator("#badge")).to_contain_text("WebSocket")
    expect(page.locator("#alerts-unread")).to_have_text(str(unread))
    return context, page


def test_an_alert_frame_shows_a_toast_and_the_badge_for_its_user_only(site, browser):  # noqa: F811
    alice, bob = site.users["alice"][0], site.users["bob"][0]
    alice_context, alice_page = signed_in_page(browser, site, "alice", unread=2)
    bob_context, bob_page = signed_in_page(browser, site, "bob", unread=0)
    try:
        # The sockets are registered a moment after "live": publish until alice's toast shows.
        for _ in range(20):
            publish(site, (alice, personal.alert_frame(fired(5, "AAA", "sell half"))))
            try:
                expect(alice_page.locator(".toast")).to_have_count(1, timeout=500)
                break
            except AssertionError:
                continue
        toast = alice_page.locator(".toast")
        expect(toast).to_contain_text("AAA price above 101.00: now 101.50")
        expect(toast).to_contain_text("sell half")
        expect(alice_page.locator("#alerts-unread")).to_have_text("3")
        # Bob's own frame, sent after alice's on the same channel: once it shows, alice's would have too.
        publish(site, (bob, personal.alert_frame(fired(9, "BBB", "bob's note"))))
        expect(bob_page.locator(".toast")).to_have_count(1, timeout=5_000)
        expect(bob_page.locator(".toast")).to_contain_text("BBB price above 101.00")
        expect(bob_page.locator(".toast")).not_to_contain_text("sell half")
        expect(bob_page.locator("#alerts-unread")).to_have_text("1")
        expect(alice_page.locator(".toast")).to_have_count(1)
        # Opening the list shows it and marks it read, with the CSRF cookie's token.
        alice_page.locator("#alerts-toggle").click()
        expect(alice_page.locator("#alert-list li")).to_have_count(1)
        expect(alice_page.locator("#alert-list li")).to_contain_text("AAA price above 101.00")
        expect(alice_page.locator("#alerts-unread")).to_be_hidden()
        csrf = next(c["value"] for c in alice_context.cookies() if c["name"] == "csrftoken")
        assert alice_page.marked_read == [csrf]
        assert alice_page.evaluate("Notification.permission") == "default", "never asked unprompted"
        assert alice_page.errors == [] and bob_page.errors == []
    finally:
        alice_context.close()
        bob_context.close()


def test_signed_out_hides_the_alerts_and_keeps_the_quotes(site, browser):  # noqa: F811
    alice = site.users["alice"][0]
    context, page = signed_in_page(browser, site, "alice", unread=0)
    try:
        page.evaluate("window.signedOut = 0; document.addEventListener('ticker:signed_out', () => window.signedOut++)")
        for _ in range(20):  # the socket is registered a moment after "live"
            publish(site, (alice, personal.signed_out_frame()))
            try:
                expect(page.locator("#alerts")).to_be_hidden(timeout=500)
                break
            except AssertionError:
                continue
        expect(page.locator("#alerts")).to_be_hidden()
        assert page.evaluate("window.signedOut") == 1
        # The socket stays open for quotes (the server side of "nothing personal after": test_personal.py).
        expect(page.locator("#badge")).to_have_attribute("data-state", "live")
        assert page.errors == []
    finally:
        context.close()


def test_the_lab_shows_the_cookie_masked_and_the_user_the_server_saw(site, browser):  # noqa: F811
    session = site.users["bob"][1]
    context = browser.new_context()
    context.add_cookies([{"name": "sessionid", "value": session, "url": site.base}])
    anonymous = browser.new_context()
    try:
        page = context.new_page()
        page.goto(site.base + "/lab/")
        expect(page.locator("#hs-user-seen")).to_have_text("The server saw user: bob.", timeout=10_000)
        expect(page.locator("#hs-request")).to_contain_text("Cookie: sessionid=•••")
        assert session not in page.locator("#hs-request").text_content()
        page = anonymous.new_page()
        page.goto(site.base + "/lab/")
        expect(page.locator("#hs-user-seen")).to_have_text(
            "The server saw user: anonymous (no cookie sent).", timeout=10_000
        )
    finally:
        context.close()
        anonymous.close()
