"""Settings fail at start, by name (issue 20): one reader for every environment variable, and a bad value of any
variable the README lists stops manage.py, daphne and run_market with one line that names it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from config.environment import Environment, SettingError

from .conftest import ROOT, free_port

GOOD_KEY = "tests-only-secret-key-not-used-anywhere-else"
PRODUCTION = {"DJANGO_DEBUG": "0", "DJANGO_SECRET_KEY": GOOD_KEY, "DJANGO_ALLOWED_HOSTS": "ticker.example.com"}

# Each variable of the README's Environment table with a value it must refuse; extra variables make the value's
# context (e.g. production settings for the ones that only matter there).
BAD_VALUES: dict[str, dict[str, str]] = {
    "DJANGO_SECRET_KEY": {**PRODUCTION, "DJANGO_SECRET_KEY": "<a long random string>"},
    "DJANGO_DEBUG": {"DJANGO_DEBUG": "maybe"},
    "DJANGO_ALLOWED_HOSTS": {**PRODUCTION, "DJANGO_ALLOWED_HOSTS": "*"},
    "DJANGO_CSRF_TRUSTED_ORIGINS": {"DJANGO_CSRF_TRUSTED_ORIGINS": "ticker.example.com"},
    "DJANGO_SECURE_COOKIES": {"DJANGO_SECURE_COOKIES": "ture"},
    "DJANGO_SECURE_PROXY_SSL_HEADER": {"DJANGO_SECURE_PROXY_SSL_HEADER": "si"},
    "DJANGO_HSTS_SECONDS": {"DJANGO_HSTS_SECONDS": "a year"},
    "DJANGO_STATIC_ROOT": {"DJANGO_STATIC_ROOT": "<path>"},
    "DATABASE_URL": {"DATABASE_URL": "the-database"},
    "REDIS_URL": {"REDIS_URL": "http://127.0.0.1:6379/0"},
    "REDIS_SENTINELS": {"REDIS_SENTINELS": "10.0.0.1:port", "REDIS_SENTINEL_MASTER": "ticker"},
    "REDIS_SENTINEL_MASTER": {"REDIS_SENTINEL_MASTER": "ticker"},
    "REDIS_SENTINEL_PASSWORD": {"REDIS_SENTINEL_PASSWORD": "changeme"},
    "TICKER_CHANNEL_PREFIX": {"TICKER_CHANNEL_PREFIX": "<prefix>"},
    "TICKER_CHANNEL_LAYER": {"TICKER_CHANNEL_LAYER": "postgres"},
    "MARKET_INTERVAL_MS": {"MARKET_INTERVAL_MS": "5"},
    "MARKET_LEASE_TTL_S": {"MARKET_LEASE_TTL_S": "0.4"},
    "MARKET_SPEED": {"MARKET_SPEED": "0"},
    "MARKET_HISTORY_STEPS": {"MARKET_HISTORY_STEPS": "-1"},
    "MARKET_CANDLE_MINUTES": {"MARKET_CANDLE_MINUTES": "0"},
    "MARKET_SESSION_OPEN_HOURS": {"MARKET_SESSION_OPEN_HOURS": "0"},
    "MARKET_SESSION_CLOSED_HOURS": {"MARKET_SESSION_CLOSED_HOURS": "-1"},
    "TICKER_HEARTBEAT_S": {"TICKER_HEARTBEAT_S": "11"},
    "TICKER_CLIENT_SILENCE_S": {"TICKER_CLIENT_SILENCE_S": "1"},
    "TICKER_MAX_CONNECTIONS": {"TICKER_MAX_CONNECTIONS": "-5"},
    "TICKER_MAX_CONNECTIONS_PER_ADDRESS": {"TICKER_MAX_CONNECTIONS_PER_ADDRESS": "ten"},
    "TICKER_UPGRADE_PROBE_S": {"TICKER_UPGRADE_PROBE_S": "0"},
    "TICKER_WS_RATE": {"TICKER_WS_RATE": "0"},
    "TICKER_WS_BURST": {"TICKER_WS_BURST": "0.5"},
    "TICKER_WS_FRAME_RATE": {"TICKER_WS_FRAME_RATE": "10"},
    "TICKER_WS_FRAME_BURST": {"TICKER_WS_FRAME_BURST": "-1"},
    "TICKER_HEADER_TIMEOUT_S": {"TICKER_HEADER_TIMEOUT_S": "0"},
    "TICKER_WS_COMPRESSION": {"TICKER_WS_COMPRESSION": "gzip"},
    "TICKER_WS_COMPRESS_MIN_BYTES": {"TICKER_WS_COMPRESS_MIN_BYTES": "-1"},
    "TICKER_LOGIN_FAILURE_LIMIT": {"TICKER_LOGIN_FAILURE_LIMIT": "0"},
    "TICKER_LOGIN_COOLOFF_MINUTES": {"TICKER_LOGIN_COOLOFF_MINUTES": "nan"},
    "TICKER_LOGIN_FAILURE_LIMIT_PER_USER": {"TICKER_LOGIN_FAILURE_LIMIT_PER_USER": "many"},
    "TICKER_TRUSTED_PROXIES": {"TICKER_TRUSTED_PROXIES": "-1"},
    "TICKER_METRICS_ALLOW": {"TICKER_METRICS_ALLOW": "10.0.0.0/33"},
    "TICKER_METRICS_TOKEN": {"TICKER_METRICS_TOKEN": "<token>"},
    "MARKET_METRICS_PORT": {"MARKET_METRICS_PORT": "70000"},
    "MARKET_METRICS_ADDRESS": {"MARKET_METRICS_ADDRESS": "everywhere"},
    "TICKER_OPS_REPORT_S": {"TICKER_OPS_REPORT_S": "0"},
    "TICKER_OPS_TTL_S": {"TICKER_OPS_TTL_S": "0"},
    "TICKER_LOG_FORMAT": {"TICKER_LOG_FORMAT": "xml"},
    "TICKER_LOG_LEVEL": {"TICKER_LOG_LEVEL": "LOUD"},
}
# Read by scripts/run (HOST, PORT) or by docker compose alone (POSTGRES_PASSWORD, tests/test_compose.py).
NOT_SETTINGS = {"HOST", "PORT", "POSTGRES_PASSWORD"}


def readme_variables() -> set[str]:
    """Every variable named in the first column of README.md's Environment table."""
    text = (ROOT / "README.md").read_text()
    table = text.split("### Environment", 1)[1].split("\n### ", 1)[0]
    rows = [line.split("|")[1] for line in table.splitlines() if line.startswith("| `")]
    return {name for row in rows for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", row)}


def settings_variables() -> set[str]:
    """Every variable config/settings.py reads."""
    source = (ROOT / "config" / "settings.py").read_text()
    return set(re.findall(r'env\.\w+\(\s*"([A-Z][A-Z0-9_]+)"', source))


def test_the_readme_lists_every_variable_the_settings_read_and_each_has_a_bad_value_here():
    """No variable is read without being documented, and the table below covers every documented one."""
    documented = readme_variables()
    assert settings_variables() <= documented, settings_variables() - documented
    assert documented - NOT_SETTINGS == set(BAD_VALUES)


def _start(command: list[str], extra: dict[str, str], tmp_path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "TICKER_", "MARKET_", "REDIS_"))}
    env.update(DJANGO_SETTINGS_MODULE="config.settings", DJANGO_DEBUG="1")
    env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    env.update(extra)
    # Bounded only so a process that, wrongly, starts serving cannot hang the test: a refusal takes about a second.
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def _one_line_naming(done: subprocess.CompletedProcess, name: str) -> str:
    lines = done.stderr.strip().splitlines()
    assert done.returncode != 0, f"{name}: exited 0\n{done.stdout}{done.stderr}"
    assert len(lines) == 1 and name in lines[0], f"{name}: expected one line naming it, got:\n{done.stderr}"
    return lines[0]


@pytest.mark.processes
def test_a_bad_value_of_any_variable_stops_manage_py_with_one_line_naming_it(tmp_path):
    """`manage.py check` with each documented variable set wrong exits non-zero and prints one line naming it."""
    command = [sys.executable, "manage.py", "check"]
    with ThreadPoolExecutor(4) as pool:
        results = pool.map(lambda extra: _start(command, extra, tmp_path), BAD_VALUES.values())
        done = dict(zip(BAD_VALUES, results, strict=True))
    for name, result in done.items():
        _one_line_naming(result, name)


@pytest.mark.processes
@pytest.mark.parametrize("process", ["daphne", "run_market"])
def test_daphne_and_run_market_refuse_a_bad_value_of_any_variable_at_start_with_one_line(tmp_path, process):
    """The two production processes stop before serving or stepping, with the same one line, for every variable."""
    daphne = ["-m", "daphne", "-b", "127.0.0.1", "-p", str(free_port()), "config.asgi:application"]
    command = [sys.executable, *(daphne if process == "daphne" else ["manage.py", "run_market", "--run-for", "1"])]
    with ThreadPoolExecutor(4) as pool:
        results = pool.map(lambda extra: _start(command, extra, tmp_path), BAD_VALUES.values())
        done = dict(zip(BAD_VALUES, results, strict=True))
    for name, result in done.items():
        _one_line_naming(result, name)


@pytest.mark.parametrize("port", ["http", "0", "70000", "-1"])
def test_the_run_command_refuses_a_bad_port_with_one_line(tmp_path, port):
    """scripts/run reads PORT itself: a bad one stops it at once, before anything is installed or started."""
    _one_line_naming(_start(["scripts/run"], {"PORT": port}, tmp_path), "PORT")


def test_booleans_are_strict():
    """1/0, true/false, yes/no, on/off in any case and with spaces; anything else names the variable."""
    for value, meant in [("1", True), (" Yes ", True), ("ON", True), ("false", False), ("0", False), ("off", False)]:
        assert Environment({"FLAG": value}).flag("FLAG", default=not meant) is meant
    assert Environment({"FLAG": ""}).flag("FLAG", default=True) is True
    for value in ("ture", "2", "enabled", "y"):
        with pytest.raises(SettingError, match=rf"^FLAG='{value}': use 1/0, true/false"):
            Environment({"FLAG": value}).flag("FLAG", default=False)


def test_lists_are_stripped_and_empty_entries_dropped():
    """ "a.com, b.com," is two names, both usable."""
    assert Environment({"HOSTS": " a.com, b.com,, "}).names("HOSTS", default=[]) == ["a.com", "b.com"]
    assert Environment({}).names("HOSTS", default=["x"]) == ["x"]


def test_numbers_are_checked_against_their_range():
    """Whole numbers and numbers outside their range, not finite or not numbers at all are refused by name."""
    env = Environment({"N": "0", "F": "inf", "G": "2.5", "W": "3.0"})
    with pytest.raises(SettingError, match=r"^N='0': use a whole number from 1 to 10 \(default 5\)\.$"):
        env.whole("N", 5, least=1, most=10)
    with pytest.raises(SettingError, match="^F='inf'"):
        env.number("F", 1.0, least=0)
    with pytest.raises(SettingError, match="^W='3.0': use a whole number"):
        env.whole("W", 1)
    assert env.number("G", 1.0, above=0) == 2.5


def test_choices_ignore_case_and_placeholders_are_refused():
    """A choice is returned as listed; a placeholder is never taken for a real value."""
    assert Environment({"L": "warning"}).text("L", "INFO", choices=("INFO", "WARNING")) == "WARNING"
    for placeholder in ("<your key>", "changeme", "CHANGE_ME", "replace-me", "TODO", "xxxx", "..."):
        with pytest.raises(SettingError, match="looks like a placeholder"):
            Environment({"KEY": placeholder}).text("KEY")
