"""Settings for ticker, read from the environment (12-factor).

Every value that differs between a laptop and production comes from an
environment variable; see README.md ("Environment") for the list.
"""

import hashlib
import ipaddress
import warnings
from datetime import timedelta
from pathlib import Path

import environ

from config.environment import LOG_LEVELS, Environment, SettingError
from ticker.runtime.redis_conn import RedisConfig

BASE_DIR = Path(__file__).resolve().parent.parent

# Every variable is read through `env` (config/environment.py): strict booleans, stripped lists, ranges
# checked at start-up, and an error that names the variable (issue 20). README.md, "Environment".
env = Environment()

DEBUG = env.flag("DJANGO_DEBUG", default=False)

# A secret key is required whenever debug is off: failing at start-up is
# better than running production with a key everyone can read in the repo.
SECRET_KEY = env.text("DJANGO_SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise SettingError(
            "DJANGO_SECRET_KEY is not set: set DJANGO_SECRET_KEY=<a long random string>, "
            "or DJANGO_DEBUG=1 for local development."
        )
    SECRET_KEY = "insecure-development-key-do-not-use-in-production"
# Keys anyone can read (issue 21: compose fell back to a public demo key with debug off): the old compose
# demo key, .env.example's placeholder, this file's development key, and the usual stand-ins. Refused with
# debug off, as is any key shorter than 32 characters, with fewer than 5 different characters, or starting
# with "django-insecure-" (Django's own check, security.W009, calls such keys insecure).
PLACEHOLDER_SECRET_KEYS = {
    "insecure-compose-demo-key-set-django_secret_key",
    "replace-me-with-a-long-random-string",
    "insecure-development-key-do-not-use-in-production",
    "changeme",
    "change-me",
    "secret",
    "secret-key",
    "secret_key",
    "your-secret-key",
}
if not DEBUG and (
    SECRET_KEY.strip().lower() in PLACEHOLDER_SECRET_KEYS
    or len(SECRET_KEY) < 32
    or len(set(SECRET_KEY)) < 5
    or SECRET_KEY.startswith("django-insecure-")
):
    raise SettingError(
        "DJANGO_SECRET_KEY is a placeholder or too weak (known stand-in, under 32 characters, or fewer than "
        "5 different characters): set DJANGO_SECRET_KEY to a long random string, e.g. the output of "
        'python3 -c "import secrets; print(secrets.token_urlsafe(50))".'
    )

ALLOWED_HOSTS = env.names(
    "DJANGO_ALLOWED_HOSTS",
    default=["127.0.0.1", "localhost", "[::1]"] if DEBUG else [],
)
if "*" in ALLOWED_HOSTS and not DEBUG:
    raise SettingError(
        "DJANGO_ALLOWED_HOSTS contains '*': list the host names the site is served "
        "under; '*' also disables the WebSocket Origin check."
    )
# Origins besides the site's own that may post forms (Django's CSRF check) and read the feed over every
# transport (ticker/edge/security.py: the same rule): "https://ticker.example.com", "https://*.example.com".
CSRF_TRUSTED_ORIGINS = env.names("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])
for _origin in CSRF_TRUSTED_ORIGINS:
    if "://" not in _origin:
        raise SettingError(
            f"DJANGO_CSRF_TRUSTED_ORIGINS={_origin!r}: list origins with their scheme, e.g. https://ticker.example.com."
        )

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "channels",
    "axes",
    "ticker",
]
if DEBUG:
    # Benchmarks and load generators (bench/): development tooling, never installed in production.
    INSTALLED_APPS.append("bench")

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "ticker.edge.middleware.content_security_policy",
    "ticker.edge.middleware.StaticFilesMiddleware",  # WhiteNoise, async-capable
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: turns a locked-out login into the lockout page (async-capable).
    "axes.middleware.AxesMiddleware",
]

# Admin logins: django-axes counts failures per username AND client address together, so a guesser
# locks only the account it guesses from where it guesses, never the operator at their own desk (nor
# every account behind one office NAT). TICKER_LOGIN_FAILURE_LIMIT failures lock that pair out for
# TICKER_LOGIN_COOLOFF_MINUTES (the right password is refused too, and each try while locked starts
# the cool-off again); a successful login clears the count. README.md, "Environment".
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # first: refuses a locked-out pair before a password is checked
    "django.contrib.auth.backends.ModelBackend",
]
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_FAILURE_LIMIT = env.whole("TICKER_LOGIN_FAILURE_LIMIT", default=5, least=1, most=1000)
TICKER_LOGIN_COOLOFF_MINUTES = env.number("TICKER_LOGIN_COOLOFF_MINUTES", default=15.0, above=0, most=7 * 24 * 60)
# The pair lock alone let a guesser spread its guesses over addresses (issue 21: 80 wrong passwords for one
# username from 20 addresses locked nothing; IPv6 gives a client a /64). So a username is also locked from
# every address after TICKER_LOGIN_FAILURE_LIMIT_PER_USER failures within the cool-off, from any addresses
# (ticker/edge/lockout.py). That lets a guesser lock an operator out too, for the cool-off or until an operator
# runs `manage.py axes_reset_username`: a wait is better than a guessed password.
TICKER_LOGIN_FAILURE_LIMIT_PER_USER = env.whole("TICKER_LOGIN_FAILURE_LIMIT_PER_USER", default=20, least=1, most=10_000)
AXES_HANDLER = "ticker.edge.lockout.LoginLockout"
AXES_COOLOFF_TIME = timedelta(minutes=TICKER_LOGIN_COOLOFF_MINUTES)
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "ticker/lockout.html"
AXES_LOCKOUT_CALLABLE = "ticker.edge.lockout.lockout_response"
# The client address is REMOTE_ADDR (ticker.edge.security.client_address), so X-Forwarded-For, which any
# client may send, is ignored: unless TICKER_TRUSTED_PROXIES says how many proxies (nginx: 1) stand in
# front of the web processes, and then only the entry the outermost of them wrote counts. Set it only
# when the web processes cannot be reached but through those proxies.
TICKER_TRUSTED_PROXIES = env.whole("TICKER_TRUSTED_PROXIES", default=0, least=0, most=10)
AXES_CLIENT_IP_CALLABLE = "ticker.edge.security.client_address"

# Site accounts (issue 23, ticker/accounts/): their logins are counted and locked by django-axes exactly as the
# admin's (above). A sign-up authenticates nobody, so axes does not see it: failed sign-ups are counted per
# client address instead, in the database (ticker/accounts/limits.py), and past this many within
# TICKER_LOGIN_COOLOFF_MINUTES that address gets "too many attempts" (429) until the cool-off passes.
TICKER_SIGNUP_FAILURE_LIMIT = 20
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/"

ROOT_URLCONF = "config.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "ticker.context_processors.site",
            ],
        },
    },
]

ASGI_APPLICATION = "config.asgi.application"

_database_url = env.text("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")
try:
    with warnings.catch_warnings():  # django-environ warns, then returns no engine: the error below says it once
        warnings.simplefilter("ignore")
        _database = environ.Env.db_url_config(_database_url)
except Exception:  # django-environ raises several kinds for a URL it cannot read
    _database = {}
if not _database.get("ENGINE"):
    raise SettingError(
        f"DATABASE_URL={_database_url!r} is not a database URL: use sqlite:///PATH or "
        "postgres://USER:PASSWORD@HOST:5432/NAME."
    )
DATABASES = {"default": _database}
# .env.example's stand-in for POSTGRES_PASSWORD, which compose puts into DATABASE_URL: a copied .env that was never
# edited would run production on a password anyone can read here (review of issue 21).
if not DEBUG and str(_database.get("PASSWORD", "")) in {"replace-me-with-a-random-password", "changeme", "password"}:
    raise SettingError(
        "DATABASE_URL carries a placeholder password (.env.example's POSTGRES_PASSWORD?): set POSTGRES_PASSWORD "
        "(or the password in DATABASE_URL) to a random string, e.g. the output of `openssl rand -hex 24`."
    )
# Under ASGI every request may run in a different thread: persistent
# connections would pile up one per thread, so close them after each request.
DATABASES["default"]["CONN_MAX_AGE"] = 0
# A database host that vanishes from the network (a partition: packets dropped, no reset) must fail every call
# within a bound, not hang it for the kernel's retries (about two minutes for a connect, fifteen for a query in
# flight; issue 25, tests/test_multihost.py: a market cut off from PostgreSQL sat in one connect for the whole cut,
# and could not have stopped on SIGTERM meanwhile). libpq: a connect gives up after DATABASE_NETWORK_TIMEOUT_S;
# data sent and not acknowledged for that long (tcp_user_timeout), or a peer that stops answering keepalives while
# a result is awaited, breaks the connection. None of these cuts a slow query short: the server's kernel
# acknowledges and answers keepalives while it works. A value in DATABASE_URL's query string (?connect_timeout=10)
# wins.
DATABASE_NETWORK_TIMEOUT_S = 5
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    _options = DATABASES["default"].setdefault("OPTIONS", {})
    for _name, _value in {
        "connect_timeout": DATABASE_NETWORK_TIMEOUT_S,
        "tcp_user_timeout": DATABASE_NETWORK_TIMEOUT_S * 1000,
        "keepalives": 1,
        "keepalives_idle": 1,
        "keepalives_interval": 1,
        "keepalives_count": DATABASE_NETWORK_TIMEOUT_S,
        # And the server's side of it: the session's backend probes its client the same way, so a connection whose
        # client went during a partition (the market keeps one open: ticker/market/dbthread.py) ends on the server
        # too, instead of sitting idle for the kernel's two hours (and holding up a smart shutdown meanwhile).
        "options": "-c tcp_keepalives_idle=1 -c tcp_keepalives_interval=1 "
        f"-c tcp_keepalives_count={DATABASE_NETWORK_TIMEOUT_S}",
    }.items():
        _options.setdefault(_name, _value)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The market process writes every step while daphne reads: WAL lets readers
    # and the writer proceed together, and the timeout rides out short locks.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env.text("REDIS_URL", default="redis://127.0.0.1:6379/0")
# Redis Sentinel (high availability): with both set, every Redis client asks these
# sentinels for the current primary, and REDIS_URL gives only its password and
# database. README.md, "Redis through Sentinel".
REDIS = RedisConfig.parse(
    url=REDIS_URL,
    sentinels=env.text("REDIS_SENTINELS"),
    master_name=env.text("REDIS_SENTINEL_MASTER"),
    sentinel_password=env.text("REDIS_SENTINEL_PASSWORD"),
)


def _site_namespace(database: dict) -> str:
    """The default channel-layer prefix: one per database, so two sites on one Redis never share a feed.

    Web and market processes of one site resolve the same database, so they
    agree; another checkout (its own SQLite file) or another PostgreSQL
    database gets another namespace.
    """
    if database["ENGINE"] == "django.db.backends.sqlite3" and str(database["NAME"]) != ":memory:":
        where = str(Path(database["NAME"]).resolve())
    else:
        where = f"{database['ENGINE']}:{database.get('HOST', '')}:{database.get('PORT', '')}:{database['NAME']}"
    return "ticker-" + hashlib.sha256(where.encode()).hexdigest()[:10]


# The Redis namespace of the feed; an explicit value wins (every process of a site must then use the same one).
TICKER_CHANNEL_PREFIX = env.text("TICKER_CHANNEL_PREFIX") or _site_namespace(DATABASES["default"])

# "redis" (default) or "memory". "memory" is only for one process holding both
# the web server and the market (the run command's fallback when no Redis can
# be had) and for tests of pure logic.
CHANNEL_LAYER_BACKEND = env.text("TICKER_CHANNEL_LAYER", default="redis", choices=("redis", "memory"))
if CHANNEL_LAYER_BACKEND == "memory":
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
elif CHANNEL_LAYER_BACKEND == "redis":
    # Why the core layer, and why these numbers: README.md, "How the feed flows, and the channel layer".
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                "hosts": [REDIS.channel_layer_host()],
                "prefix": TICKER_CHANNEL_PREFIX,
                # Each web process holds ONE channel in the quotes group and
                # drains it continuously; 100 queued batches would be 25 s of
                # feed at the default interval, far past any useful backlog.
                "capacity": 100,
                # A dead process's channel leaves the group after 5 minutes;
                # live processes re-join every minute (ticker.hub).
                "group_expiry": 300,
                "expiry": 60,
            },
        }
    }

# The market: how often it steps, how much history it keeps.
MARKET_INTERVAL_MS = env.whole("MARKET_INTERVAL_MS", default=250, least=10, most=60_000)
MARKET_HISTORY_STEPS = env.whole("MARKET_HISTORY_STEPS", default=2400, least=1, most=100_000)
# Simulated seconds per real second: at 60, one real second is one trading
# minute, so a 30% annual volatility moves a $150 stock a few cents a step.
MARKET_SPEED = env.number("MARKET_SPEED", default=60.0, above=0, most=86_400)
# Simulated trading sessions, in simulated hours (so at MARKET_SPEED=60, open
# 6.5 real minutes, then closed 30 real seconds). docs/protocol.md, "The session".
MARKET_SESSION_OPEN_HOURS = env.number("MARKET_SESSION_OPEN_HOURS", default=6.5, above=0, most=24 * 365)
MARKET_SESSION_CLOSED_HOURS = env.number("MARKET_SESSION_CLOSED_HOURS", default=0.5, least=0, most=24 * 365)
# Seconds a market's lease lasts without renewal (every step renews it): a standby takes over at most this
# long (plus one poll, a fifth of it) after the leader dies, and at once when the leader stops cleanly.
MARKET_LEASE_TTL_S = env.number("MARKET_LEASE_TTL_S", default=2.5, least=0.5, most=300)
if MARKET_LEASE_TTL_S * 1000 < 2 * MARKET_INTERVAL_MS:
    raise SettingError(
        f"MARKET_LEASE_TTL_S={MARKET_LEASE_TTL_S:g} is less than twice MARKET_INTERVAL_MS={MARKET_INTERVAL_MS}: "
        "each step renews the lease, so it must outlast two steps (defaults 2.5 s and 250 ms)."
    )
# Finished one-minute candles kept per symbol (and the candles endpoint's largest limit).
MARKET_CANDLE_MINUTES = env.whole("MARKET_CANDLE_MINUTES", default=240, least=1, most=7 * 24 * 60)
# Seconds a browser waits without any frame (heartbeats included) before it
# takes a connection for dead and opens a new one; pages hand it to the
# browser (ticker.context_processors.site).
TICKER_CLIENT_SILENCE_S = env.number("TICKER_CLIENT_SILENCE_S", default=12.0, least=2.1, most=3600)
# Seconds between the heartbeat frames every live connection gets (WebSocket
# and SSE): at least 2 s inside the browser's silence timeout, so a late
# heartbeat does not cost a reconnect.
TICKER_HEARTBEAT_S = env.number("TICKER_HEARTBEAT_S", default=5.0, least=0.1, most=3600)
# Seconds a browser that fell back from WebSocket (to SSE, long-poll or polling)
# waits before it tries the better transports again, beside the one it has
# (static/ticker/js/chain.js); the page hands it over like the silence timeout.
TICKER_UPGRADE_PROBE_S = env.number("TICKER_UPGRADE_PROBE_S", default=30.0, above=0, most=3600)
if not TICKER_HEARTBEAT_S <= TICKER_CLIENT_SILENCE_S - 2:
    raise SettingError(
        f"TICKER_HEARTBEAT_S={TICKER_HEARTBEAT_S!r}: use 0.1 seconds up to 2 s less than "
        f"TICKER_CLIENT_SILENCE_S={TICKER_CLIENT_SILENCE_S!r} (browsers give up after that long without a frame)."
    )

# Client messages per WebSocket connection (a token bucket, ticker.edge.ratelimit):
# TICKER_WS_RATE a second sustained, bursts of TICKER_WS_BURST. The dashboard
# sends a few a minute; a client over the limit gets a "rate_limited" error
# frame and close code 1008 (docs/protocol.md, "Limits and errors").
TICKER_WS_RATE = env.number("TICKER_WS_RATE", default=20.0, above=0, most=10**7)
TICKER_WS_BURST = env.whole("TICKER_WS_BURST", default=40, least=1, most=10**7)
# Client frames per WebSocket connection (issue 21): every frame counts (data, continuation, ping, pong), so a
# message cut into a million one-byte frames or a flood of pings is closed (1008) after a few milliseconds of
# work, not seconds; checked by the server adapter as each frame's header is read (ticker/edge/server.py). At least
# the message limit: a client within it sends at least one frame per message; unset, they follow a message limit
# raised above them (the fuzz test lifts it).
TICKER_WS_FRAME_RATE = env.number("TICKER_WS_FRAME_RATE", default=max(200.0, TICKER_WS_RATE), above=0, most=10**7)
TICKER_WS_FRAME_BURST = env.whole("TICKER_WS_FRAME_BURST", default=max(250, TICKER_WS_BURST), least=1, most=10**7)
if not (TICKER_WS_FRAME_RATE >= TICKER_WS_RATE and TICKER_WS_FRAME_BURST >= TICKER_WS_BURST):
    raise SettingError(
        f"TICKER_WS_FRAME_RATE={TICKER_WS_FRAME_RATE:g} and TICKER_WS_FRAME_BURST={TICKER_WS_FRAME_BURST} would "
        f"refuse clients that keep to the message limit (TICKER_WS_RATE={TICKER_WS_RATE:g}, "
        f"TICKER_WS_BURST={TICKER_WS_BURST}): set them at least as high (defaults 200 and 250, or those if higher)."
    )
# Seconds a connection to the web process has to send a complete request (line, headers, any body), counted from its
# opening (or, kept alive, from the end of its previous response), however slowly bytes trickle in (issue 21:
# Twisted's idle timeout restarts on every byte, so 20,000 connections sending a header line every 20 s were all
# still held after 4 minutes). ticker/edge/server.py closes it; a WebSocket, SSE stream or long-poll whose headers are
# complete is not affected.
TICKER_HEADER_TIMEOUT_S = env.number("TICKER_HEADER_TIMEOUT_S", default=10.0, above=0, most=3600)

# permessage-deflate (RFC 7692) on WebSockets served by daphne (ticker/edge/server.py, docs/protocol.md,
# "Compression"): on by default, answered with server_no_context_takeover so each frame is compressed once
# and shared by every client it goes to. "off" declines every client's offer. Frames under
# TICKER_WS_COMPRESS_MIN_BYTES go uncompressed: deflating a heartbeat saves a few bytes for ~20 µs of CPU.
TICKER_WS_COMPRESSION = env.flag("TICKER_WS_COMPRESSION", default=True)
TICKER_WS_COMPRESS_MIN_BYTES = env.whole("TICKER_WS_COMPRESS_MIN_BYTES", default=256, least=0, most=1 << 20)

# Who may read a web process's /metrics (ticker.ops.health): clients from these networks, or any client sending
# "Authorization: Bearer <TICKER_METRICS_TOKEN>" (when set). Not public by default: loopback only.
TICKER_METRICS_ALLOW = env.names("TICKER_METRICS_ALLOW", default=["127.0.0.1/32", "::1/128"])
try:
    TICKER_METRICS_NETWORKS = [ipaddress.ip_network(net, strict=False) for net in TICKER_METRICS_ALLOW]
except ValueError as error:
    raise SettingError(
        f"TICKER_METRICS_ALLOW={','.join(TICKER_METRICS_ALLOW)!r}: {error}. "
        "List networks separated by commas, e.g. 127.0.0.1/32,::1/128,10.0.0.0/8."
    ) from None
TICKER_METRICS_TOKEN = env.text("TICKER_METRICS_TOKEN")
# The market's own metrics (run_market --metrics-port): off unless a port is given.
MARKET_METRICS_PORT = env.whole("MARKET_METRICS_PORT", default=0, least=0, most=65535)
MARKET_METRICS_ADDRESS = env.text("MARKET_METRICS_ADDRESS", default="127.0.0.1")
try:
    ipaddress.ip_address(MARKET_METRICS_ADDRESS)
except ValueError:
    raise SettingError(
        f"MARKET_METRICS_ADDRESS={MARKET_METRICS_ADDRESS!r}: use an IP address to listen on, e.g. 127.0.0.1 "
        "or 0.0.0.0 (default 127.0.0.1)."
    ) from None
# Seconds between each process's operations report to Redis (the admin's operations view); a report lives
# TICKER_OPS_TTL_S, so a process that stops reporting leaves the view within that long.
TICKER_OPS_REPORT_S = env.number("TICKER_OPS_REPORT_S", default=1.0, least=0.1, most=3600)
TICKER_OPS_TTL_S = env.whole("TICKER_OPS_TTL_S", default=5, least=1, most=86_400)
if not TICKER_OPS_REPORT_S < TICKER_OPS_TTL_S:
    raise SettingError(
        f"TICKER_OPS_REPORT_S={TICKER_OPS_REPORT_S!r} must be at least 0.1 and less than "
        f"TICKER_OPS_TTL_S={TICKER_OPS_TTL_S!r} (whole seconds), or live processes would blink out of the view."
    )
# Admission control (ticker/edge/admission.py): the most WebSocket, SSE and long-poll connections one
# web process holds open; past it a WebSocket is closed with 1013 and SSE and long-poll get 503 with
# Retry-After, so the clients already in keep their latency (issue 12). 2,500 is what one daphne
# process carried in the fan-out benchmark with two processes sharing this project's 2-core machine
# (docs/benchmarks.md: 5,000 clients over two, p99 median 83 ms, one run in nine over 100 ms); a
# process alone on a core carried 3,000 at p99 58 ms, so 2,500 keeps a margin for the heartbeats,
# snapshots and reconnects the benchmark does not have. 0 lifts the cap (the benchmarks use it).
TICKER_MAX_CONNECTIONS = env.whole("TICKER_MAX_CONNECTIONS", default=2500, least=0, most=1_000_000)
# A fair share per client address (issue 21): one address filled a process's whole cap with 2,500 SSE
# streams in 11 s and locked every other client out. An address may hold at most this many of a
# process's WebSockets, SSE streams and long-polls (an IPv6 address counts for its whole /64); past it
# it is refused as at the cap, with "address_full". The address is the one TICKER_TRUSTED_PROXIES makes
# trustworthy (behind nginx with TICKER_TRUSTED_PROXIES=1, the real client; without it every client
# behind a proxy shares the proxy's address). Unset: a tenth of TICKER_MAX_CONNECTIONS (250 at 2,500),
# so ten addresses at their share fill a process; a dashboard holds one connection, the Lab four, so
# 250 still admits a large office behind one NAT. 0 lifts it (the benchmarks and the soak test, which
# open thousands of connections from 127.0.0.1).
TICKER_MAX_CONNECTIONS_PER_ADDRESS = env.whole(
    "TICKER_MAX_CONNECTIONS_PER_ADDRESS",
    default=-(-TICKER_MAX_CONNECTIONS // 10),  # a tenth, rounded up: 1 at least
    least=0,
    most=1_000_000,
)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# The chart library's standalone ES module, installed from package-lock.json by scripts/bootstrap (npm ci)
# and served as it ships, at /static/lightweight-charts/ (no build step).
STATICFILES_DIRS = [
    BASE_DIR / "static",
    ("lightweight-charts", BASE_DIR / "node_modules" / "lightweight-charts" / "dist"),
]
STATIC_ROOT = Path(env.text("DJANGO_STATIC_ROOT", default=str(BASE_DIR / "staticfiles")))
# collectstatic also writes a gzipped copy of each file, which WhiteNoise serves to browsers that take
# gzip: the chart library is 196 KB as it ships, 62 KB gzipped (the dashboard's first load is held under 300 KB).
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# In development WhiteNoise serves straight from the finders, so no
# collectstatic is needed; the Docker image runs collectstatic at build time.
WHITENOISE_USE_FINDERS = DEBUG
WHITENOISE_AUTOREFRESH = DEBUG

SECURE_CONTENT_TYPE_NOSNIFF = True
# HSTS is sent only on HTTPS responses (SecurityMiddleware checks), so it is
# safe to leave on: plain-HTTP development never sees it. Behind a TLS proxy,
# set DJANGO_SECURE_PROXY_SSL_HEADER=1 so Django knows the request was HTTPS.
SECURE_HSTS_SECONDS = env.whole("DJANGO_HSTS_SECONDS", default=0 if DEBUG else 31_536_000, least=0, most=10**9)
if env.flag("DJANGO_SECURE_PROXY_SSL_HEADER", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_SECURE = env.flag("DJANGO_SECURE_COOKIES", default=not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE

# "plain" (default) or "json": one JSON object per line with the process and connection ids (ticker.ops.logs).
TICKER_LOG_FORMAT = env.text("TICKER_LOG_FORMAT", default="plain", choices=("plain", "json"))
TICKER_LOG_LEVEL = env.text("TICKER_LOG_LEVEL", default="INFO", choices=LOG_LEVELS)
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "ticker.ops.logs.ContextFilter"}, "repeats": {"()": "ticker.ops.logs.RepeatFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        "json": {"()": "ticker.ops.logs.JsonLines"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": TICKER_LOG_FORMAT, "filters": ["context", "repeats"]}
    },
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        # Django's own default sends these to a console handler of its own too (in debug): each line once, here.
        "django": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "ticker": {"handlers": ["console"], "level": TICKER_LOG_LEVEL, "propagate": False},
    },
}
