from django.apps import AppConfig


class TickerConfig(AppConfig):
    name = "ticker"
    verbose_name = "Ticker"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_logged_out

        from ticker.edge.signout import publish_signed_out

        # Sign-out ends the user's personal frames on every web process (issue 23, ticker/edge/signout.py).
        user_logged_out.connect(publish_signed_out, dispatch_uid="ticker.signed_out")
