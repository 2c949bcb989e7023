"""The alert book's SQL, run every step or for every fire (ticker/market/alerts.py): plain statements, as the
ORM's compilation cost more than the statements themselves."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from django.db import connection

from ticker.models import Alert

# Rows per read of new alerts. The LIMIT also keeps PostgreSQL on the primary key's index: with statistics from
# before a bulk insert (seed_alerts) it chose a sequential scan of every alert, 7-11 ms a step instead of 0.1 ms.
BATCH = 1000
# Alerts per UPDATE of fires (SQLite's oldest limit on parameters is 999: three an alert, six more).
CHUNK = 300
# Ids per read by id (the same limit), and the fields the book reads of an alert.
IDS_CHUNK = 900
BOOK_FIELDS = ("id", "stock__symbol", "condition", "value", "state", "disabled")


def array_literal(values) -> str:
    """A PostgreSQL array literal of numbers (or NULL), passed as text and cast: psycopg's array adapter took
    50 ms a step at 5,000 rows (the market's stock UPDATE), ~2 us an element (the fires')."""
    return "{" + ",".join("NULL" if v is None else str(v) for v in values) + "}"


def armed_ids() -> set[int]:
    """Every armed, enabled alert's id: what the book should hold (``AlertBook.reconcile``)."""
    rows = Alert.objects.filter(state=Alert.State.ARMED, disabled=False).values_list("id", flat=True)
    return set(rows.iterator(chunk_size=10_000))


def by_ids(ids: list[int]) -> list[tuple]:
    """The book's fields of these alerts (those that still exist)."""
    found: list[tuple] = []
    for start in range(0, len(ids), IDS_CHUNK):
        found += Alert.objects.filter(id__in=ids[start : start + IDS_CHUNK]).values_list(*BOOK_FIELDS)
    return found


def after(watermark: int) -> list[tuple]:
    """The book's fields of the alerts above ``watermark``, in id order: a plain query, as it runs every step
    (the ORM's compilation was most of its ~0.8 ms). The value comes as the driver reads it (the book wants a
    float)."""
    ops = connection.ops
    alert, stock = (
        ops.quote_name(Alert._meta.db_table),
        ops.quote_name(Alert._meta.get_field("stock").related_model._meta.db_table),
    )
    sql = (
        f"SELECT a.id, s.symbol, a.condition, a.value, a.state, a.disabled FROM {alert} AS a "  # noqa: S608
        f"JOIN {stock} AS s ON s.id = a.stock_id WHERE a.id > %s ORDER BY a.id LIMIT {BATCH}"
    )
    rows: list[tuple] = []
    prepare = connection.vendor == "postgresql"  # the same text every step: prepared once (``_preparing``)
    with _preparing() if prepare else connection.cursor() as cursor:
        while True:
            cursor.execute(sql, [rows[-1][0] if rows else watermark], **({"prepare": True} if prepare else {}))
            batch = cursor.fetchall()
            rows += batch
            if len(batch) < BATCH:
                return rows


def fire(chosen: list[tuple[int, Decimal, Decimal]], *, step: int, at: datetime) -> list[tuple]:
    """Mark triggered the alerts of ``chosen`` (id, price, change %) that still qualify: armed, enabled and armed
    at an earlier step, checked by the UPDATE itself (on PostgreSQL under the row lock it takes, so a re-arm,
    delete or disable committed meanwhile is seen). Return the fired rows as
    ``(id, user_id, condition, value, note, created_at)``, by id, ``created_at`` as text in UTC.

    One ``UPDATE ... RETURNING`` replaced the ORM's ``select_for_update`` then an UPDATE: a round trip and a model
    instance per fire less (fire 13.9 -> 5.1 ms a step, docs/benchmarks.md). On PostgreSQL the candidates go as
    three arrays (``unnest``) through psycopg's own cursor, which binds on the server (Django's cursor sends
    literals: 3.4 -> 1.6 ms for 34 fires, measured side by side), prepared (``_preparing``): its text is the same
    every step. On SQLite, a
    ``VALUES`` list per 300, named in a ``WITH`` (SQLite names no columns of a subquery in ``FROM``)."""
    if not chosen:
        return []
    ops, meta = connection.ops, Alert._meta
    table = ops.quote_name(meta.db_table)
    column = {name: ops.quote_name(meta.get_field(name).column) for name in _FIRE_COLUMNS}
    price, pct = meta.get_field("triggered_price"), meta.get_field("triggered_change_pct")
    created = column["created_at"]  # as text in UTC (``alert_json._iso``): PostgreSQL's loader took ~4 us a row
    if connection.vendor == "postgresql":
        created = f"({created} AT TIME ZONE 'UTC')::text"
    update = (
        f"UPDATE {table} SET {column['state']} = %s, {column['triggered_at']} = %s, "
        f"{column['triggered_step']} = %s, {column['triggered_price']} = v.price, "
        f"{column['triggered_change_pct']} = v.pct, {column['read']} = %s FROM {{source}} "
        f"WHERE {table}.id = v.id AND {column['state']} = %s AND NOT {column['disabled']} "
        f"AND {column['armed_step']} < %s RETURNING {table}.id, {column['user']}, {column['condition']}, "
        f"{column['value']}, {column['note']}, {created}"
    )
    triggered, armed, stamp = Alert.State.TRIGGERED.value, Alert.State.ARMED.value, ops.adapt_datetimefield_value(at)
    if connection.vendor == "postgresql":
        source = "unnest(%s::text::bigint[], %s::text::numeric[], %s::text::numeric[]) AS v(id, price, pct)"
        ids, prices, pcts = (array_literal(part) for part in zip(*chosen, strict=True))
        with _preparing() as cursor:
            params = [triggered, stamp, step, False, ids, prices, pcts, armed, step]
            cursor.execute(update.format(source=source), params, prepare=True)
            return sorted(cursor.fetchall())
    fired: list[tuple] = []
    with connection.cursor() as cursor:
        for start in range(0, len(chosen), CHUNK):
            part = chosen[start : start + CHUNK]
            values = [
                value
                for pk, p, c in part
                for value in (
                    pk,
                    ops.adapt_decimalfield_value(p, price.max_digits, price.decimal_places),
                    ops.adapt_decimalfield_value(c, pct.max_digits, pct.decimal_places),
                )
            ]
            rows = ", ".join(["(%s, %s, %s)"] * len(part))
            cursor.execute(
                f"WITH v(id, price, pct) AS (VALUES {rows}) {update.format(source='v')}",
                [*values, triggered, stamp, step, False, armed, step],
            )
            fired += cursor.fetchall()
    fired.sort()
    return fired


def _preparing():
    """psycopg's own cursor on Django's connection (PostgreSQL): it binds on the server, and a statement executed
    with ``prepare=True`` is prepared on the connection, planned once and reused while the connection lives (the
    market keeps its connection open: ticker/market/dbthread.py). Django turns psycopg's automatic preparation
    off (``prepare_threshold = None``, which also refuses ``prepare=True``); set past any count, it prepares only
    the statements that ask."""
    import psycopg  # PostgreSQL only

    connection.ensure_connection()
    raw = connection.connection
    if raw.prepare_threshold is None:
        raw.prepare_threshold = 2**31 - 1
    # Not raw.cursor(): Django sets the connection's cursor_factory to its client-side cursor (literals in the text).
    return psycopg.Cursor(raw)


_FIRE_COLUMNS = (
    "state", "triggered_at", "triggered_step", "triggered_price", "triggered_change_pct", "read", "disabled",
    "armed_step", "user", "condition", "value", "note", "created_at",
)  # fmt: skip
