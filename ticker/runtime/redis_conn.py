"""The one Redis the site uses: a single server (``REDIS_URL``) or a primary found through Redis Sentinel.

Everything that talks to Redis gets its address from here: the channel layer
(``channel_layer_host``, read by config/settings.py), the run command's check
(ticker/runtime/launcher.py) and any other code that needs a client (``redis_client``).

With Sentinel (``REDIS_SENTINELS`` and ``REDIS_SENTINEL_MASTER`` set) no client
holds the primary's address: redis-py's ``SentinelConnectionPool`` asks the
sentinels for the current primary every time it opens a connection
(``SentinelManagedConnection.connect``, redis-py 8.1.0), and closes its idle
connections when the answer changes. A primary that dies breaks the
connections in use; the next command opens a new one, to the replica that
Sentinel promoted. channels_redis 4.3.0 builds exactly that pool from a host
entry with ``sentinels`` and ``master_name`` (``channels_redis.utils.create_pool``),
so no private attribute is touched.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlparse

from django.core.exceptions import ImproperlyConfigured

DEFAULT_SENTINEL_PORT = 26379
# With Sentinel the point is to survive a primary's death, also one whose host vanishes without
# closing its connections: no connect may hang longer than this. Connections to the sentinels,
# which answer at once, also read with this short timeout; the primary's with READ_TIMEOUT_S below.
CONNECT_TIMEOUT_S = 2.0
SENTINEL_READ_TIMEOUT_S = 2.0
# channels_redis 4.3.0 receives with a blocking pop of 5 s (``RedisChannelLayer.brpop_timeout``; a test checks
# the installed version's value), and redis-py 8.1.0's default read timeout is 5 s too: a quiet channel (the
# market stopped) then looked like a broken connection every 5 s, and each "recovery" reloaded the database and
# told every client the feed was live (issue 20). Every connection to the primary reads with this timeout
# instead: above the blocking pop, so only a Redis that does not answer at all times out; low enough that a
# hung primary (Sentinel, docs/reliability.md) is still left within 10 s.
CHANNEL_LAYER_BRPOP_TIMEOUT_S = 5
READ_TIMEOUT_S = CHANNEL_LAYER_BRPOP_TIMEOUT_S + 2.0


@dataclass(frozen=True)
class RedisConfig:
    """Where the site's Redis is. ``sentinels`` empty: the one server at ``url``."""

    url: str
    sentinels: tuple[tuple[str, int], ...] = ()
    master_name: str = ""
    sentinel_password: str = ""

    @classmethod
    def parse(cls, *, url: str, sentinels: str = "", master_name: str = "", sentinel_password: str = "") -> RedisConfig:
        """The settings' values checked; a malformed one raises ImproperlyConfigured naming it and the fix."""
        parsed = urlparse(url)
        if parsed.scheme not in ("redis", "rediss", "unix"):
            raise ImproperlyConfigured(
                f"REDIS_URL={_safe(url)!r} is not a Redis URL: use redis://[:PASSWORD@]HOST:PORT/DB "
                "(rediss:// for TLS, unix:///PATH for a socket)."
            )
        if not sentinels.strip():
            if master_name:
                raise ImproperlyConfigured(
                    f"REDIS_SENTINEL_MASTER={master_name!r} is set but REDIS_SENTINELS is not: list the sentinels "
                    "as REDIS_SENTINELS=HOST:PORT,HOST:PORT, or unset REDIS_SENTINEL_MASTER to use REDIS_URL alone."
                )
            return cls(url=url)
        if not master_name:
            raise ImproperlyConfigured(
                "REDIS_SENTINELS is set but REDIS_SENTINEL_MASTER is not: set it to the master name the sentinels "
                "monitor (the NAME of 'sentinel monitor NAME HOST PORT QUORUM' in sentinel.conf)."
            )
        if parsed.scheme == "unix":
            raise ImproperlyConfigured(
                "REDIS_URL is a unix:// socket, but with REDIS_SENTINELS the sentinels give the primary's TCP "
                "address: use redis://[:PASSWORD@]HOST/DB (only its password and database are used)."
            )
        config = cls(
            url=url,
            sentinels=tuple(_sentinel_address(entry) for entry in sentinels.split(",") if entry.strip()),
            master_name=master_name,
            sentinel_password=sentinel_password,
        )
        config._master_kwargs()  # a bad database number fails here, at start-up
        return config

    @property
    def uses_sentinel(self) -> bool:
        return bool(self.sentinels)

    def describe(self) -> str:
        """For logs and the console, without passwords."""
        if not self.uses_sentinel:
            return _safe(self.url)
        listed = ",".join(f"{host}:{port}" for host, port in self.sentinels)
        return f"master {self.master_name!r} through Sentinel at {listed}"

    def channel_layer_host(self) -> str | dict:
        """One entry of channels_redis's ``hosts``: the URL, or a Sentinel entry (channels_redis.utils.create_pool)."""
        if not self.uses_sentinel:
            # channels_redis passes every key but "address" to redis-py's ConnectionPool.from_url.
            return {"address": self.url, **self._timeouts()}
        return {
            "sentinels": list(self.sentinels),
            "master_name": self.master_name,
            "sentinel_kwargs": self._sentinel_kwargs(),
            **self._master_kwargs(),
        }

    def _master_kwargs(self) -> dict:
        """Password, user, database and TLS of the primary, from REDIS_URL (its host and port are not used)."""
        parsed = urlparse(self.url)
        kwargs: dict = self._timeouts()
        path = parsed.path.lstrip("/")
        if path:
            if not path.isdigit():
                raise ImproperlyConfigured(f"REDIS_URL={_safe(self.url)!r}: the database must be a number, e.g. /0.")
            kwargs["db"] = int(path)
        if parsed.username:
            kwargs["username"] = unquote(parsed.username)
        if parsed.password:
            kwargs["password"] = unquote(parsed.password)
        if parsed.scheme == "rediss":
            kwargs["ssl"] = True
        return kwargs

    @staticmethod
    def _timeouts() -> dict:
        """Every connection to the primary: connects fail fast, reads outlast the channel layer's blocking pop."""
        return {"socket_connect_timeout": CONNECT_TIMEOUT_S, "socket_timeout": READ_TIMEOUT_S}

    def _sentinel_kwargs(self) -> dict:
        kwargs: dict = {"socket_connect_timeout": CONNECT_TIMEOUT_S, "socket_timeout": SENTINEL_READ_TIMEOUT_S}
        if self.sentinel_password:
            kwargs["password"] = self.sentinel_password
        return kwargs

    def client(self, **options):
        """A synchronous redis-py client for this Redis; ``options`` go to every connection to the primary."""
        import redis
        from redis.sentinel import Sentinel

        if not self.uses_sentinel:
            return redis.Redis.from_url(self.url, **{**self._timeouts(), **options})
        sentinel = Sentinel(list(self.sentinels), sentinel_kwargs=self._sentinel_kwargs())
        return sentinel.master_for(self.master_name, **{**self._master_kwargs(), **options})

    def async_client(self, **options):
        """A ``redis.asyncio`` client for this Redis, for use on one event loop (close it with ``aclose()``)."""
        from redis import asyncio as aioredis

        if not self.uses_sentinel:
            return aioredis.Redis.from_url(self.url, **{**self._timeouts(), **options})
        sentinel = aioredis.Sentinel(list(self.sentinels), sentinel_kwargs=self._sentinel_kwargs())
        return sentinel.master_for(self.master_name, **{**self._master_kwargs(), **options})


def from_env(env: Mapping[str, str], *, default_url: str) -> RedisConfig:
    """The configuration the site's processes would read from ``env`` (the run command checks it first)."""
    return RedisConfig.parse(
        url=env.get("REDIS_URL") or default_url,
        sentinels=env.get("REDIS_SENTINELS", ""),
        master_name=env.get("REDIS_SENTINEL_MASTER", ""),
        sentinel_password=env.get("REDIS_SENTINEL_PASSWORD", ""),
    )


def async_redis_client(**options):
    """A ``redis.asyncio`` client for the site's Redis (settings.REDIS), Sentinel-aware; one per event loop."""
    from django.conf import settings

    return settings.REDIS.async_client(**options)


def _sentinel_address(entry: str) -> tuple[str, int]:
    text = entry.strip()
    host, colon, port = text.rpartition(":")
    if not colon:
        host, port = text, str(DEFAULT_SENTINEL_PORT)
    host = host.strip("[]")  # [::1]:26379
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ImproperlyConfigured(
            f"REDIS_SENTINELS entry {text[:80]!r} is not HOST:PORT: list the sentinels as "
            "REDIS_SENTINELS=10.0.0.1:26379,10.0.0.2:26379 (the port defaults to 26379)."
        )
    return host, int(port)


def _safe(url: str) -> str:
    parsed = urlparse(url)
    return url.replace(f":{parsed.password}@", ":***@") if parsed.password else url
