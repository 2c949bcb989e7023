from django.apps import AppConfig


class TickerConfig(AppConfig):
    name = "ticker"
    verbose_name = "Ticker"
    default_auto_field = "django.db.models.BigAutoField"
