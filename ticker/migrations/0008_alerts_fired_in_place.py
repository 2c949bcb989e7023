"""Alerts fired in place: no index on ``state``, and free space on each page of the alerts table (PostgreSQL), so
a fire or a re-arm is a HOT update (ticker/models.py, ``Alert.Meta``). The fill factor shapes pages written from
now on; an existing table's full pages get their room as they are rewritten (``VACUUM FULL ticker_alert``)."""

from django.db import migrations

FILL_FACTOR = 80


def leave_room(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        table = schema_editor.quote_name(apps.get_model("ticker", "Alert")._meta.db_table)
        schema_editor.execute(f"ALTER TABLE {table} SET (fillfactor = {FILL_FACTOR})")


def fill_up(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        table = schema_editor.quote_name(apps.get_model("ticker", "Alert")._meta.db_table)
        schema_editor.execute(f"ALTER TABLE {table} RESET (fillfactor)")


class Migration(migrations.Migration):
    dependencies = [("ticker", "0007_accounts_watchlists_alerts")]

    operations = [
        migrations.RemoveIndex(model_name="alert", name="alert_armed_by_stock"),
        migrations.RunPython(leave_room, fill_up),
    ]
