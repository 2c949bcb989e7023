"""Seed the simulated market: 30 well-known tickers with made-up prices.

The prices are simulated and are NOT market data; the dashboard and the
API say so. Running `migrate` alone gives a working market.
"""

from decimal import Decimal

from django.db import migrations

# symbol, name, starting price, annual volatility, annual drift
SEED = [
    ("AAPL", "Apple Inc.", "189.50", 0.25, 0.08),
    ("MSFT", "Microsoft Corp.", "415.20", 0.24, 0.09),
    ("GOOGL", "Alphabet Inc. Class A", "172.30", 0.28, 0.07),
    ("AMZN", "Amazon.com Inc.", "185.60", 0.32, 0.08),
    ("NVDA", "NVIDIA Corp.", "121.40", 0.50, 0.12),
    ("META", "Meta Platforms Inc.", "505.10", 0.38, 0.08),
    ("TSLA", "Tesla Inc.", "248.90", 0.60, 0.05),
    ("BRK.B", "Berkshire Hathaway Inc. Class B", "412.70", 0.16, 0.06),
    ("JPM", "JPMorgan Chase & Co.", "198.30", 0.22, 0.06),
    ("V", "Visa Inc.", "276.80", 0.20, 0.07),
    ("JNJ", "Johnson & Johnson", "152.40", 0.15, 0.04),
    ("WMT", "Walmart Inc.", "68.20", 0.18, 0.05),
    ("PG", "Procter & Gamble Co.", "166.10", 0.15, 0.04),
    ("XOM", "Exxon Mobil Corp.", "114.90", 0.27, 0.04),
    ("MA", "Mastercard Inc.", "458.30", 0.21, 0.07),
    ("UNH", "UnitedHealth Group Inc.", "512.60", 0.24, 0.06),
    ("HD", "Home Depot Inc.", "345.70", 0.22, 0.05),
    ("KO", "Coca-Cola Co.", "62.80", 0.14, 0.03),
    ("PEP", "PepsiCo Inc.", "171.20", 0.15, 0.03),
    ("DIS", "Walt Disney Co.", "101.50", 0.30, 0.04),
    ("NFLX", "Netflix Inc.", "640.90", 0.42, 0.09),
    ("INTC", "Intel Corp.", "31.70", 0.40, 0.01),
    ("AMD", "Advanced Micro Devices Inc.", "158.20", 0.52, 0.10),
    ("CSCO", "Cisco Systems Inc.", "47.60", 0.22, 0.04),
    ("ORCL", "Oracle Corp.", "139.80", 0.30, 0.07),
    ("CRM", "Salesforce Inc.", "273.40", 0.35, 0.07),
    ("ADBE", "Adobe Inc.", "489.10", 0.34, 0.06),
    ("NKE", "Nike Inc.", "93.70", 0.29, 0.03),
    ("BA", "Boeing Co.", "179.30", 0.40, 0.02),
    ("IBM", "International Business Machines Corp.", "183.20", 0.21, 0.04),
]


def seed(apps, schema_editor):
    Stock = apps.get_model("ticker", "Stock")
    for symbol, name, price, volatility, drift in SEED:
        Stock.objects.update_or_create(
            symbol=symbol,
            defaults={
                "name": name,
                "price": Decimal(price),
                "reference_price": Decimal(price),
                "volatility": volatility,
                "drift": drift,
            },
        )


def unseed(apps, schema_editor):
    apps.get_model("ticker", "Stock").objects.filter(symbol__in=[row[0] for row in SEED]).delete()


class Migration(migrations.Migration):
    dependencies = [("ticker", "0001_initial")]
    operations = [migrations.RunPython(seed, unseed)]
