"""The one-command site: migrations, an admin account, Redis, web and market.

Used by ``python manage.py runsite`` (scripts/run). Production runs the two
processes directly (README, "Processes"); this is the newcomer's path.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command

from ticker.runtime import redis_conn
from ticker.runtime.redis_conn import RedisConfig

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def redis_answers(url: str | RedisConfig, timeout: float = 1.0) -> bool:
    """True when the Redis at ``url`` (or, through Sentinel, the primary a RedisConfig names) answers PING."""
    import redis

    config = url if isinstance(url, RedisConfig) else RedisConfig(url=url)
    try:
        client = config.client(socket_connect_timeout=timeout, socket_timeout=timeout)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (redis.RedisError, OSError, ValueError):
        return False


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@dataclass
class RedisChoice:
    url: str | None  # None: no Redis, use the in-memory layer
    how: str
    process: subprocess.Popen | None = None
    workdir: str | None = None

    def close(self) -> None:
        """Stop the redis-server this choice started, if any, and remove its working directory."""
        if self.process:
            _stop_all([self.process])
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)


def choose_redis(env: dict[str, str], *, default_url: str = DEFAULT_REDIS_URL) -> RedisChoice:
    """REDIS_URL if set; else Redis on localhost:6379; else start redis-server; else none.

    An explicit REDIS_URL that does not answer is an error, not a fallback:
    the operator asked for that server. So is a Sentinel configuration
    (REDIS_SENTINELS) under which no primary answers.
    """
    try:
        config = redis_conn.from_env(env, default_url=default_url)
    except ImproperlyConfigured as exc:
        raise SystemExit(str(exc)) from None
    if config.uses_sentinel:
        if not redis_answers(config):
            raise SystemExit(
                f"Redis {config.describe()} is not reachable (no sentinel answers, or none knows a primary that "
                "answers): start the sentinels and the primary, or unset REDIS_SENTINELS to use REDIS_URL."
            )
        # The web and market processes read the same variables and find the primary themselves.
        return RedisChoice(config.url, f"Redis {config.describe()}")
    if env.get("REDIS_URL"):
        url = env["REDIS_URL"]
        if not redis_answers(url):
            raise SystemExit(
                f"REDIS_URL={url} is not reachable: start that Redis, or unset REDIS_URL to let "
                "the run command find or start one."
            )
        return RedisChoice(url, f"REDIS_URL ({_safe(url)})")
    if redis_answers(default_url):
        return RedisChoice(default_url, f"the Redis answering at {_safe(default_url)}")
    own = start_redis_server()
    if own:
        return own
    if shutil.which("redis-server"):
        print("redis-server was found but did not start; continuing without Redis.", file=sys.stderr)
    return RedisChoice(None, "none")


def start_redis_server() -> RedisChoice | None:
    """A redis-server of this run's own on a free port, without persistence; None if not installed or not answering.

    The caller stops it with ``RedisChoice.close()``.
    """
    binary = shutil.which("redis-server")
    if not binary:
        return None
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="ticker-redis-")
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", workdir],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    choice = RedisChoice(
        f"redis://127.0.0.1:{port}/0", f"a redis-server started for this run on port {port}", process, workdir
    )
    for _ in range(50):
        if redis_answers(choice.url, timeout=0.2):
            return choice
        time.sleep(0.1)
    choice.close()
    return None


def _safe(url: str) -> str:
    parsed = urlparse(url)
    return url.replace(f":{parsed.password}@", ":***@") if parsed.password else url


def ensure_superuser(stdout) -> None:
    """In development, make an admin account with a random password, once, if there is none.

    Every start says how to sign in to the admin: the password is printed only when the account is made, so a
    later start names the account and the command that sets a new password (issue 20: the command printed must
    work as printed, hence scripts/manage, which uses the run command's .venv and development settings).
    """
    User = get_user_model()
    existing = User.objects.filter(is_superuser=True).order_by("pk").values_list("username", flat=True).first()
    if existing is not None:
        stdout.write(
            f"\n  Admin account: {existing} (/admin/). Forgot its password? "
            f"scripts/manage changepassword {existing}\n\n"
        )
        return
    password = secrets.token_urlsafe(12)
    User.objects.create_superuser("admin", "admin@localhost", password)
    stdout.write(
        "\n  Created the admin account (shown once, not stored anywhere else):\n"
        f"    user: admin   password: {password}\n"
        "  Change it with: scripts/manage changepassword admin\n\n"
    )


@dataclass
class Site:
    host: str
    port: int
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)


def run_site(*, host: str, port: int, stdout) -> int:
    """Run the whole site until Ctrl-C or SIGTERM; returns an exit code."""
    stopping = False

    def stop(signum, frame):
        nonlocal stopping
        stopping = True

    # Before anything is started, so a Ctrl-C at any moment still cleans up.
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    call_command("migrate", interactive=False, verbosity=0)
    stdout.write("Database migrated; the simulated market is seeded.\n")
    if settings.DEBUG:
        ensure_superuser(stdout)
    env = dict(os.environ)
    choice = choose_redis(env)
    site = Site(host, port)
    if choice.process:
        # Watched like the others: if our own Redis dies, the site stops instead of limping on.
        site.processes["redis"] = choice.process
    try:
        if host not in ("0.0.0.0", "::") and not env.get("DJANGO_ALLOWED_HOSTS"):
            env["DJANGO_ALLOWED_HOSTS"] = ",".join(dict.fromkeys(["127.0.0.1", "localhost", "[::1]", host]))
        manage = [sys.executable, str(Path(settings.BASE_DIR) / "manage.py")]
        daphne = [sys.executable, "-m", "daphne", "-b", host, "-p", str(port), "config.asgi:application"]
        if choice.url:
            env.update(REDIS_URL=choice.url, TICKER_CHANNEL_LAYER="redis")
            commands = {"web": daphne, "market": manage + ["run_market"]}
            stdout.write(f"Channel layer: Redis, using {choice.how}.\n")
        else:
            env["TICKER_CHANNEL_LAYER"] = "memory"
            commands = {"web+market": manage + ["serve_inprocess", "--host", host, "--port", str(port)]}
            stdout.write(
                "WARNING: no Redis could be found or started (install redis-server, or set REDIS_URL).\n"
                "WARNING: running web and market in ONE process on the in-memory channel layer.\n"
            )
        for name, command in commands.items():
            if not stopping:
                site.processes[name] = subprocess.Popen(command, env=env)
        shown = "localhost" if host in ("0.0.0.0", "::") else host
        stdout.write(f"\n  ticker is running at http://{shown}:{port}/  (admin: /admin/)  Ctrl-C stops it.\n\n")
        while not stopping:
            for name, process in site.processes.items():
                if process.poll() is not None:
                    code = process.returncode
                    stdout.write(f"The {name} process exited with code {code}; stopping the site.\n")
                    return code if code and code > 0 else 1
            time.sleep(0.2)
        return 0
    finally:
        # Redis last: the web and market processes close their connections first.
        others = [p for name, p in site.processes.items() if name != "redis"]
        _stop_all(others)
        choice.close()


def _stop_all(processes: list[subprocess.Popen], timeout: float = 10) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for process in processes:
        try:
            process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
