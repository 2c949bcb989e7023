#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

import os
import sys
from pathlib import Path

# The bench app (benchmarks, load generators) is installed only with DJANGO_DEBUG=1 (config/settings.py).
# Without it Django does not know these commands, and when DJANGO_SECRET_KEY is missing too it answers
# with a 40-line traceback; say in one line what to do instead.
BENCH_COMMANDS = Path(__file__).resolve().parent / "bench" / "management" / "commands"


def development_command_refused(argv: list[str]) -> str | None:
    """Why ``argv`` cannot run here: a bench command (or help for one) without DJANGO_DEBUG=1; None if it can."""
    name = argv[2] if argv[1:2] == ["help"] and len(argv) > 2 else argv[1] if len(argv) > 1 else ""
    if not name.isidentifier() or not (BENCH_COMMANDS / f"{name}.py").is_file():
        return None
    import environ

    if environ.Env().bool("DJANGO_DEBUG", default=False):  # read as config/settings.py reads it
        return None
    return f"{name} is a development command: run it with DJANGO_DEBUG=1, after scripts/bootstrap requirements-dev.txt"


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    if refused := development_command_refused(sys.argv):
        sys.exit(refused)
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    try:
        _ = settings.INSTALLED_APPS  # loads config/settings.py, which checks every environment variable
    except ImproperlyConfigured as error:
        # One line that names the variable and what to set (issue 20), not a 40-line traceback.
        sys.exit(f"ticker: {error}")

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
