"""Real processes for end-to-end tests: a fresh database, daphne and run_market, stopped by PID."""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.request
import uuid
from pathlib import Path

import psycopg
import pytest

from .conftest import ROOT, child_env, free_port, wait_for

# Every site starts from the same migrated database and serves the same collected static files. Both are made
# once per test run (migrate and collectstatic are about 3 and 1.5 s of a site's start on the 2-core machine, and
# the suite starts about 40 sites) and copied: a SQLite file copied, a PostgreSQL database created from a template.
# A site still gets a database of its own, so what one test writes no other sees.
_prepared: dict[str, str] = {}


def _suite_dir() -> Path:
    if "dir" not in _prepared:
        _prepared["dir"] = tempfile.mkdtemp(prefix="ticker-sites-")
        atexit.register(_forget_prepared)
    return Path(_prepared["dir"])


def _forget_prepared() -> None:
    if admin := _prepared.get("pg_admin"):
        with contextlib.suppress(psycopg.Error), psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{_prepared["pg_template"]}" WITH (FORCE)')
    shutil.rmtree(_prepared.get("dir", ""), ignore_errors=True)


def _run_manage(env: dict, *args: str) -> None:
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    if result.returncode:
        raise AssertionError(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")


def _migrated_template(base: str) -> str:
    """The database every site copies, migrated once: a SQLite file's path, or a PostgreSQL database's name."""
    if "template" not in _prepared:
        env = child_env(DJANGO_STATIC_ROOT=str(_suite_dir() / "static"))
        if base.startswith(("postgres://", "postgresql://")):
            name = f"ticker_template_{uuid.uuid4().hex[:10]}"
            head, _, _ = base.rpartition("/")
            _prepared["pg_admin"], _prepared["pg_template"] = f"{head}/postgres", name
            with psycopg.connect(_prepared["pg_admin"], autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{name}"')
            _run_manage({**env, "DATABASE_URL": f"{head}/{name}"}, "migrate", "--noinput", "-v0")
            _prepared["template"] = name
        else:
            path = _suite_dir() / "template.sqlite3"
            _run_manage({**env, "DATABASE_URL": f"sqlite:///{path}"}, "migrate", "--noinput", "-v0")
            _prepared["template"] = str(path)
    return _prepared["template"]


def collected_static() -> str:
    """The static root every site serves from, collected once (sites only read it)."""
    if "static" not in _prepared:
        root = _suite_dir() / "static"
        _run_manage(child_env(DJANGO_STATIC_ROOT=str(root)), "collectstatic", "--noinput", "-v0")
        _prepared["static"] = str(root)
    return _prepared["static"]


def _fresh_database_url(tmp: Path) -> tuple[str, str | None]:
    """A new database of the kind the suite runs on, migrated: (url, postgres admin url to drop it)."""
    base = os.environ.get("DATABASE_URL", "")
    template = _migrated_template(base)
    if not base.startswith(("postgres://", "postgresql://")):
        shutil.copyfile(template, tmp / "site.sqlite3")
        return f"sqlite:///{tmp / 'site.sqlite3'}", None
    name = f"ticker_e2e_{uuid.uuid4().hex[:10]}"
    head, _, _ = base.rpartition("/")
    admin = f"{head}/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    return f"{head}/{name}", admin


@contextlib.contextmanager
def running_site(
    tmp: Path, redis_url: str, *, prepare=None, market: bool = False, env: dict | None = None, serving: bool = True
):
    """A Site with its web process up (and the market, if asked); logs printed if anything fails.

    ``serving=False``: wait only until daphne accepts connections (its Host check may refuse 127.0.0.1)."""
    site = Site(tmp, redis_url, env=env)
    try:
        if prepare:
            prepare(site)
        site.start_web(serving=serving)
        if market:
            site.start_market()
        yield site
    except BaseException:
        print(site.logs())
        raise
    finally:
        site.close()


# The operator a site prepared with ``add_operator`` has, for the admin's pages (clients.sign_in).
ADMIN_USER, ADMIN_PASSWORD = "op", "browser-test-password-4f9"


def add_operator(site: Site) -> None:
    """Prepares a site with a staff user ADMIN_USER (ADMIN_PASSWORD) for the admin's pages."""
    site.manage(
        "createsuperuser",
        "--noinput",
        "--username",
        ADMIN_USER,
        "--email",
        "op@example.com",
        env={"DJANGO_SUPERUSER_PASSWORD": ADMIN_PASSWORD},
    )


def site_fixture(
    *, scope: str = "function", market: bool = False, env: dict | None = None, prepare=None, name: str = "site"
):
    """A module's ``site`` fixture (or another ``name``): a running_site over the suite's Redis and a fresh
    database, for each test or for the whole ``scope``. Declared once here, not written again in every module:
    ``site = site_fixture(scope="module", market=True)``."""

    @pytest.fixture(scope=scope, name=name)
    def fixture(tmp_path_factory, redis_server):
        tmp = tmp_path_factory.mktemp(name)
        with running_site(tmp, redis_server.url, market=market, env=env, prepare=prepare) as site:
            yield site

    return fixture


def _drop_database(url: str, admin: str | None) -> None:
    if admin:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{url.rpartition("/")[2]}" WITH (FORCE)')


class Site:
    """One web process and one market process over one Redis and one fresh database."""

    def __init__(self, tmp: Path, redis_url: str, *, env: dict | None = None):
        """``env``: extra environment for every process of the site (e.g. TICKER_WS_RATE); a value of None leaves
        that variable unset (e.g. TICKER_CHANNEL_PREFIX, to get the per-site default)."""
        self.tmp = tmp
        self.db_url, self._pg_admin = _fresh_database_url(tmp)
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = child_env(
            **{
                "DATABASE_URL": self.db_url,
                "REDIS_URL": redis_url,
                "TICKER_CHANNEL_PREFIX": f"e2e{uuid.uuid4().hex[:8]}",
                "DJANGO_STATIC_ROOT": collected_static(),
                **(env or {}),
            }
        )
        self.env = {k: v for k, v in self.env.items() if v is not None}
        self.processes: dict[str, subprocess.Popen] = {}

    def manage(self, *args: str, env: dict | None = None) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=120,
        )
        if result.returncode:
            raise AssertionError(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def _spawn(self, name: str, command: list[str], env: dict | None = None) -> subprocess.Popen:
        log = open(self.tmp / f"{name}.log", "ab")  # noqa: SIM115 (closed with the process)
        process = subprocess.Popen(
            command, cwd=ROOT, env={**self.env, **(env or {})}, stdout=log, stderr=subprocess.STDOUT
        )
        process.log = log
        self.processes[name] = process
        return process

    def start_web(
        self, *, server: str = "daphne", env: dict | None = None, serving: bool = True, name: str = "web"
    ) -> str:
        """A web process on ``server`` (daphne, as in production, or uvicorn); its base URL. The first is the
        site's own (``name`` "web", on ``self.port``); another name starts one more replica on a port of its own.
        Returns once it serves /api/quotes/, or with ``serving=False`` once it accepts connections."""
        port = self.port if name == "web" else free_port()
        address = ["127.0.0.1", str(port)]
        command = {
            "daphne": ["daphne", "-b", address[0], "-p", address[1]],
            "uvicorn": ["uvicorn", "--host", address[0], "--port", address[1], "--log-level", "warning"],
        }[server]
        self._spawn(name, [sys.executable, "-m", *command, "config.asgi:application"], env)
        base = f"http://127.0.0.1:{port}"
        if serving:
            wait_for(lambda: serves_quotes(base), timeout=30, what=f"{server} to serve /api/quotes/")
        else:
            wait_for(lambda: _accepts(port), timeout=30, what=f"{server} to accept connections")
        return base

    def start_market(self, *args: str, name: str = "market", env: dict | None = None) -> subprocess.Popen:
        """A market process (``name`` another than "market" for a second one: a standby); its log is NAME.log."""
        return self._spawn(name, [sys.executable, "manage.py", "run_market", *args], env)

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        process = self.processes.pop(name)
        if process.poll() is None:
            process.send_signal(sig)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        process.log.close()
        return process.returncode

    def close(self) -> None:
        for name in list(self.processes):
            self.stop(name)
        _drop_database(self.db_url, self._pg_admin)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in self.tmp.glob("*.log"))

    def get_json(self, path: str) -> dict:
        with urllib.request.urlopen(self.base + path, timeout=5) as response:
            return json.loads(response.read())


def serves_quotes(base: str) -> bool:
    """True once the web process at ``base`` answers a poll."""
    try:
        with urllib.request.urlopen(base + "/api/quotes/", timeout=5):
            return True
    except OSError:
        return False


def _accepts(port: int) -> bool:
    import socket

    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
    return False


class NoWebSocketProxy:
    """A TCP proxy in front of daphne that refuses WebSocket upgrades with 403, like a strict corporate proxy.

    Plain HTTP (pages, polling, long-polling, SSE) passes through untouched. Set ``refusing`` to False
    and later upgrades pass through too, as when a network's policy changes.
    """

    def __init__(self, upstream_port: int):
        import socket
        import threading

        self.upstream_port = upstream_port
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.refused = 0
        self.refusing = True
        self._threading = threading
        self._open: list = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            self._threading.Thread(target=self._handle, args=(client,), daemon=True).start()

    def _handle(self, client) -> None:
        import socket

        head = b""
        while b"\r\n\r\n" not in head:
            chunk = client.recv(65536)
            if not chunk:
                client.close()
                return
            head += chunk
        if self.refusing and b"upgrade: websocket" in head.lower():
            self.refused += 1
            client.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            client.close()
            return
        upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
        self._open += [client, upstream]
        upstream.sendall(head)
        self._threading.Thread(target=self._pipe, args=(upstream, client), daemon=True).start()
        self._pipe(client, upstream)

    @staticmethod
    def _pipe(source, target) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                with contextlib.suppress(OSError):
                    sock.close()

    def close(self) -> None:
        self.server.close()
        for sock in self._open:
            with contextlib.suppress(OSError):
                sock.close()
