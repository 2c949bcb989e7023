"""The one reader of the environment for config/settings.py: every variable parsed, checked and refused by name.

Issue 20 found settings that failed late or silently: ``MARKET_SPEED=0`` passed start-up and raised in every
listing, ``DJANGO_SECURE_COOKIES=ture`` was silently false, ``"a.com, b.com"`` broke ``b.com``, an ``int``
error did not name its variable. Here every value is read once, at start-up, by one of a few typed readers,
and a bad one raises ``SettingError`` (an ``ImproperlyConfigured``) whose one-line message names the variable,
quotes the value and says what is allowed. manage.py and config/asgi.py print that line and exit non-zero
instead of a traceback.

Rules for every variable: surrounding spaces are ignored; an empty value counts as unset (compose's
``VAR=`` and ``${VAR:-}`` mean "the default"); a value that is plainly a placeholder (``<...>``,
``changeme``, ``replace-me``, ``TODO``, ``xxx``) is refused rather than taken for a real one.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Mapping

from django.core.exceptions import ImproperlyConfigured

TRUE = ("1", "true", "yes", "on")
FALSE = ("0", "false", "no", "off")
PLACEHOLDER = re.compile(r"<[^>]*>|(?i:change[-_ ]?me|replace[-_ ]?me|todo|tbd|x{3,}|\.\.\.)")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class SettingError(ImproperlyConfigured):
    """One environment variable's value cannot be used; the message names it and says what to set."""


class Environment:
    """Typed readers over a mapping of variables (``os.environ`` by default)."""

    def __init__(self, variables: Mapping[str, str] | None = None):
        self.variables = os.environ if variables is None else variables

    def raw(self, name: str) -> str | None:
        """The variable's stripped value; None when unset or empty. A placeholder is refused."""
        value = self.variables.get(name)
        if value is None or not value.strip():
            return None
        value = value.strip()
        if PLACEHOLDER.fullmatch(value):
            raise SettingError(f"{name}={value!r} looks like a placeholder: set a real value, or unset it.")
        return value

    def fail(self, name: str, value: str, allowed: str, default: object = None) -> SettingError:
        told = f" (default {default})" if default is not None else ""
        return SettingError(f"{name}={value!r}: {allowed}{told}.")

    def flag(self, name: str, default: bool) -> bool:
        """A strict boolean: 1/0, true/false, yes/no, on/off (any case); anything else is an error."""
        value = self.raw(name)
        if value is None:
            return default
        if value.lower() in TRUE:
            return True
        if value.lower() in FALSE:
            return False
        raise self.fail(name, value, "use 1/0, true/false, yes/no or on/off", "on" if default else "off")

    def whole(self, name: str, default: int, *, least: int | None = None, most: int | None = None) -> int:
        """A whole number, from ``least`` to ``most`` when given."""
        value = self.raw(name)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            number = None
        if number is None or (least is not None and number < least) or (most is not None and number > most):
            raise self.fail(name, value, f"use a whole number {_range(least, most)}", default)
        return number

    def number(
        self,
        name: str,
        default: float,
        *,
        least: float | None = None,
        most: float | None = None,
        above: float | None = None,
    ) -> float:
        """A finite number, at least ``least`` (or above ``above``) and at most ``most`` when given."""
        value = self.raw(name)
        if value is None:
            return default
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        fits = math.isfinite(number)
        fits = fits and (least is None or number >= least) and (above is None or number > above)
        if not fits or (most is not None and number > most):
            if above is not None:
                allowed = f"above {above:g}" + (f" and at most {most:g}" if most is not None else "")
            else:
                allowed = _range(least, most)
            raise self.fail(name, value, f"use a number {allowed}".rstrip(), default)
        return number

    def text(self, name: str, default: str = "", *, choices: Iterable[str] | None = None) -> str:
        """A string; with ``choices``, one of them (compared without regard to case, returned as listed)."""
        value = self.raw(name)
        if value is None:
            return default
        if choices is None:
            return value
        for choice in choices:
            if value.lower() == choice.lower():
                return choice
        raise self.fail(name, value, "use one of " + ", ".join(choices), default or None)

    def names(self, name: str, default: list[str]) -> list[str]:
        """A comma-separated list: each entry stripped, empty entries dropped ("a.com, b.com," is two names)."""
        value = self.raw(name)
        if value is None:
            return list(default)
        return [entry.strip() for entry in value.split(",") if entry.strip()]


def _range(least: float | None, most: float | None) -> str:
    if least is not None and most is not None:
        return f"from {least:g} to {most:g}"
    if least is not None:
        return f"of {least:g} or more"
    if most is not None:
        return f"of at most {most:g}"
    return ""
