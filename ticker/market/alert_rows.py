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
    with connection.cursor() as cursor:
        while True:
            cursor.execute(sql, [rows[-1][0] if rows else watermark])
            batch = cursor.fetchall()
            rows += batch
            if len(batch) < BATCH:
                return rows


def fire(chosen: list[tuple[int, Decimal, Decimal]], *, step: int, at: datetime) -> list[tuple]:
    """Mark triggered the alerts of ``chosen`` (id, price, change %) that still qualify, in one statement per
    chunk: armed, enabled and armed at an earlier step, checked by the UPDATE itself (on PostgreSQL under the row
    lock it takes, so a re-arm, delete or disable committed meanwhile is seen). Return the fired rows as
    ``(id, user_id, condition, value, note, created_at, price, change_pct)``, by id.

    One ``UPDATE ... FROM (VALUES ...) RETURNING`` replaced the ORM's ``select_for_update`` then an UPDATE: a
    round trip and a model instance per fire less (issue 23: fire 3.1 ms of the 6.8 ms median on PostgreSQL)."""
    if not chosen:
        return []
    ops, meta = connection.ops, Alert._meta
    table = ops.quote_name(meta.db_table)
    column = {name: ops.quote_name(meta.get_field(name).column) for name in _FIRE_COLUMNS}
    price, pct = meta.get_field("triggered_price"), meta.get_field("triggered_change_pct")
    postgres = connection.vendor == "postgresql"
    row_sql = "(%s::bigint, %s::numeric, %s::numeric)" if postgres else "(%s, %s, %s)"
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
            cursor.execute(
                f"WITH v(id, price, pct) AS (VALUES {', '.join([row_sql] * len(part))}) "  # noqa: S608
                f"UPDATE {table} SET {column['state']} = %s, {column['triggered_at']} = %s, "
                f"{column['triggered_step']} = %s, {column['triggered_price']} = v.price, "
                f"{column['triggered_change_pct']} = v.pct, {column['read']} = %s "
                f"FROM v WHERE {table}.id = v.id AND {column['state']} = %s AND NOT {column['disabled']} "
                f"AND {column['armed_step']} < %s "
                f"RETURNING {table}.id, {column['user']}, {column['condition']}, {column['value']}, "
                f"{column['note']}, {column['created_at']}",
                [
                    *values,
                    Alert.State.TRIGGERED.value,
                    ops.adapt_datetimefield_value(at),
                    step,
                    False,
                    Alert.State.ARMED.value,
                    step,
                ],
            )
            fired += cursor.fetchall()
    fired.sort()
    return fired


_FIRE_COLUMNS = (
    "state", "triggered_at", "triggered_step", "triggered_price", "triggered_change_pct", "read", "disabled",
    "armed_step", "user", "condition", "value", "note", "created_at",
)  # fmt: skip
