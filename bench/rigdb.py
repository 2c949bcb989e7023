"""The rig's own database, from the benchmark's side: a fresh SQLite file, or a fresh database on a PostgreSQL server.

The site under test reaches it through ``DATABASE_URL`` (``url``); the benchmark itself reads the market's step
and writes what it arms through ``connect()``, plain DB-API with ``?`` placeholders on either engine, so the rig
and its armer (bench/alerts.py) do not go through Django (a process the benchmark measures should not share
the CPU with more of the load generator's work than it must). A PostgreSQL database is created when the rig opens
and dropped when it closes (``close``), also after a failed start.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit


class RigDatabaseError(RuntimeError):
    """The database server named for the rig could not be used; the message says why."""


class RigDatabase:
    """Where the rig's data lives: ``url`` for the site, ``connect()`` for the benchmark."""

    def __init__(self, directory: Path, name: str, server: str | None = None):
        """A SQLite file in ``directory``, or (``server``: ``postgres://user@host:port/``) a database named after
        ``name`` and this process on that server."""
        self.server, self.path, self.dbname = server, None, None
        if server is None:
            self.path = directory / "bench.sqlite3"
            self.url = f"sqlite:///{self.path}"
            self.vendor = "sqlite"
            return
        parts = urlsplit(server)
        if parts.scheme not in ("postgres", "postgresql"):
            raise RigDatabaseError(f"--database takes a postgres:// server URL, not one of {parts.scheme!r}")
        self.vendor = "postgresql"
        self.dbname = f"ticker_bench_{name}_{os.getpid()}"
        self.url = urlunsplit((parts.scheme, parts.netloc, f"/{self.dbname}", parts.query, ""))
        self._admin_url = urlunsplit((parts.scheme, parts.netloc, "/postgres", parts.query, ""))
        # Named in messages without its password.
        self._shown = f"{parts.hostname}:{parts.port or 5432}"
        self._admin(f'DROP DATABASE IF EXISTS "{self.dbname}"', f'CREATE DATABASE "{self.dbname}"')

    @property
    def where(self) -> str:
        return str(self.path) if self.path else f"{self.dbname} on {self._shown}"

    def _admin(self, *statements: str) -> None:
        import psycopg

        try:
            with psycopg.connect(self._admin_url, autocommit=True, connect_timeout=10) as db:
                for statement in statements:
                    db.execute(statement)
        except psycopg.Error as exc:
            raise RigDatabaseError(f"the benchmark's PostgreSQL server ({self._shown}): {exc}") from exc

    def connect(self) -> Connection:
        """A connection of the benchmark's own (autocommit; ``insert`` is one transaction)."""
        if self.vendor == "sqlite":
            return Connection(sqlite3.connect(self.path, timeout=30, isolation_level=None), "?", sqlite3.Error)
        import psycopg

        return Connection(psycopg.connect(self.url, autocommit=True), "%s", psycopg.Error)

    def close(self) -> None:
        """Drop the PostgreSQL database (the SQLite file goes with the rig's temporary directory)."""
        if self.dbname:
            self._admin(f'DROP DATABASE IF EXISTS "{self.dbname}" WITH (FORCE)')


class Connection:
    """One DB-API connection; statements are written with ``?`` and given the driver's placeholder."""

    def __init__(self, raw, mark: str, error: type[Exception]):
        self.raw, self.mark, self.Error = raw, mark, error

    def _sql(self, sql: str) -> str:
        return sql if self.mark == "?" else sql.replace("?", self.mark)

    def read(self, sql: str, params=()) -> list[tuple]:
        cursor = self.raw.cursor()
        try:
            cursor.execute(self._sql(sql), params)
            return cursor.fetchall()
        finally:
            cursor.close()

    def insert(self, table: str, columns: tuple[str, ...], rows: list[tuple]) -> None:
        """``rows`` in one transaction: one COPY on PostgreSQL (an INSERT a row cost ~0.05 ms each, 100 ms for
        2,000, on the machine the benchmark measures), one executemany on SQLite."""
        names = ", ".join(columns)
        cursor = self.raw.cursor()
        try:
            cursor.execute("BEGIN")
            if self.mark == "?":
                marks = ", ".join("?" * len(columns))
                cursor.executemany(f"INSERT INTO {table} ({names}) VALUES ({marks})", rows)  # noqa: S608
            else:
                with cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
            cursor.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(Exception):
                cursor.execute("ROLLBACK")
            raise
        finally:
            cursor.close()

    def close(self) -> None:
        self.raw.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
