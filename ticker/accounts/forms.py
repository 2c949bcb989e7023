"""The sign-up form: Django's UserCreationForm, with the taken-username message saying case does not matter."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.forms import UserCreationForm
from django.core.exceptions import ValidationError


def taken(username: str) -> ValidationError:
    return ValidationError(
        "The username “%(username)s” is taken: usernames are the same whatever their case "
        "(“Alice” and “alice” are one name). Choose another.",
        code="unique",
        params={"username": username},
    )


class SignUpForm(UserCreationForm):
    """Username and password twice; the password checked by AUTH_PASSWORD_VALIDATORS.

    Usernames are unique whatever their case: checked here for the message, and by the database's
    case-insensitive index (migration 0007) for two sign-ups racing with one name (ticker.accounts.views).
    """

    class Meta(UserCreationForm.Meta):
        model = get_user_model()
        fields = ("username",)

    def clean_username(self):
        username = self.cleaned_data.get("username")
        if username and self._meta.model.objects.filter(username__iexact=username).exists():
            raise taken(username)
        return username
