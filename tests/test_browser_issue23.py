"""Issue 23's "Done when", in real browsers against the deployed shape: Chromium (Playwright) talks only to nginx
running deploy/nginx.conf, in front of TWO daphne replicas that share one database, one Redis and one market.

User A has two tabs whose WebSockets are on different replicas, so every personal frame A gets in both tabs has
crossed the channel layer to both web processes; user B, signed in at the same time in a browser context of its
own, shares a replica with one of A's tabs (there are only two), so "B sees nothing of A" is checked inside one
process as well as across them.

What each socket received is recorded in the page itself (an init script wraps ``WebSocket``: every frame's type,
arrival time and which socket of the tab it came on; every toast added, with its time), so a frame the page
ignores still counts, a toast that went after its 8 s still counts, and times are the browser's own clock (the
same machine's as the market's step times). The tests run in this order and share the scene (the module's
fixtures): the watchlist follows A across replicas; an alert fires to both tabs; B saw none of it; A signs out in
tab 1 and tab 2's socket, still open for quotes, gets no more of A's frames.
"""

from __future__ import annotations

import re
import subprocess
from datetime import datetime
from types import SimpleNamespace

import pytest
from playwright.sync_api import expect

from .clients import sample, samples
from .conftest import free_port, wait_for
from .processes import running_site, serves_quotes
from .test_browser import ALWAYS_OPEN, browser  # noqa: F401 (the fixture)
from .test_browser_accounts import add_symbol, sign_in, sign_up, wait_for_rows
from .test_scaleout import NGINX, nginx_config

pytestmark = [pytest.mark.browser, pytest.mark.processes]

PERSONAL = ("alert", "watchlist", "signed_out")
# Each tab's record of its sockets and toasts (window.__seen), set up before the page's own scripts run.
RECORDER = """
(() => {
  const seen = (window.__seen = { sockets: 0, frames: [], quotes: [], toasts: [] });
  const Native = window.WebSocket;
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      const socket = ++seen.sockets;
      this.addEventListener("message", (event) => {
        const t = Date.now();
        let frame;
        try { frame = JSON.parse(event.data); } catch { return; }
        if (frame.type === "quotes") {
          seen.quotes.push({ t, socket, step: frame.step });
          if (seen.quotes.length > 200) seen.quotes.shift();
        } else seen.frames.push({ t, socket, type: frame.type, frame });
      });
    }
  };
  document.addEventListener("DOMContentLoaded", () => {
    const toasts = document.getElementById("toasts");
    if (!toasts) return;
    new MutationObserver((changes) => {
      for (const change of changes)
        for (const node of change.addedNodes)
          if (node.classList?.contains("toast")) seen.toasts.push({ t: Date.now(), text: node.textContent });
    }).observe(toasts, { childList: true });
  });
})();
"""
TIMINGS: dict[str, float] = {}  # ms, printed at the end of the module (pytest -s)


def port_of(base: str) -> int:
    return int(base.rsplit(":", 1)[1])


@pytest.fixture(scope="module")
def deployment(tmp_path_factory, redis_server):
    """One database, one Redis, one market, two daphne replicas ("web", "web2"), nginx (deploy/nginx.conf)."""
    tmp = tmp_path_factory.mktemp("issue23")
    with running_site(tmp, redis_server.url, market=True, env=ALWAYS_OPEN) as site:
        replicas = {"web": site.base, "web2": site.start_web(name="web2")}
        listen = free_port()
        config = nginx_config(tmp, listen, [port_of(base) for base in replicas.values()])
        nginx = subprocess.Popen([NGINX, "-p", str(tmp), "-c", str(config), "-g", "daemon off;"])
        try:
            base = f"http://127.0.0.1:{listen}"
            wait_for(lambda: serves_quotes(base), timeout=15, what="nginx to proxy /api/quotes/")
            yield SimpleNamespace(site=site, base=base, replicas=replicas)
        finally:
            nginx.terminate()
            nginx.wait(10)
        print_timings()


def print_timings() -> None:
    print("\nissue 23 timings (ms):", {k: round(v) for k, v in TIMINGS.items()})


def sockets_per_replica(deployment) -> dict[str, int]:
    """Open WebSockets on each replica, read from its own /metrics (nginx refuses /metrics; the replicas'
    ports answer the test directly)."""
    return {
        name: int(sample(samples(base + "/metrics"), "ticker_connections", transport="websocket"))
        for name, base in deployment.replicas.items()
    }


def on_replica(deployment, before: dict[str, int]) -> str:
    """The replica that got the one WebSocket opened since ``before`` (and nothing else changed)."""

    def one_more():
        now = sockets_per_replica(deployment)
        grown = [name for name in now if now[name] == before[name] + 1]
        unchanged = [name for name in now if now[name] == before[name]]
        return grown[0] if len(grown) == 1 and len(unchanged) == len(now) - 1 else None

    return wait_for(one_more, timeout=10, what=f"one more WebSocket on one replica (before: {before})")


def settled(deployment, total: int) -> None:
    """Waits until the replicas hold ``total`` WebSockets in all (a closed tab's socket is gone)."""
    wait_for(lambda: sum(sockets_per_replica(deployment).values()) == total, timeout=10, what=f"{total} sockets")


def live(page) -> None:
    expect(page.locator("#badge")).to_have_attribute("data-state", "live", timeout=10_000)
    expect(page.locator("#badge")).to_contain_text("WebSocket")


def open_tab(deployment, context, *, avoid: str | None = None, want: str | None = None):
    """A new dashboard tab in ``context`` whose WebSocket is on a replica other than ``avoid`` (or on ``want``).

    nginx picks the replica (deploy/nginx.conf: least_conn, the replica with the fewest open connections), and
    each replica's ``ticker_connections`` before and after a tab opens tells which one it went to. A tab that
    landed on the wrong replica stays open while the next one opens, so that replica is busier and least_conn
    sends the next socket to the other; once one lands right, the wrong ones are closed."""
    wrong = []
    try:
        for _ in range(6):
            before = sockets_per_replica(deployment)
            page = context.new_page()
            page.goto(deployment.base + "/")
            live(page)
            replica = on_replica(deployment, before)
            if replica != avoid and want in (None, replica):
                page.replica = replica
                return page
            wrong.append(page)
        raise AssertionError(f"no tab landed on {want or 'a replica other than ' + str(avoid)} in 6 tries")
    finally:
        if wrong:
            total = sum(sockets_per_replica(deployment).values())
            for page in wrong:
                page.close()
            settled(deployment, total - len(wrong))


def new_context(browser):  # noqa: F811 (the fixture's name)
    context = browser.new_context()
    context.add_init_script(RECORDER)
    context.errors = []
    context.on("page", lambda page: page.on("pageerror", lambda exc: context.errors.append(str(exc))))
    return context


def signed_up_tab(deployment, context, username: str):
    """A first tab of a new account (signed up through nginx, the browser's list not merged), and its replica."""
    before = sockets_per_replica(deployment)
    page = context.new_page()
    sign_up(page, deployment, username)
    page.click("#merge-no")
    wait_for_rows(page, [])
    live(page)
    page.replica = on_replica(deployment, before)
    return page


@pytest.fixture(scope="module")
def scene(deployment, browser):  # noqa: F811
    """A's two tabs (one browser context: one session) on different replicas, and B's tab, all open at once."""
    a, b = new_context(browser), new_context(browser)
    tab1 = signed_up_tab(deployment, a, "ada")
    tab2 = open_tab(deployment, a, avoid=tab1.replica)
    assert {tab1.replica, tab2.replica} == set(deployment.replicas)
    bea = signed_up_tab(deployment, b, "bea")
    print(f"\nissue 23 replicas: A's tab 1 on {tab1.replica}, A's tab 2 on {tab2.replica}, B on {bea.replica}")
    scene = SimpleNamespace(a=a, b=b, tab1=tab1, tab2=tab2, bea=bea, contexts=[a, b])
    yield scene
    errors = [e for context in scene.contexts for e in context.errors]
    for context in scene.contexts:
        context.close()
    assert errors == [], f"a page raised: {errors}"


def seen(page) -> dict:
    return page.evaluate("window.__seen")


def personal_frames(page, kind: str | None = None) -> list[dict]:
    return [f for f in seen(page)["frames"] if f["type"] in PERSONAL and kind in (None, f["type"])]


def wait_for_watchlist(page, symbols: list[str], *, timeout: int) -> None:
    """The rows, in order, are ``symbols`` (a function with an argument: the page's CSP forbids eval)."""
    page.wait_for_function(
        "want => [...document.querySelectorAll('#quotes tbody tr[data-symbol]')].map(tr => tr.dataset.symbol)"
        ".join() === want",
        arg=",".join(symbols),
        timeout=timeout,
    )


def added_elsewhere(saver, watcher, symbol: str, symbols: list[str], name: str) -> None:
    """``saver`` adds ``symbol``; ``watcher`` (another tab of the user, on the other replica) shows ``symbols``
    within 1 s of the save's answer, subscribed: the row's price moves on."""
    add_symbol(saver, symbol)  # returns once the account stored it (PUT answered)
    # When the page sent its PUT, on the browser's clock (the same for both tabs).
    saving = """() => {
      const put = performance.getEntriesByType("resource").filter((e) => e.name.endsWith("/api/watchlist/"));
      return performance.timeOrigin + put[put.length - 1].startTime;
    }"""
    saved_at = saver.evaluate(saving)
    # 1 s: one market step (250 ms) is the issue's bound; the rest is two pages' work on a shared 2-core machine.
    wait_for_watchlist(watcher, symbols, timeout=1_000)
    arrived = [f["t"] for f in personal_frames(watcher, "watchlist") if f["frame"]["symbols"] == symbols]
    assert arrived, "shown without a watchlist frame?"
    TIMINGS[name] = arrived[0] - saved_at
    assert arrived[0] - saved_at <= 1_000
    row = watcher.locator(f'#quotes tr[data-symbol="{symbol}"]')
    expect(row.locator(".price")).not_to_have_text("", timeout=5_000)
    seq = int(row.get_attribute("data-seq") or -1)
    watcher.wait_for_function(
        "([s, seq]) => Number(document.querySelector(`#quotes tr[data-symbol='${s}']`).dataset.seq || -1) > seq",
        arg=[symbol, seq],
        timeout=10_000,
    )


def test_symbols_added_in_one_tab_appear_in_the_other_tab_on_the_other_replica_within_1_s(scene):
    tab1, tab2 = scene.tab1, scene.tab2
    assert tab1.replica != tab2.replica
    wait_for_watchlist(tab2, [], timeout=5_000)
    added_elsewhere(tab1, tab2, "AAPL", ["AAPL"], "watchlist AAPL: tab 1's PUT sent → frame in tab 2")
    added_elsewhere(tab1, tab2, "MSFT", ["AAPL", "MSFT"], "watchlist MSFT: tab 1's PUT sent → frame in tab 2")
    # Both arrived on the socket tab 2 opened with (no reconnect, no reload).
    assert {f["socket"] for f in personal_frames(tab2)} == {1}


def csrf_post(page, path: str, body: dict) -> dict:
    """POST ``body`` as JSON from the page, with the CSRF cookie's token; the status, answer and time."""
    return page.evaluate(
        """async ([path, body]) => {
          const token = document.cookie.split("; ").find((c) => c.startsWith("csrftoken=")).split("=")[1];
          const r = await fetch(path, {method: "POST", credentials: "same-origin", body: JSON.stringify(body),
            headers: {"Content-Type": "application/json", "X-CSRFToken": token}});
          return {status: r.status, json: await r.json().catch(() => null), t: Date.now()};
        }""",
        [path, body],
    )


def ms(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp() * 1000


def toast_for(page, alert: dict, *, timeout: float = 5) -> dict:
    """The first toast ``page`` showed for ``alert`` (by its note), waited for."""
    found = lambda: [t for t in seen(page)["toasts"] if alert["note"] in t["text"]]  # noqa: E731
    return wait_for(found, timeout=timeout, what=f"a toast for {alert['note']!r}")[0]


def fire_alert(page, note: str) -> tuple[dict, dict]:
    """An alert set from ``page`` that the next market step fires (any listed price is above 0.01)."""
    alert = {"symbol": "AAPL", "condition": "price_above", "value": "0.01", "note": note}
    answer = csrf_post(page, "/api/alerts/", alert)
    assert answer["status"] == 201, answer
    assert answer["json"]["state"] == "armed"
    return answer["json"], answer


def test_an_alert_fires_a_toast_in_both_tabs_within_1_s_of_its_step_and_the_list_keeps_it(scene):
    tab1, tab2 = scene.tab1, scene.tab2
    alert, answer = fire_alert(tab1, "issue 23: both tabs")
    toasts = {name: toast_for(tab, alert) for name, tab in (("tab 1", tab1), ("tab 2", tab2))}
    fired = [f["frame"]["alert"] for f in personal_frames(tab2, "alert")]
    assert [a["id"] for a in fired] == [alert["id"]]
    step_at = ms(fired[0]["triggered_at"])  # the market's time of the step that fired it
    for name, toast in toasts.items():
        TIMINGS[f"alert: step → toast in {name}"] = toast["t"] - step_at
    TIMINGS["alert: 201 → its step"] = step_at - answer["t"]
    for name, toast in toasts.items():
        assert toast["t"] - step_at <= 1_000, f"{name}'s toast {toast['t'] - step_at:.0f} ms after its step"
        assert "AAPL price above 0.01: now" in toast["text"]
    assert fired[0]["state"] == "triggered" and fired[0]["step"] is not None

    # Reloaded, a tab lists it as triggered (tab 1: tab 2 keeps its socket, and its replica, for the last test).
    tab1.reload()
    live(tab1)
    tab1.click("#alerts-toggle")
    item = tab1.locator(f'#alert-list li[data-id="{alert["id"]}"]')
    # Triggered (opening the list marks it read meanwhile, so "unread" may or may not still be on it).
    expect(item).to_have_class(re.compile(r"\balert-triggered\b"))
    expect(item.locator(".alert-state")).to_contain_text("triggered")
    expect(item).to_contain_text("AAPL price above 0.01: now")
    expect(item).to_contain_text("issue 23: both tabs")
    tab1.click("#alerts-toggle")


def test_another_user_connected_at_the_same_time_sees_nothing_of_it(scene, deployment):
    tab1, tab2, bea = scene.tab1, scene.tab2, scene.bea
    add_symbol(tab1, "NVDA")
    wait_for_watchlist(tab2, ["AAPL", "MSFT", "NVDA"], timeout=5_000)
    # B's own change, published after all of A's: once B's socket has it, any of A's frames would be there too.
    add_symbol(bea, "KO")
    wait_for(lambda: personal_frames(bea), timeout=5, what="B's own watchlist frame")
    assert [(f["type"], f["frame"].get("symbols")) for f in personal_frames(bea)] == [("watchlist", ["KO"])]
    assert seen(bea)["toasts"] == []
    wait_for_watchlist(bea, ["KO"], timeout=1_000)
    expect(bea.locator("#alerts-unread")).to_be_hidden()
    # And A got them all (the check above is not B's socket being deaf): three watchlist frames and the alert.
    kinds = [f["type"] for f in personal_frames(tab2)]
    assert kinds.count("watchlist") >= 3 and kinds.count("alert") == 1, kinds


def test_after_signing_out_in_tab_1_tab_2s_socket_gets_nothing_personal_and_quotes_still_flow(
    scene,
    deployment,
    browser,  # noqa: F811
):
    tab1, tab2 = scene.tab1, scene.tab2
    sockets = seen(tab2)["sockets"]
    before = len(personal_frames(tab2))
    tab1.click(".sign-out button")
    expect(tab1.locator("#account")).to_have_attribute("data-user", "")
    wait_for(lambda: personal_frames(tab2, "signed_out"), timeout=5, what="signed_out on tab 2's socket")
    signed_out_at = len(personal_frames(tab2))
    assert signed_out_at == before + 1

    # A third session of A (another device), its tab on tab 2's replica, so the frames below reach that very
    # process: its tab shows them; tab 2, on the same process and the same socket as before, gets none.
    third = new_context(browser)
    scene.contexts.append(third)
    settled(deployment, 3)  # tab 1 (reloaded as anonymous), tab 2, B's tab
    before = sockets_per_replica(deployment)
    here = third.new_page()
    sign_in(here, deployment, "ada")
    live(here)
    if on_replica(deployment, before) != tab2.replica:
        here = open_tab(deployment, third, want=tab2.replica)
    add_symbol(here, "TSLA")
    alert, _ = fire_alert(here, "issue 23: after sign-out")
    toast_for(here, alert)  # after the watchlist frame: both reached tab 2's process
    assert personal_frames(here, "watchlist"), "the third tab got the watchlist change"
    quotes = len(seen(tab2)["quotes"])
    wait_for(lambda: len(seen(tab2)["quotes"]) > quotes + 3, timeout=10, what="quotes still flowing to tab 2")
    assert personal_frames(tab2)[signed_out_at:] == []
    assert seen(tab2)["sockets"] == sockets, "tab 2 reconnected: not the socket this test is about"
    assert all(alert["note"] not in t["text"] for t in seen(tab2)["toasts"])
    live(tab2)
