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
