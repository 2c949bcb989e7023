"""Settings for ticker, read from the environment (12-factor).

Every value that differs between a laptop and production comes from an
environment variable; see README.md ("Environment") for the list.
"""

import hashlib
import ipaddress
from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from ticker.redis_conn import RedisConfig

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()

DEBUG = env.bool("DJANGO_DEBUG", default=False)

# A secret key is required whenever debug is off: failing at start-up is
# better than running production with a key everyone can read in the repo.
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY is not set: set DJANGO_SECRET_KEY=<a long random string>, "
            "or DJANGO_DEBUG=1 for local development."
        )
    SECRET_KEY = "insecure-development-key-do-not-use-in-production"

ALLOWED_HOSTS = env.list(
    "DJANGO_ALLOWED_HOSTS",
    default=["127.0.0.1", "localhost", "[::1]"] if DEBUG else [],
)
if "*" in ALLOWED_HOSTS and not DEBUG:
    raise ImproperlyConfigured(
        "DJANGO_ALLOWED_HOSTS contains '*': list the host names the site is served "
        "under; '*' also disables the WebSocket Origin check."
    )
# Origins besides the site's own that may post forms (Django's CSRF check) and read the feed over every
# transport (ticker/security.py: the same rule): "https://ticker.example.com", "https://*.example.com".
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

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
    "ticker.middleware.content_security_policy",
    "ticker.middleware.StaticFilesMiddleware",  # WhiteNoise, async-capable
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
AXES_FAILURE_LIMIT = env.int("TICKER_LOGIN_FAILURE_LIMIT", default=5)
TICKER_LOGIN_COOLOFF_MINUTES = env.float("TICKER_LOGIN_COOLOFF_MINUTES", default=15.0)
if AXES_FAILURE_LIMIT < 1 or not TICKER_LOGIN_COOLOFF_MINUTES > 0:
    raise ImproperlyConfigured(
        f"TICKER_LOGIN_FAILURE_LIMIT={AXES_FAILURE_LIMIT!r} and TICKER_LOGIN_COOLOFF_MINUTES="
        f"{TICKER_LOGIN_COOLOFF_MINUTES!r}: use a limit of 1 or more failed logins and a cool-off above 0 minutes "
        "(defaults 5 and 15)."
    )
AXES_COOLOFF_TIME = timedelta(minutes=TICKER_LOGIN_COOLOFF_MINUTES)
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "ticker/lockout.html"
# The client address is REMOTE_ADDR (ticker.security.client_address), so X-Forwarded-For, which any
# client may send, is ignored: unless TICKER_TRUSTED_PROXIES says how many proxies (nginx: 1) stand in
# front of the web processes, and then only the entry the outermost of them wrote counts. Set it only
# when the web processes cannot be reached but through those proxies.
TICKER_TRUSTED_PROXIES = env.int("TICKER_TRUSTED_PROXIES", default=0)
if TICKER_TRUSTED_PROXIES < 0:
    raise ImproperlyConfigured(
        f"TICKER_TRUSTED_PROXIES={TICKER_TRUSTED_PROXIES!r}: the number of proxies in front of the web "
        "processes, 0 (default: none) or more."
    )
AXES_CLIENT_IP_CALLABLE = "ticker.security.client_address"

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

DATABASES = {
    "default": env.db_url("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
}
# Under ASGI every request may run in a different thread: persistent
# connections would pile up one per thread, so close them after each request.
DATABASES["default"]["CONN_MAX_AGE"] = 0
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

REDIS_URL = env.str("REDIS_URL", default="redis://127.0.0.1:6379/0")
# Redis Sentinel (high availability): with both set, every Redis client asks these
# sentinels for the current primary, and REDIS_URL gives only its password and
# database. README.md, "Redis through Sentinel".
REDIS = RedisConfig.parse(
    url=REDIS_URL,
    sentinels=env.str("REDIS_SENTINELS", default=""),
    master_name=env.str("REDIS_SENTINEL_MASTER", default=""),
    sentinel_password=env.str("REDIS_SENTINEL_PASSWORD", default=""),
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
TICKER_CHANNEL_PREFIX = env.str("TICKER_CHANNEL_PREFIX", default="") or _site_namespace(DATABASES["default"])

# "redis" (default) or "memory". "memory" is only for one process holding both
# the web server and the market (the run command's fallback when no Redis can
# be had) and for tests of pure logic.
CHANNEL_LAYER_BACKEND = env.str("TICKER_CHANNEL_LAYER", default="redis")
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
else:
    raise ImproperlyConfigured(f"TICKER_CHANNEL_LAYER={CHANNEL_LAYER_BACKEND!r} is not known: use 'redis' or 'memory'.")

# The market: how often it steps, how much history it keeps.
MARKET_INTERVAL_MS = env.int("MARKET_INTERVAL_MS", default=250)
MARKET_HISTORY_STEPS = env.int("MARKET_HISTORY_STEPS", default=2400)
# Simulated seconds per real second: at 60, one real second is one trading
# minute, so a 30% annual volatility moves a $150 stock a few cents a step.
MARKET_SPEED = env.float("MARKET_SPEED", default=60.0)
# Simulated trading sessions, in simulated hours (so at MARKET_SPEED=60, open
# 6.5 real minutes, then closed 30 real seconds). docs/protocol.md, "The session".
MARKET_SESSION_OPEN_HOURS = env.float("MARKET_SESSION_OPEN_HOURS", default=6.5)
MARKET_SESSION_CLOSED_HOURS = env.float("MARKET_SESSION_CLOSED_HOURS", default=0.5)
if MARKET_SESSION_OPEN_HOURS <= 0 or MARKET_SESSION_CLOSED_HOURS < 0:
    raise ImproperlyConfigured(
        "MARKET_SESSION_OPEN_HOURS must be positive and MARKET_SESSION_CLOSED_HOURS not negative "
        f"(got {MARKET_SESSION_OPEN_HOURS!r} and {MARKET_SESSION_CLOSED_HOURS!r})."
    )
# Seconds a market's lease lasts without renewal (every step renews it): a standby takes over at most this
# long (plus one poll, a fifth of it) after the leader dies, and at once when the leader stops cleanly.
MARKET_LEASE_TTL_S = env.float("MARKET_LEASE_TTL_S", default=2.5)
if not 0.5 <= MARKET_LEASE_TTL_S <= 300:
    raise ImproperlyConfigured(
        f"MARKET_LEASE_TTL_S={MARKET_LEASE_TTL_S!r}: use 0.5 to 300 seconds (default 2.5); it must also be at least "
        "twice the market interval, since each step renews the lease."
    )
# Finished one-minute candles kept per symbol (and the candles endpoint's largest limit).
MARKET_CANDLE_MINUTES = env.int("MARKET_CANDLE_MINUTES", default=240)
# Seconds a browser waits without any frame (heartbeats included) before it
# takes a connection for dead and opens a new one; pages hand it to the
# browser (ticker.context_processors.site).
TICKER_CLIENT_SILENCE_S = env.float("TICKER_CLIENT_SILENCE_S", default=12.0)
# Seconds between the heartbeat frames every live connection gets (WebSocket
# and SSE): at least 2 s inside the browser's silence timeout, so a late
# heartbeat does not cost a reconnect.
TICKER_HEARTBEAT_S = env.float("TICKER_HEARTBEAT_S", default=5.0)
# Seconds a browser that fell back from WebSocket (to SSE, long-poll or polling)
# waits before it tries the better transports again, beside the one it has
# (static/ticker/js/chain.js); the page hands it over like the silence timeout.
TICKER_UPGRADE_PROBE_S = env.float("TICKER_UPGRADE_PROBE_S", default=30.0)
if TICKER_UPGRADE_PROBE_S <= 0:
    raise ImproperlyConfigured(f"TICKER_UPGRADE_PROBE_S={TICKER_UPGRADE_PROBE_S!r}: use a positive number of seconds.")
if not 0.1 <= TICKER_HEARTBEAT_S <= TICKER_CLIENT_SILENCE_S - 2:
    raise ImproperlyConfigured(
        f"TICKER_HEARTBEAT_S={TICKER_HEARTBEAT_S!r}: use 0.1 seconds up to 2 s less than "
        f"TICKER_CLIENT_SILENCE_S={TICKER_CLIENT_SILENCE_S!r} (browsers give up after that long without a frame)."
    )

# Client messages per WebSocket connection (a token bucket, ticker.ratelimit):
# TICKER_WS_RATE a second sustained, bursts of TICKER_WS_BURST. The dashboard
# sends a few a minute; a client over the limit gets a "rate_limited" error
# frame and close code 1008 (docs/protocol.md, "Limits and errors").
TICKER_WS_RATE = env.float("TICKER_WS_RATE", default=20.0)
TICKER_WS_BURST = env.int("TICKER_WS_BURST", default=40)
if not (TICKER_WS_RATE > 0 and TICKER_WS_BURST >= 1):
    raise ImproperlyConfigured(
        f"TICKER_WS_RATE={TICKER_WS_RATE!r} and TICKER_WS_BURST={TICKER_WS_BURST!r} would refuse every "
        "WebSocket message: set TICKER_WS_RATE above 0 and TICKER_WS_BURST to 1 or more (defaults 20 and 40)."
    )
# Client frames per WebSocket connection (issue 21): every frame counts (data, continuation, ping, pong), so a
# message cut into a million one-byte frames or a flood of pings is closed (1008) after a few milliseconds of
# work, not seconds; checked by the server adapter as each frame's header is read (ticker/server.py). At least
# the message limit: a client within it sends at least one frame per message; unset, they follow a message limit
# raised above them (the fuzz test lifts it).
TICKER_WS_FRAME_RATE = env.float("TICKER_WS_FRAME_RATE", default=max(200.0, TICKER_WS_RATE))
TICKER_WS_FRAME_BURST = env.int("TICKER_WS_FRAME_BURST", default=max(250, TICKER_WS_BURST))
if not (TICKER_WS_FRAME_RATE >= TICKER_WS_RATE and TICKER_WS_FRAME_BURST >= TICKER_WS_BURST):
    raise ImproperlyConfigured(
        f"TICKER_WS_FRAME_RATE={TICKER_WS_FRAME_RATE!r} and TICKER_WS_FRAME_BURST={TICKER_WS_FRAME_BURST!r} would "
        f"refuse clients that keep to the message limit (TICKER_WS_RATE={TICKER_WS_RATE!r}, "
        f"TICKER_WS_BURST={TICKER_WS_BURST!r}): set them at least as high (defaults 200 and 250, or those if higher)."
    )
# Seconds a connection to the web process has to send a complete request line and headers, counted from its
# opening (or, kept alive, from the end of its previous response), however slowly bytes trickle in (issue 21:
# Twisted's idle timeout restarts on every byte, so 20,000 connections sending a header line every 20 s were all
# still held after 4 minutes). ticker/server.py closes it; a WebSocket, SSE stream or long-poll whose headers are
# complete is not affected.
TICKER_HEADER_TIMEOUT_S = env.float("TICKER_HEADER_TIMEOUT_S", default=10.0)
if not TICKER_HEADER_TIMEOUT_S > 0:
    raise ImproperlyConfigured(
        f"TICKER_HEADER_TIMEOUT_S={TICKER_HEADER_TIMEOUT_S!r}: use a positive number of seconds (default 10): how "
        "long a connection may take to send its request line and headers."
    )

# permessage-deflate (RFC 7692) on WebSockets served by daphne (ticker/server.py, docs/protocol.md,
# "Compression"): on by default, answered with server_no_context_takeover so each frame is compressed once
# and shared by every client it goes to. "off" declines every client's offer. Frames under
# TICKER_WS_COMPRESS_MIN_BYTES go uncompressed: deflating a heartbeat saves a few bytes for ~20 µs of CPU.
_compression = env.str("TICKER_WS_COMPRESSION", default="on").strip().lower()
if _compression not in ("on", "off", "true", "false", "1", "0", "yes", "no"):
    raise ImproperlyConfigured(
        f"TICKER_WS_COMPRESSION={_compression!r}: use on or off (default on): permessage-deflate on WebSockets."
    )
TICKER_WS_COMPRESSION = _compression in ("on", "true", "1", "yes")
TICKER_WS_COMPRESS_MIN_BYTES = env.int("TICKER_WS_COMPRESS_MIN_BYTES", default=256)
if TICKER_WS_COMPRESS_MIN_BYTES < 0:
    raise ImproperlyConfigured(
        f"TICKER_WS_COMPRESS_MIN_BYTES={TICKER_WS_COMPRESS_MIN_BYTES!r}: use 0 or more bytes (default 256); "
        "frames smaller than this are sent uncompressed."
    )

# Who may read a web process's /metrics (ticker.health): clients from these networks, or any client sending
# "Authorization: Bearer <TICKER_METRICS_TOKEN>" (when set). Not public by default: loopback only.
TICKER_METRICS_ALLOW = env.list("TICKER_METRICS_ALLOW", default=["127.0.0.1/32", "::1/128"])
try:
    TICKER_METRICS_NETWORKS = [ipaddress.ip_network(net.strip(), strict=False) for net in TICKER_METRICS_ALLOW]
except ValueError as error:
    raise ImproperlyConfigured(
        f"TICKER_METRICS_ALLOW={','.join(TICKER_METRICS_ALLOW)!r}: {error}. "
        "List networks separated by commas, e.g. 127.0.0.1/32,::1/128,10.0.0.0/8."
    ) from None
TICKER_METRICS_TOKEN = env.str("TICKER_METRICS_TOKEN", default="")
# The market's own metrics (run_market --metrics-port): off unless a port is given.
MARKET_METRICS_PORT = env.int("MARKET_METRICS_PORT", default=0)
MARKET_METRICS_ADDRESS = env.str("MARKET_METRICS_ADDRESS", default="127.0.0.1")
# Seconds between each process's operations report to Redis (the admin's operations view); a report lives
# TICKER_OPS_TTL_S, so a process that stops reporting leaves the view within that long.
TICKER_OPS_REPORT_S = env.float("TICKER_OPS_REPORT_S", default=1.0)
TICKER_OPS_TTL_S = env.int("TICKER_OPS_TTL_S", default=5)
if not 0.1 <= TICKER_OPS_REPORT_S < TICKER_OPS_TTL_S:
    raise ImproperlyConfigured(
        f"TICKER_OPS_REPORT_S={TICKER_OPS_REPORT_S!r} must be at least 0.1 and less than "
        f"TICKER_OPS_TTL_S={TICKER_OPS_TTL_S!r} (whole seconds), or live processes would blink out of the view."
    )
# Admission control (ticker/admission.py): the most WebSocket, SSE and long-poll connections one
# web process holds open; past it a WebSocket is closed with 1013 and SSE and long-poll get 503 with
# Retry-After, so the clients already in keep their latency (issue 12). 2,500 is what one daphne
# process carried in the fan-out benchmark with two processes sharing this project's 2-core machine
# (docs/benchmarks.md: 5,000 clients over two, p99 median 83 ms, one run in nine over 100 ms); a
# process alone on a core carried 3,000 at p99 58 ms, so 2,500 keeps a margin for the heartbeats,
# snapshots and reconnects the benchmark does not have. 0 lifts the cap (the benchmarks use it).
TICKER_MAX_CONNECTIONS = env.int("TICKER_MAX_CONNECTIONS", default=2500)
if TICKER_MAX_CONNECTIONS < 0:
    raise ImproperlyConfigured(
        f"TICKER_MAX_CONNECTIONS={TICKER_MAX_CONNECTIONS!r}: use a number of connections per web process "
        "(default 2500), or 0 for no cap."
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
STATIC_ROOT = env.path("DJANGO_STATIC_ROOT", default=BASE_DIR / "staticfiles")
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
SECURE_HSTS_SECONDS = env.int("DJANGO_HSTS_SECONDS", default=0 if DEBUG else 31_536_000)
if env.bool("DJANGO_SECURE_PROXY_SSL_HEADER", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_SECURE = env.bool("DJANGO_SECURE_COOKIES", default=not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE

# "plain" (default) or "json": one JSON object per line with the process and connection ids (ticker.logs).
TICKER_LOG_FORMAT = env.str("TICKER_LOG_FORMAT", default="plain")
if TICKER_LOG_FORMAT not in ("plain", "json"):
    raise ImproperlyConfigured(f"TICKER_LOG_FORMAT={TICKER_LOG_FORMAT!r} is not known: use 'plain' or 'json'.")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "ticker.logs.ContextFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        "json": {"()": "ticker.logs.JsonLines"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": TICKER_LOG_FORMAT, "filters": ["context"]}},
    "root": {"handlers": ["console"], "level": "WARNING"},
    "loggers": {
        "ticker": {"handlers": ["console"], "level": env.str("TICKER_LOG_LEVEL", default="INFO"), "propagate": False},
    },
}
