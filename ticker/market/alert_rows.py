"""The alert book's SQL, run every step or for every fire (ticker/market/alerts.py): plain statements, as the
ORM's compilation cost more than the statements themselves."""

from __future__ import annotations

from django.db import connection

from ticker.models import Alert

# Rows per read of new alerts. The LIMIT also keeps PostgreSQL on the primary key's index: with statistics from
# before a bulk insert (seed_alerts) it chose a sequential scan of every alert, 7-11 ms a step instead of 0.1 ms.
BATCH = 1000


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


def store_fires(alerts: list[Alert]) -> None:
    """The step's fires in one go: an ``UPDATE ... FROM (VALUES ...)`` on PostgreSQL, one executemany of an UPDATE
    by primary key on SQLite (an UPDATE per symbol cost ~0.4 ms each)."""
    if not alerts:
        return
    ops, meta = connection.ops, Alert._meta
    table = ops.quote_name(meta.db_table)
    columns = ("state", "triggered_at", "triggered_step", "triggered_price", "triggered_change_pct", "read")
    assignments = ", ".join(f"{ops.quote_name(meta.get_field(c).column)} = %s" for c in columns)
    price, pct = meta.get_field("triggered_price"), meta.get_field("triggered_change_pct")
    rows = [
        (
            Alert.State.TRIGGERED.value,
            ops.adapt_datetimefield_value(a.triggered_at),
            a.triggered_step,
            ops.adapt_decimalfield_value(a.triggered_price, price.max_digits, price.decimal_places),
            ops.adapt_decimalfield_value(a.triggered_change_pct, pct.max_digits, pct.decimal_places),
            False,
            a.pk,
        )
        for a in alerts
    ]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":  # one statement, not a round trip per fire
            names = [ops.quote_name(meta.get_field(c).column) for c in columns]
            typed = "(%s, %s::timestamptz, %s::bigint, %s::numeric, %s::numeric, %s, %s::bigint)"
            cursor.execute(
                f"UPDATE {table} AS t SET {', '.join(f'{n} = v.{n}' for n in names)} "  # noqa: S608
                f"FROM (VALUES {', '.join([typed] * len(rows))}) AS v({', '.join(names)}, id) WHERE t.id = v.id",
                [value for row in rows for value in row],
            )
        else:
            cursor.executemany(f"UPDATE {table} SET {assignments} WHERE id = %s", rows)  # noqa: S608
