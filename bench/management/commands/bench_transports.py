import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from bench import reports, transports
from ticker.heap import freeze_startup_objects
from ticker.launcher import choose_redis, free_port


class Command(BaseCommand):
    help = (
        "Measure WebSocket, SSE, long-polling and polling side by side: N clients per transport, bytes counted "
        "on the client sockets, server CPU from /proc. Writes results.json, results.md and results.png."
    )

    def add_arguments(self, parser):
        parser.add_argument("--clients", type=int, default=200, help="clients per transport (default %(default)s)")
        parser.add_argument("--duration", type=float, default=20.0, help="seconds measured per transport")
        parser.add_argument("--poll-interval", type=float, default=1.0, help="seconds between polls")
        parser.add_argument("--transports", default=",".join(transports.TRANSPORTS))
        parser.add_argument("--url", default=None, help="a running server (http://HOST:PORT); default: start one")
        parser.add_argument("--server-pid", type=int, default=None, help="with --url: the server's PID, for CPU")
        parser.add_argument("--symbols", default="*", help="what every client follows: * or A,B,C (default *)")
        parser.add_argument("--interval", type=int, default=settings.MARKET_INTERVAL_MS, help="market step, ms")
        parser.add_argument("--out", type=Path, default=Path("bench-results"))

    def handle(
        self, *args, clients, duration, poll_interval, transports, url, server_pid, symbols, interval, out, **options
    ):
        chosen = [t.strip() for t in transports.split(",") if t.strip()]
        unknown = sorted(set(chosen) - set(transports.TRANSPORTS))
        if unknown or not chosen:
            raise CommandError(f"--transports takes a comma list of {', '.join(transports.TRANSPORTS)}")
        if clients < 1 or duration <= 0 or poll_interval <= 0:
            raise CommandError("--clients must be at least 1; --duration and --poll-interval positive.")
        server = None if url else LocalServer(interval_ms=interval, stdout=self.stdout)
        try:
            wanted = tuple(s.strip().upper() for s in symbols.split(",") if s.strip()) or ("*",)
            target = transports.Target.from_url(url or server.url, wanted)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        pid = server.web_pid if server else server_pid
        config = {
            "clients": clients,
            "duration_s": duration,
            "poll_interval_s": poll_interval,
            "market_interval_ms": interval,
            "url": url or "local (started by the command)",
            "machine": reports.machine(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        }
        results = []
        freeze_startup_objects()
        try:
            for transport in chosen:
                self.stdout.write(f"{transport}: {clients} clients for {duration:g} s ...")
                result = asyncio.run(
                    transports.run_transport(
                        transport,
                        target,
                        clients=clients,
                        duration=duration,
                        poll_interval=poll_interval,
                        server_pid=pid,
                        progress=self.progress,
                    )
                )
                self.stdout.write("\n")
                results.append(result)
        finally:
            if server:
                server.stop()
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps({"config": config, "results": results}, indent=2) + "\n")
        table = reports.markdown(config, results)
        (out / "results.md").write_text(table)
        reports.chart(results, out / "results.png")
        self.stdout.write(table)
        self.stdout.write(f"\nWrote {out / 'results.json'}, {out / 'results.md'}, {out / 'results.png'}\n")

    def progress(self, transport, elapsed, duration, frames):
        bar = "#" * int(20 * elapsed / duration)
        self.stdout.write(f"\r{transport:>9} [{bar:<20}] {elapsed:5.1f}/{duration:g} s  {frames} frames", ending="")
        self.stdout.flush()


class LocalServer:
    """A throwaway site for the benchmark: fresh SQLite, daphne and run_market, over Redis."""

    def __init__(self, *, interval_ms: int, stdout):
        self.tmp = tempfile.TemporaryDirectory(prefix="ticker-bench-")
        self.redis = choose_redis(dict(os.environ))
        if self.redis.url is None:
            raise CommandError("bench_transports needs Redis: install redis-server or set REDIS_URL.")
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        env = {
            **os.environ,
            "DATABASE_URL": f"sqlite:///{self.tmp.name}/bench.sqlite3",
            "REDIS_URL": self.redis.url,
            "TICKER_CHANNEL_LAYER": "redis",
            "TICKER_CHANNEL_PREFIX": f"bench{port}",
            "DJANGO_DEBUG": "0",
            "DJANGO_SECRET_KEY": os.environ.get("DJANGO_SECRET_KEY") or "bench-only-key",
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DJANGO_STATIC_ROOT": f"{self.tmp.name}/static",
        }
        manage = [sys.executable, str(Path(settings.BASE_DIR) / "manage.py")]
        subprocess.run(manage + ["migrate", "-v0"], env=env, check=True, cwd=settings.BASE_DIR)
        log = open(Path(self.tmp.name) / "server.log", "ab")  # noqa: SIM115 (closed in stop)
        self.log = log
        self.web = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "config.asgi:application"],
            env=env,
            cwd=settings.BASE_DIR,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.market = subprocess.Popen(
            manage + ["run_market", "--interval", str(interval_ms)],
            env=env,
            cwd=settings.BASE_DIR,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.web_pid = self.web.pid
        for _ in range(150):
            try:
                urllib.request.urlopen(self.url + "/api/quotes/", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        else:
            self.stop()
            raise CommandError("the benchmark server did not start")
        time.sleep(1)  # the market's first steps
        stdout.write(f"Started daphne (pid {self.web.pid}) and run_market on {self.url}\n")

    def stop(self):
        for process in (self.market, self.web, self.redis.process):
            if process and process.poll() is None:
                process.terminate()
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
        self.log.close()
        self.tmp.cleanup()
