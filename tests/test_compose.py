"""docker-compose.yml stays valid and in step with the documented process commands (no Docker engine here)."""

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
services = compose["services"]
readme = (ROOT / "README.md").read_text()


def test_compose_runs_redis_postgres_migrations_web_and_market():
    """Every part of the site is a service, with health checks on the ones others wait for."""
    assert set(services) == {"redis", "db", "migrate", "web", "lb", "market"}
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
