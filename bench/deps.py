"""What the benchmark commands need beyond the runtime install, checked before they start anything.

requirements.txt (what production and ``scripts/run`` install) has none of
these; requirements-dev.txt pins them all.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable

from django.core.management.base import CommandError

# Import name -> the package requirements-dev.txt pins, where they differ.
PACKAGES = {"socketio": "python-socketio"}


def require(command: str, modules: Iterable[str]) -> None:
    """Called first by each command: a one-line error naming every missing package and how to install them."""
    missing = [name for name in dict.fromkeys(modules) if importlib.util.find_spec(name) is None]
    if missing:
        names = ", ".join(PACKAGES.get(name, name) for name in missing)
        raise CommandError(
            f"{command} needs {names}, from the development install: run scripts/bootstrap requirements-dev.txt"
        )
