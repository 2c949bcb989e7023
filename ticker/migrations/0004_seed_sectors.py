"""Give the 30 seeded names their real sectors (GICS); stocks an operator added keep theirs."""

from django.db import migrations

SECTORS = {
    "AAPL": "Information Technology",
    "MSFT": "Information Technology",
    "GOOGL": "Communication Services",
    "AMZN": "Consumer Discretionary",
    "NVDA": "Information Technology",
    "META": "Communication Services",
    "TSLA": "Consumer Discretionary",
    "BRK.B": "Financials",
    "JPM": "Financials",
    "V": "Financials",
    "JNJ": "Health Care",
    "WMT": "Consumer Staples",
    "PG": "Consumer Staples",
    "XOM": "Energy",
    "MA": "Financials",
    "UNH": "Health Care",
    "HD": "Consumer Discretionary",
    "KO": "Consumer Staples",
    "PEP": "Consumer Staples",
    "DIS": "Communication Services",
    "NFLX": "Communication Services",
    "INTC": "Information Technology",
    "AMD": "Information Technology",
    "CSCO": "Information Technology",
    "ORCL": "Information Technology",
    "CRM": "Information Technology",
    "ADBE": "Information Technology",
    "NKE": "Consumer Discretionary",
    "BA": "Industrials",
    "IBM": "Information Technology",
}


def give_sectors(apps, schema_editor):
    Stock = apps.get_model("ticker", "Stock")
    for symbol, sector in SECTORS.items():
        Stock.objects.filter(symbol=symbol, sector="").update(sector=sector)


class Migration(migrations.Migration):
    dependencies = [("ticker", "0003_market_figures")]

    operations = [migrations.RunPython(give_sectors, migrations.RunPython.noop)]
