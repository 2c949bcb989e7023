"""Scale-out: several web processes on one Redis, directly and behind nginx with deploy/nginx.conf."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import urllib.request
from pathlib import Path

import pytest

from .clients import follow, get_json, stop_following, until
from .conftest import ROOT, free_port, wait_for
from .processes import running_site, serves_quotes

pytestmark = pytest.mark.processes

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def start_second_web(site) -> str:
    """Another daphne of the same site (same database, Redis and channel prefix); its base URL."""
    return site.start_web(name="web2")


async def every_update_on_both(site, bases: list[str], per_base: int) -> None:
    """Followers on each base for a few seconds; then, with the market stopped, all hold the stored seqs."""
    groups = [await follow(base, per_base) for base in bases]
    followers = [f for group, _ in groups for f in group]
    try:
        # Followed for a dozen steps or more (about 3 s; 30 s bounds a busy machine).
        await until(lambda: all(len(f.quotes_since(0)) > 10 for f in followers), limit=30, what="a dozen steps each")
        assert site.stop("market") == 0  # finishes its step: nothing more changes
        stored = {q["symbol"]: q["seq"] for q in get_json(site.base, "/api/quotes/")["quotes"]}
        await until(lambda: all(f.seq == stored for f in followers), limit=10, what="every client to hold every update")
        assert [f.gaps for f in followers] == [[] for _ in followers]
        assert all(len(f.quotes_since(0)) > 10 for f in followers)
    finally:
        for _, tasks in groups:
            await stop_following(tasks)


def test_clients_on_two_web_processes_over_one_redis_receive_every_update(tmp_path, redis_server):
    """Two daphne processes, one Redis, one market: clients on either one get every update, no gap."""
    with running_site(tmp_path, redis_server.url, market=True) as site:
        second = start_second_web(site)
        asyncio.run(every_update_on_both(site, [site.base, second], per_base=5))


def nginx_config(tmp: Path, listen: int, backends: list[int]) -> Path:
    """deploy/nginx.conf, as compose mounts it, with the replicas' address swapped for ours."""
    site = (ROOT / "deploy" / "nginx.conf").read_text()
    server = re.search(r"server web:8000([^;]*);", site)
    assert server and "listen 8000;" in site
    servers = "\n    ".join(f"server 127.0.0.1:{port}{server[1]};" for port in backends)
    site = site.replace(server[0], servers).replace("listen 8000;", f"listen 127.0.0.1:{listen};")
    (tmp / "site.conf").write_text(site)
    main = tmp / "nginx.conf"
    main.write_text(
        f"worker_processes 1;\npid {tmp}/nginx.pid;\nerror_log {tmp}/nginx-error.log;\n"
        "events { worker_connections 512; }\n"
        f"http {{\n  access_log {tmp}/nginx-access.log;\n  client_body_temp_path {tmp}/body;\n"
        f"  proxy_temp_path {tmp}/proxy;\n  include {tmp}/site.conf;\n}}\n"
    )
    return main


def test_behind_nginx_websocket_and_sse_reach_both_replicas(tmp_path, redis_server):
    """The compose load balancer's config, for real: WebSocket upgrades and SSE pass, spread over both."""
    with running_site(tmp_path, redis_server.url, market=True) as site:
        second = start_second_web(site)
        listen = free_port()
        config = nginx_config(tmp_path, listen, [site.port, int(second.rsplit(":", 1)[1])])
        nginx = subprocess.Popen([NGINX, "-p", str(tmp_path), "-c", str(config), "-g", "daemon off;"])
        try:
            base = f"http://127.0.0.1:{listen}"
            wait_for(lambda: serves_quotes(base), timeout=15, what="nginx to proxy /api/quotes/")
            with urllib.request.urlopen(base + "/api/quotes/stream/?symbols=AAPL", timeout=10) as stream:
                assert stream.headers["Content-Type"].startswith("text/event-stream")
                lines = [stream.readline() for _ in range(6)]
            assert b"event: snapshot\n" in lines
            asyncio.run(every_update_on_both(site, [base], per_base=6))
        finally:
            nginx.terminate()
            nginx.wait(10)
        # Each replica's consumer logs every WebSocket it opens (daphne's own access lines are DEBUG now).
        connects = [(tmp_path / f"{name}.log").read_text().count("websocket opened") for name in ("web", "web2")]
        assert all(count >= 1 for count in connects), f"WebSockets per replica: {connects}"
