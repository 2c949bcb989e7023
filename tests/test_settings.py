"""Production settings refuse to start unsafe: each case runs the real settings module in a fresh process."""

import ast
import subprocess
import sys

from .conftest import ROOT, child_env


def start(show: str = "settings.DEBUG", **env: str) -> subprocess.CompletedProcess:
    """Load config.settings the way every process does, with this environment (None removes a variable); print show."""
    environment = child_env()
    for name, value in env.items():
        if value is None:
            environment.pop(name, None)
        else:
            environment[name] = value
    code = f"import django; django.setup(); from django.conf import settings; print({show})"
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60
    )


def test_debug_is_off_unless_asked_for():
    """Without DJANGO_DEBUG the site runs with debug off."""
    result = start(DJANGO_DEBUG=None)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_a_secret_key_is_required_outside_development():
    """Debug off and no DJANGO_SECRET_KEY: start-up fails and says what to set."""
    result = start(DJANGO_DEBUG=None, DJANGO_SECRET_KEY=None)
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY is not set" in result.stderr


def test_allowed_hosts_star_is_refused_outside_development():
    """'*' would also switch off the WebSocket Origin check, so it is refused when debug is off."""
    result = start(DJANGO_DEBUG=None, DJANGO_ALLOWED_HOSTS="*")
    assert result.returncode != 0
    assert "DJANGO_ALLOWED_HOSTS contains '*'" in result.stderr


def test_heartbeat_period_is_bounded_by_the_browsers_silence_timeout():
    """A heartbeat must come at least 2 s inside TICKER_CLIENT_SILENCE_S; the error names both settings."""
    result = start(TICKER_CLIENT_SILENCE_S="6", TICKER_HEARTBEAT_S="5")
    assert result.returncode != 0
    assert "TICKER_HEARTBEAT_S=5.0" in result.stderr and "TICKER_CLIENT_SILENCE_S=6.0" in result.stderr
    longer = start(TICKER_CLIENT_SILENCE_S="30", TICKER_HEARTBEAT_S="20")
    assert longer.returncode == 0, longer.stderr


def test_the_bench_app_is_installed_only_in_development():
    """Benchmarks and load generators (bench/) are development tooling: production settings leave them out."""
    installed = "'bench' in settings.INSTALLED_APPS"
    assert start(installed, DJANGO_DEBUG=None).stdout.strip() == "False"
    assert start(installed, DJANGO_DEBUG="1").stdout.strip() == "True"


def test_websocket_compression_settings_refuse_what_they_cannot_mean():
    """TICKER_WS_COMPRESSION is on or off; a frame-size threshold is not negative. Each error says what to set."""
    assert start("settings.TICKER_WS_COMPRESSION", TICKER_WS_COMPRESSION="off").stdout.strip() == "False"
    assert start("settings.TICKER_WS_COMPRESSION").stdout.strip() == "True"
    result = start(TICKER_WS_COMPRESSION="gzip")
    assert (
        result.returncode != 0
        and "TICKER_WS_COMPRESSION='gzip': use 1/0, true/false, yes/no or on/off" in result.stderr
    )
    result = start(TICKER_WS_COMPRESS_MIN_BYTES="-1")
    assert result.returncode != 0 and "TICKER_WS_COMPRESS_MIN_BYTES='-1': use a whole number from 0" in result.stderr


def test_placeholder_secret_keys_are_refused_outside_development():
    """Issue 21: with debug off, each known stand-in key (the old compose demo key, .env.example's placeholder,
    the development key, "changeme", "secret"), a key under 32 characters, one of few characters and a
    "django-insecure-" key stop start-up with an error naming DJANGO_SECRET_KEY; debug on still starts."""
    example = dict(
        line.split("=", 1) for line in (ROOT / ".env.example").read_text().splitlines() if line[:1].isalpha()
    )
    placeholders = [
        "insecure-compose-demo-key-set-DJANGO_SECRET_KEY",
        example["DJANGO_SECRET_KEY"],
        "insecure-development-key-do-not-use-in-production",
        "changeme",
        "secret",
        "a" * 20 + "B1-",  # 23 characters
        "abab" * 16,  # 64 characters, but two different ones
        "django-insecure-" + "x7Qk2mP9vL4nR8sT1wY6zC3b",
    ]
    for key in placeholders:
        result = start(DJANGO_DEBUG=None, DJANGO_SECRET_KEY=key)
        assert result.returncode != 0, key
        # "changeme" is refused by the reader of every variable (config/environment.py), the rest by the key check.
        assert "DJANGO_SECRET_KEY" in result.stderr and "placeholder" in result.stderr, (key, result.stderr[-300:])
    assert start(DJANGO_DEBUG="1", DJANGO_SECRET_KEY="secret").returncode == 0
    fine = start(DJANGO_DEBUG=None, DJANGO_SECRET_KEY="Vq3x-8JkP0rZt_6mWc2LsY9uBn4HdE7gFa1Qo5Ri")
    assert fine.returncode == 0, fine.stderr


def test_the_share_per_address_is_a_tenth_of_the_cap_unless_set_and_a_bad_value_stops_start_up():
    """TICKER_MAX_CONNECTIONS_PER_ADDRESS: unset, a tenth of TICKER_MAX_CONNECTIONS (250 at 2,500; 1 at least);
    0 lifts it; anything but a whole number of 0 or more fails, naming the variable (issue 21)."""
    share = "settings.TICKER_MAX_CONNECTIONS_PER_ADDRESS"
    assert start(share, TICKER_MAX_CONNECTIONS_PER_ADDRESS=None).stdout.strip() == "250"
    assert start(share, TICKER_MAX_CONNECTIONS_PER_ADDRESS="").stdout.strip() == "250"  # compose's empty default
    assert start(share, TICKER_MAX_CONNECTIONS="3", TICKER_MAX_CONNECTIONS_PER_ADDRESS=None).stdout.strip() == "1"
    assert start(share, TICKER_MAX_CONNECTIONS_PER_ADDRESS="0").stdout.strip() == "0"
    for bad in ("-1", "ten", "2.5"):
        result = start(TICKER_MAX_CONNECTIONS_PER_ADDRESS=bad)
        assert result.returncode != 0 and f"TICKER_MAX_CONNECTIONS_PER_ADDRESS={bad!r}" in result.stderr, bad


def test_redis_reads_outlast_the_channel_layers_blocking_receive():
    """Issue 20: every connection channels_redis makes to the primary (one server, or through Sentinel) reads with a
    timeout above its own blocking receive, so a quiet channel (the market stopped) is not taken for a dead Redis."""
    from channels_redis.core import RedisChannelLayer
    from channels_redis.utils import create_pool

    from ticker.runtime.redis_conn import CHANNEL_LAYER_BRPOP_TIMEOUT_S, READ_TIMEOUT_S, RedisConfig

    assert RedisChannelLayer.brpop_timeout == CHANNEL_LAYER_BRPOP_TIMEOUT_S, "channels_redis changed its receive"
    single = RedisConfig.parse(url="redis://127.0.0.1:6379/2")
    sentinel = RedisConfig.parse(url="redis://h/2", sentinels="127.0.0.1:26379", master_name="ticker")
    for config in (single, sentinel):
        pool = create_pool(config.channel_layer_host())
        assert pool.connection_kwargs["socket_timeout"] == READ_TIMEOUT_S > RedisChannelLayer.brpop_timeout
        assert pool.connection_kwargs["db"] == 2


def test_the_example_database_password_is_refused_outside_development():
    """.env.example's POSTGRES_PASSWORD, left as it is, stops start-up with debug off (compose puts it in
    DATABASE_URL)."""
    example = dict(
        line.split("=", 1) for line in (ROOT / ".env.example").read_text().splitlines() if line[:1].isalpha()
    )
    url = f"postgres://ticker:{example['POSTGRES_PASSWORD']}@db:5432/ticker"
    result = start(DJANGO_DEBUG=None, DATABASE_URL=url)
    assert result.returncode != 0 and "DATABASE_URL carries a placeholder password" in result.stderr, result.stderr
    fine = start(DJANGO_DEBUG=None, DATABASE_URL="postgres://ticker:3f9a1c0e7b2d4a6f8e1b@db:5432/ticker")
    assert fine.returncode == 0, fine.stderr


def test_every_postgresql_connection_gives_up_on_a_silent_network_and_the_url_may_say_otherwise():
    """On PostgreSQL every connect, unacknowledged send and unanswered wait fails within DATABASE_NETWORK_TIMEOUT_S
    (issue 25: a partitioned database must not hang a call); a value in DATABASE_URL's query string wins."""
    show = "sorted(settings.DATABASES['default'].get('OPTIONS', {}).items())"
    options = dict(ast.literal_eval(start(show, DATABASE_URL="postgres://ticker:pw4f9a@db:5432/ticker").stdout))
    assert options == {
        "connect_timeout": 5,
        "tcp_user_timeout": 5000,
        "keepalives": 1,
        "keepalives_idle": 1,
        "keepalives_interval": 1,
        "keepalives_count": 5,
        # The server's backend probes its client too: a session whose client went during a partition ends.
        "options": "-c tcp_keepalives_idle=1 -c tcp_keepalives_interval=1 -c tcp_keepalives_count=5",
    }
    tuned = dict(ast.literal_eval(start(show, DATABASE_URL="postgres://t:pw4f9a@db:5432/t?connect_timeout=20").stdout))
    assert tuned["connect_timeout"] == 20 and tuned["tcp_user_timeout"] == 5000
    sqlite = dict(ast.literal_eval(start(show, DATABASE_URL="sqlite:////tmp/x.sqlite3").stdout))
    assert "connect_timeout" not in sqlite
