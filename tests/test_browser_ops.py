"""The admin's operations view in Chromium, against two real web processes and the market.

Its figures must be the ones each process's /metrics gives, and a process that dies must leave it.
"""

from __future__ import annotations

import asyncio
import signal
import threading

import pytest
from playwright.sync_api import expect

from .clients import follow, sample, samples, sign_in, stop_following
from .conftest import free_port, wait_for
from .processes import add_operator, running_site
from .test_browser import browser  # noqa: F401 (the browser fixture)

pytestmark = [pytest.mark.browser, pytest.mark.processes]


class Clients:
    """WebSocket followers on some web processes, kept open in a thread of their own while the browser works."""

    def __init__(self, counts: dict[str, int]):
        self.counts = counts
        self.ready, self._stop = threading.Event(), None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self._thread.start()
        assert self.ready.wait(60), "the WebSocket clients did not connect"

    async def _run(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        tasks = []
        for base, count in self.counts.items():
            tasks += (await follow(base, count))[1]
        self.ready.set()
        await self._stop.wait()
        await stop_following(tasks)

    def close(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(15)


def cell(page, process: str, field: str) -> str:
    return page.locator(f'tr[data-process="{process}"] td[data-field="{field}"]').inner_text()


def test_the_operations_view_shows_each_process_as_its_metrics_do_and_drops_a_dead_one(
    tmp_path,
    redis_server,
    browser,  # noqa: F811
):
    """Two web processes (2 and 3 clients) and the market in the view, with their /metrics figures; a killed web
    process leaves the view within 15 s."""
    market_port = free_port()
    with running_site(tmp_path, redis_server.url, prepare=add_operator) as site:
        site.start_market("--metrics-port", str(market_port))
        second = site.start_web(name="web2")
        clients = Clients({site.base: 2, second: 3})
        context = browser.new_context()
        try:
            page = context.new_page()
            sign_in(page, site.base + "/admin/ops/")
            expect(page).to_have_url(site.base + "/admin/ops/")
            processes = {base: f"{site.processes[name].pid}" for base, name in ((site.base, "web"), (second, "web2"))}
            # Reports come every second and the view polls every second: 10 s is generous on a busy machine.
            expect(page.locator("#ops-web tbody tr")).to_have_count(2, timeout=10_000)
            expect(page.locator("#ops-market tbody tr")).to_have_count(1, timeout=10_000)
            rows = {pid: page.locator(f'#ops-web tr[data-process$=":{pid}"]') for pid in processes.values()}
            for base, pid in processes.items():
                expect(rows[pid]).to_have_count(1)
                key = rows[pid].get_attribute("data-process")
                metrics = samples(base + "/metrics")
                expected = int(sample(metrics, "ticker_connections", transport="websocket"))
                assert expected == {site.base: 2, second: 3}[base]
                expect(page.locator(f'tr[data-process="{key}"] td[data-field="websocket"]')).to_have_text(
                    str(expected), timeout=10_000
                )
                subscribed = int(sample(metrics, "ticker_subscriptions", kind="all"))
                assert cell(page, key, "subscriptions").startswith(f"{subscribed} /")
            market = page.locator("#ops-market tbody tr").first.get_attribute("data-process")
            assert market.endswith(f":{site.processes['market'].pid}")
            metrics = samples(f"http://127.0.0.1:{market_port}/metrics")
            assert cell(page, market, "symbols") == str(int(sample(metrics, "ticker_market_symbols")))
            # The step moves every 250 ms: the view's (a second old at most) is close behind the metric's.
            step = int(cell(page, market, "step"))
            assert 0 < sample(metrics, "ticker_market_step") - step <= 20

            site.processes["web2"].send_signal(signal.SIGKILL)
            wait_for(lambda: site.processes["web2"].poll() is not None, timeout=10, what="web2 to die")
            expect(rows[processes[second]]).to_have_count(0, timeout=15_000)
            expect(page.locator("#ops-web tbody tr")).to_have_count(1)
            expect(page.locator("#ops-status")).to_contain_text("1 web process")
        finally:
            context.close()
            clients.close()
