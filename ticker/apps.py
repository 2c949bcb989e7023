from django.apps import AppConfig


class TickerConfig(AppConfig):
    name = "ticker"
    verbose_name = "Ticker"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.contrib.auth import get_user_model
        from django.contrib.auth.signals import user_logged_out
        from django.db.models.signals import pre_save

        from ticker.edge.signout import publish_password_changed, publish_signed_out

        # Sign-out ends the user's personal frames on every web process (issue 23, ticker/edge/signout.py), and
        # so does a password change for the user's other sessions.
        user_logged_out.connect(publish_signed_out, dispatch_uid="ticker.signed_out")
        pre_save.connect(publish_password_changed, sender=get_user_model(), dispatch_uid="ticker.password_changed")
