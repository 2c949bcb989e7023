"""docker-compose.yml stays valid and in step with the documented process commands (no Docker engine here)."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from django.test import override_settings

ROOT = Path(__file__).resolve().parent.parent
compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
services = compose["services"]
readme = (ROOT / "README.md").read_text()


def test_compose_runs_redis_postgres_migrations_web_and_market():
    """Every part of the site is a service, with health checks on the ones others wait for."""
    assert set(services) == {"redis", "db", "migrate", "web", "lb", "market", "prometheus"}
    for name in ("redis", "db", "web"):
        assert services[name]["healthcheck"]["test"]
    assert services["web"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["market"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["web"]["depends_on"]["redis"]["condition"] == "service_healthy"


def test_compose_commands_are_the_documented_process_commands():
    """web runs daphne and market runs run_market, exactly as README.md's process commands say."""
    web = " ".join(services["web"]["command"]).replace("0.0.0.0", "HOST").replace("8000", "PORT")
    assert web == "daphne -b HOST -p PORT config.asgi:application"
    assert "daphne -b HOST -p PORT config.asgi:application" in readme
    assert services["market"]["command"] == ["python", "manage.py", "run_market"]
    assert "python manage.py run_market" in readme


def test_compose_never_allows_every_host_and_runs_without_debug():
    """ALLOWED_HOSTS is a list of names (never '*') and debug is off."""
    for name in ("web", "market", "migrate"):
        env = services[name]["environment"]
        assert "*" not in env["DJANGO_ALLOWED_HOSTS"]
        assert env["DJANGO_DEBUG"] == "0"
        assert env["REDIS_URL"] == "redis://redis:6379/0"
        assert env["DATABASE_URL"].startswith("postgres://")


def test_dockerfile_installs_the_pinned_requirements_and_serves_with_daphne():
    """The image installs requirements.txt and its default command is the web process."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "pip install --no-cache-dir -r requirements.txt" in dockerfile
    assert 'CMD ["daphne", "-b", "0.0.0.0", "-p", "8000", "config.asgi:application"]' in dockerfile


def test_the_image_leaves_out_the_development_tooling():
    """bench/ (benchmarks, load generators) is not copied into the image."""
    assert "bench" in (ROOT / ".dockerignore").read_text().splitlines()


def test_compose_runs_several_web_replicas_behind_the_nginx_config_the_tests_run():
    """Scale-out: two web replicas on one Redis, reached only through nginx with deploy/nginx.conf."""
    assert services["web"]["deploy"]["replicas"] >= 2
    assert "ports" not in services["web"], "replicas cannot share a host port; the load balancer has it"
    lb = services["lb"]
    assert lb["ports"] == ["${PORT:-8000}:8000"]
    assert "./deploy/nginx.conf:/etc/nginx/conf.d/default.conf:ro" in lb["volumes"]
    assert lb["depends_on"]["web"]["condition"] == "service_healthy"
    conf = (ROOT / "deploy" / "nginx.conf").read_text()
    assert "server web:8000 max_fails=0;" in conf and "listen 8000;" in conf
    assert "proxy_set_header Upgrade $http_upgrade;" in conf


def test_compose_runs_a_market_and_its_hot_standby():
    """Two market processes: one leads and the other stands by (the lease decides), as README.md says."""
    assert services["market"]["deploy"]["replicas"] == 2
    assert "ports" not in services["market"]
    assert "one leads, the other stands by" in readme


def test_the_web_health_check_asks_readyz_not_a_page_behind_the_host_check():
    """Docker's check of a replica asks /readyz on 127.0.0.1, which ticker.ops.health answers before Host validation."""
    from ticker.ops.health import PATHS

    check = " ".join(services["web"]["healthcheck"]["test"])
    urls = re.findall(r"http://[^'\"]+", check)
    assert urls == ["http://127.0.0.1:8000/readyz"], urls
    assert "/readyz" in PATHS
    assert services["web"]["healthcheck"]["timeout"] == "5s"


async def _get(path: str, host: bytes) -> int:
    import asyncio

    from config.asgi import application
    from ticker.ops import registry as ops

    sent, asked = [], []

    async def receive():
        if not asked:
            asked.append(True)
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.Event().wait()  # the client stays connected: Django stops listening once it has answered

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", host)],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    try:
        await application(scope, receive, send)
    finally:
        await ops.stop_reporting()
    return sent[0]["status"]


@pytest.mark.asyncio
@override_settings(ALLOWED_HOSTS=["ticker.example.com"])
async def test_health_and_metrics_answer_when_allowed_hosts_is_the_real_host_name_only():
    """With ALLOWED_HOSTS = the real name only, Django refuses Host 127.0.0.1 (400) but /healthz and /metrics
    answer it (/readyz too: tests/test_operations.py, with real processes)."""
    assert await _get("/favicon.ico", b"127.0.0.1:8000") == 400
    assert await _get("/healthz", b"127.0.0.1:8000") == 200
    assert await _get("/metrics", b"127.0.0.1:8000") == 200


def test_compose_runs_prometheus_on_every_replica_and_the_market():
    """Prometheus scrapes web:8000 (each replica, by Docker's DNS) and the market's metrics port."""
    prometheus = services["prometheus"]
    assert prometheus["image"].startswith("prom/prometheus:")
    assert "./deploy/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in prometheus["volumes"]
    config = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job["dns_sd_configs"][0] for job in config["scrape_configs"]}
    assert jobs["web"]["names"] == ["web"] and jobs["web"]["port"] == 8000
    market_env = services["market"]["environment"]
    assert jobs["market"]["names"] == ["market"] and jobs["market"]["port"] == int(market_env["MARKET_METRICS_PORT"])
    assert market_env["MARKET_METRICS_ADDRESS"] == "0.0.0.0"
    assert "ports" not in services["market"], "the market's metrics stay on the compose network"
    assert "location = /metrics" in (ROOT / "deploy" / "nginx.conf").read_text(), "nginx keeps /metrics private"
    assert (ROOT / "deploy" / "grafana-dashboard.json").exists()


def compose_config(tmp_path, **env: str) -> subprocess.CompletedProcess:
    """Debian's docker-compose validating docker-compose.yml (no engine needed) in a clean environment: nothing
    from the caller's shell, and an empty env file, so a developer's own .env cannot make it pass."""
    assert shutil.which("docker-compose"), (
        "docker-compose is missing: run scripts/system-deps (apt-get install docker-compose)"
    )
    empty = tmp_path / "empty.env"
    empty.write_text("")
    return subprocess.run(
        ["docker-compose", "--env-file", str(empty), "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
        cwd=tmp_path,
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_compose_refuses_to_start_without_its_secrets(tmp_path):
    """Issue 21: no public fallback key or password. Without DJANGO_SECRET_KEY (or POSTGRES_PASSWORD) compose
    refuses and names the variable; with both set it is valid."""
    key, password = "Vq3x-8JkP0rZt_6mWc2LsY9uBn4HdE7gFa1Qo5Ri", "c0ffee0123456789abcdef"
    no_key = compose_config(tmp_path, POSTGRES_PASSWORD=password)
    assert no_key.returncode != 0 and "set DJANGO_SECRET_KEY" in no_key.stderr, no_key.stderr
    no_password = compose_config(tmp_path, DJANGO_SECRET_KEY=key)
    assert no_password.returncode != 0 and "set POSTGRES_PASSWORD" in no_password.stderr, no_password.stderr
    both = compose_config(tmp_path, DJANGO_SECRET_KEY=key, POSTGRES_PASSWORD=password)
    assert both.returncode == 0, both.stderr


def test_the_database_password_comes_from_the_environment_and_env_files_stay_private():
    """db and DATABASE_URL use ${POSTGRES_PASSWORD}; .env.example names both secrets; .env is never committed or
    copied into the image."""
    assert services["db"]["environment"]["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:?")
    assert "${POSTGRES_PASSWORD:?" in services["web"]["environment"]["DATABASE_URL"]
    assert services["web"]["environment"]["DJANGO_SECRET_KEY"].startswith("${DJANGO_SECRET_KEY:?")
    example = (ROOT / ".env.example").read_text()
    assert "\nDJANGO_SECRET_KEY=" in example and "\nPOSTGRES_PASSWORD=" in example
    assert ".env" in (ROOT / ".gitignore").read_text().splitlines()
    assert ".env" in (ROOT / ".dockerignore").read_text().splitlines()
    assert "cp .env.example .env" in readme
