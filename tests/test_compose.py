"""docker-compose.yml stays valid and in step with the documented process commands (no Docker engine here)."""

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
services = compose["services"]
readme = (ROOT / "README.md").read_text()


def test_compose_runs_redis_postgres_migrations_web_and_market():
    """Every part of the site is a service, with health checks on the ones others wait for."""
    assert set(services) == {"redis", "db", "migrate", "web", "market"}
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
