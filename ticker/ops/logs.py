"""Log records with the process and the connection they come from; JSON lines with TICKER_LOG_FORMAT=json.

Every record gets ``process_id`` (host:pid) and ``conn`` (the id of the connection whose task logged it, "-"
outside one). A connection's task sets its id once (``connection_started``); a contextvar carries it into
everything that task logs, so one connection's life can be followed across log lines (``grep '"conn": "w-1a2b'``).
"""

from __future__ import annotations

import contextvars
import itertools
import json
import logging
import os
import socket
import threading
import time

PROCESS_ID = f"{socket.gethostname()}:{os.getpid()}"
_conn: contextvars.ContextVar[str] = contextvars.ContextVar("ticker_conn", default="-")
_ids = itertools.count(1)


def connection_started(transport: str) -> str:
    """Called at the start of a connection's own task: a new id for it ("ws-<pid>-<n>", "sse-...", "lp-...")."""
    conn = f"{transport}-{os.getpid()}-{next(_ids)}"
    _conn.set(conn)
    return conn


def current_connection() -> str:
    return _conn.get()


class ContextFilter(logging.Filter):
    """Adds ``process_id`` and ``conn`` to every record (a filter on the handlers, so any logger's records)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.process_id = PROCESS_ID
        record.conn = _conn.get()
        return True


# What a LogRecord holds of its own; anything else passed in ``extra`` goes into the JSON line as it is.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime", "process_id", "conn"}


class JsonLines(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, process_id, conn, extras, and exc if any."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process_id": getattr(record, "process_id", PROCESS_ID),
            "conn": getattr(record, "conn", "-"),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


# Expected refusals and outage warnings come in floods (every client refused at once, a warning per retry while
# Redis is away): issue 20 found an overload flooding the log. Within this window each kind is logged once; the
# next one after it says how many were left out.
REPEAT_WINDOW_S = 30.0
# Audit lines are never held back, however many: who was locked out, from where (django-axes), and Django's
# security warnings (a forged Host, a CSRF failure) each matter on their own.
NEVER_HELD_BACK = ("axes", "django.security")
_MOST_KINDS = 1000  # a bound on what the filter remembers, whatever the messages


class RepeatFilter(logging.Filter):
    """Warnings and expected refusals once per kind per ``window_s``, the next one carrying the count left out.

    A kind is a logger, level and message template (``"Bad Request: %s"`` for every 400, whatever the path) and
    status. Django logs a 503 at ERROR; the site answers 503 only on purpose (``server_full``, ``address_full``,
    ``unavailable``, with Retry-After), so those become WARNINGs. Access lines (INFO) of 4xx and 503 answers are
    held back the same way. Records with a traceback, other 5xx answers, CRITICAL records and the audit loggers
    (``NEVER_HELD_BACK``) are never held back: each may be a different fault. Other INFO and DEBUG pass untouched.
    """

    def __init__(self, window_s: float = REPEAT_WINDOW_S, clock=time.monotonic):
        super().__init__()
        self.window_s, self.clock = window_s, clock
        self._kinds: dict[tuple, list] = {}  # kind -> [when it was last let through, how many held back since]
        self._lock = threading.Lock()  # handlers on several threads (Django's sync views) share this filter

    def filter(self, record: logging.LogRecord) -> bool:
        status = getattr(record, "status_code", None)
        if record.name == "django.request" and status == 503:
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        if record.name.startswith(NEVER_HELD_BACK):
            return True
        if record.name == "ticker.access":
            # An access line is INFO, but a flood of refusals is a flood of them: 4xx and 503 answers are held
            # back like the warnings Django logs for the same requests, by status.
            status = getattr(record, "status", None)
            if not (isinstance(status, int) and (400 <= status < 500 or status == 503)):
                return True
        elif record.levelno < logging.WARNING or record.levelno >= logging.CRITICAL or record.exc_info:
            return True
        if record.name == "django.request" and status is not None and status >= 500 and status != 503:
            return True
        kind = (record.name, record.levelno, str(record.msg), status)
        now = self.clock()
        with self._lock:
            seen = self._kinds.get(kind)
            if seen is not None and now - seen[0] < self.window_s:
                seen[1] += 1
                return False
            held = seen[1] if seen is not None else 0
            if len(self._kinds) >= _MOST_KINDS:
                self._kinds = {k: v for k, v in self._kinds.items() if now - v[0] < self.window_s}
                if len(self._kinds) >= _MOST_KINDS:  # that many kinds within one window: start again
                    self._kinds.clear()
            self._kinds[kind] = [now, 0]
        if held:
            record.repeats = held
            record.msg = f"{record.msg} [{held} more like this in the last {self.window_s:g} s]"
        return True


# Paths a person reading the log does not need a line for while they answer normally: static files (a page load
# is a dozen of them, and a 304 each time after) and the health checks a balancer or Prometheus asks every few
# seconds (issue 20). Their lines go to DEBUG; an error answer still goes to INFO.
QUIET_PATHS = ("/static/", "/healthz", "/readyz", "/metrics", "/favicon.ico")
access_log = logging.getLogger("ticker.access")


def access_action(protocol: str, action: str, details: dict) -> None:
    """The web server's access log as log records (``ticker.access``), so they have the process id, honour
    TICKER_LOG_LEVEL and come out as JSON lines with TICKER_LOG_FORMAT=json.

    Called by daphne for each finished HTTP request and each WebSocket step (ticker/edge/server.py hands it over). A
    WebSocket's own lines come from the consumer (opened, closed with its code), so daphne's go to DEBUG.
    """
    client = details.get("client") or "-"
    path = details.get("path", "")
    if protocol == "http" and action == "complete":
        status = details.get("status")
        quiet = status is not None and status < 400 and path.startswith(QUIET_PATHS)
        access_log.log(
            logging.DEBUG if quiet else logging.INFO,
            '%s "%s %s" %s %s',
            client,
            details.get("method", "-"),
            path,
            status,
            details.get("size", "-"),
            extra={"client": client, "status": status},
        )
    elif protocol == "websocket":
        access_log.debug("%s websocket %s %s", client, action, path, extra={"client": client})
