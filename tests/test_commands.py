"""Commands the site prints to a person work exactly as printed (issue 20): the run command's banner, the lockout
page, and scripts/test's usage."""

from __future__ import annotations

import io
import os
import re
import subprocess

import pytest

from .conftest import ROOT

pytestmark = pytest.mark.processes  # runs scripts/manage and scripts/test as a person would


def _env(tmp_path, **extra: str) -> dict[str, str]:
    """A person's shell after the run command: no DJANGO_* set, a database of the test's own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "TICKER_", "PYTEST_", "DATABASE_"))}
    env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    env.update(extra)
    return env


def _run(line: str, env: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess:
    """Run one printed command line as a shell would, from the project's root, with no terminal attached."""
    return subprocess.run(
        ["bash", "-c", line],
        cwd=ROOT,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,  # the first scripts/manage call may install the pinned packages (scripts/bootstrap)
        start_new_session=True,  # no controlling terminal: getpass reads the new password from stdin
    )


@pytest.mark.django_db
def test_every_start_prints_a_password_command_that_works_as_printed(tmp_path):
    """The banner names the admin account on every start, and its changepassword command sets the password."""
    from django.contrib.auth import get_user_model

    from ticker.runtime.launcher import ensure_superuser

    first, later = io.StringIO(), io.StringIO()
    ensure_superuser(first)
    ensure_superuser(later)
    assert "password:" in first.getvalue()
    assert "admin" in later.getvalue() and "password:" not in later.getvalue()
    printed = {re.search(r"(scripts/manage changepassword \w+)", out.getvalue()).group(1) for out in (first, later)}
    assert printed == {"scripts/manage changepassword admin"}
    assert get_user_model().objects.filter(username="admin", is_superuser=True).exists()

    env = _env(tmp_path, DJANGO_SUPERUSER_PASSWORD="first-Password-1")
    assert _run("scripts/manage migrate --verbosity 0", env).returncode == 0
    made = _run("scripts/manage createsuperuser --noinput --username admin --email a@example.com", env)
    assert made.returncode == 0, made.stderr
    changed = _run(printed.pop(), env, stdin="second-Password-2\nsecond-Password-2\n")
    assert changed.returncode == 0, changed.stderr
    assert "Password changed successfully" in changed.stdout
    check = _run(
        'scripts/manage shell --no-imports -c "from django.contrib.auth.models import User; '
        "print(User.objects.get(username='admin').check_password('second-Password-2'))\"",
        env,
    )
    assert check.stdout.strip() == "True", check.stderr


def test_the_lockout_page_command_works_as_printed(tmp_path):
    """The lockout page's reset command, with a username filled in, runs as printed."""
    page = (ROOT / "templates" / "ticker" / "lockout.html").read_text()
    printed = re.search(r"<code>([^<]*axes_reset_username[^<]*)</code>", page).group(1)
    assert printed.startswith("scripts/manage "), printed
    env = _env(tmp_path)
    assert _run("scripts/manage migrate --verbosity 0", env).returncode == 0
    locked = _run(
        'scripts/manage shell --no-imports -c "from axes.models import AccessAttempt; '
        "AccessAttempt.objects.create(username='admin', ip_address='192.0.2.1', user_agent='t', http_accept='*/*', "
        "path_info='/admin/login/', get_data='', post_data='', failures_since_start=5)\"",
        env,
    )
    assert locked.returncode == 0, locked.stderr
    reset = _run(printed.replace("USERNAME", "admin"), env)
    assert reset.returncode == 0, reset.stderr
    assert "1 attempts removed" in reset.stdout, reset.stdout


# What the pages print besides the lockout's development command, and how each is checked.
PAGE_COMMANDS = {
    "docker compose run --rm web python manage.py axes_reset_username USERNAME": "needs a Docker engine (none here); "
    "the command inside it, python manage.py axes_reset_username, is the one run above through scripts/manage",
    "scripts/manage bench_transports": "a benchmark of minutes (tests/test_bench.py runs its tiny form)",
    "scripts/bootstrap requirements-dev.txt": "run as printed by tests/test_documented_commands.py",
}


def test_every_command_a_page_prints_is_run_or_placed(tmp_path):
    """The lockout page's and the Lab's commands: each one run above, or placed here with what covers it."""
    printed = set()
    for name in ("lockout.html", "lab.html"):
        page = (ROOT / "templates" / "ticker" / name).read_text()
        printed |= {" ".join(code.split()) for code in re.findall(r"<code>([^<]*)</code>", page)}
    commands = {code for code in printed if code.startswith(("scripts/", "python ", "docker "))}
    assert commands - {"scripts/manage axes_reset_username USERNAME"} == set(PAGE_COMMANDS)
    done = _run("scripts/manage help bench_transports", _env(tmp_path))
    assert done.returncode == 0 and "usage: manage.py bench_transports" in done.stdout, done.stderr


def test_scripts_test_help_prints_usage_and_runs_nothing(tmp_path):
    """`scripts/test --help` prints how to call it, exits 0 and starts no check."""
    for flag in ("--help", "-h"):
        done = _run(f"scripts/test {flag}", _env(tmp_path))
        assert done.returncode == 0
        assert done.stdout.startswith("Usage: scripts/test")
        assert "scripts/test fast" in done.stdout
        assert "== " not in done.stdout and "passed" not in done.stdout
