"""The operations view's access rule and its JSON (in-process, on the test Redis and database)."""

from __future__ import annotations

import asyncio
import os
import time

import pytest
from django.contrib.auth.models import Permission, User

from .clients import until

pytestmark = pytest.mark.django_db


def operator(**fields) -> User:
    """A staff user allowed the operations view (ticker.view_operations)."""
    user = User.objects.create_user("op", password="x-long-password-1", is_staff=True, **fields)
    user.user_permissions.add(Permission.objects.get(codename="view_operations", content_type__app_label="ticker"))
    return user


def test_the_operations_page_and_its_data_are_for_staff_only(client):
    """Anonymous: the page sends to the admin's sign-in and the data is 403; a signed-in non-staff user too."""
    page = client.get("/admin/ops/")
    assert page.status_code == 302 and page["Location"].startswith("/admin/login/")
    refused = client.get("/admin/ops/data/")
    assert refused.status_code == 403 and refused.json()["code"] == "forbidden"
    client.force_login(User.objects.create_user("reader", password="x-long-password-1"))
    assert client.get("/admin/ops/data/").status_code == 403


def test_staff_without_the_operations_permission_are_refused(client):
    """Issue 21: a staff user who may only view stocks gets 403 from the page and its data, and no host or PID."""
    user = User.objects.create_user("viewer", password="x-long-password-1", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_stock", content_type__app_label="ticker"))
    client.force_login(user)
    assert client.get("/admin/ops/").status_code == 403
    refused = client.get("/admin/ops/data/")
    assert refused.status_code == 403 and refused.json()["code"] == "forbidden"
    assert "ticker.view_operations" in refused.json()["message"] and "pid" not in refused.content.decode()


def test_the_operations_permission_is_granted_to_nobody_by_default(client):
    """A new staff user has no ticker.view_operations; a superuser has it."""
    assert not User.objects.create_user("new", is_staff=True).has_perm("ticker.view_operations")
    assert User.objects.create_superuser("root", "root@example.com", "x").has_perm("ticker.view_operations")


def test_staff_see_redis_the_database_and_the_reports(client, clean_redis):
    """A staff user with the permission gets Redis's and the database's state and a list (maybe empty) of each
    kind of process."""
    client.force_login(operator())
    assert client.get("/admin/ops/").status_code == 200
    view = client.get("/admin/ops/data/").json()
    assert view["redis"]["ok"] and view["redis"]["version"]
    from django.db import connection

    assert set(view["database"]) == {"ok", "ping_ms", "vendor"}
    assert view["database"]["ok"] is True and view["database"]["vendor"] == connection.vendor
    assert isinstance(view["database"]["ping_ms"], int | float) and 0 <= view["database"]["ping_ms"] < 60_000
    assert view["web"] == [] and view["market"] == []


def test_the_admin_links_to_the_operations_view_only_for_those_who_may_open_it(client):
    """The admin's top bar has an "Operations" link for a user with the permission, and none for other staff."""
    viewer = User.objects.create_user("viewer", password="x-long-password-1", is_staff=True)
    client.force_login(viewer)
    assert 'href="/admin/ops/"' not in client.get("/admin/").content.decode()
    client.force_login(operator())
    page = client.get("/admin/").content.decode()
    assert '<a href="/admin/ops/">Operations</a>' in page


@pytest.mark.asyncio
async def test_the_view_reads_the_registry_of_live_reports_never_the_keyspace(clean_redis):
    """Issue 20: the view lists the reports a registry names (an expired entry is dropped) and never SCANs Redis:
    with 2,000 unrelated keys present, reading it runs no SCAN at all."""
    from ticker.ops import registry as ops

    client = clean_redis.client()
    client.mset({f"unrelated:{i}": "x" for i in range(2000)})
    task = asyncio.create_task(ops.report("web", lambda: {"role": "web", "host": "h", "pid": 1}))
    try:
        await until(lambda: client.zcard(ops.registry_key()) == 1, limit=10, what="the report registered")
        client.zadd(ops.registry_key(), {ops.key_prefix() + "web:gone:2": time.time() - 1})  # a report that expired
        scans = client.info("commandstats").get("cmdstat_scan", {}).get("calls", 0)
        view = await ops.read_reports()
        assert [entry["pid"] for entry in view["web"]] == [1]
        assert client.zrange(ops.registry_key(), 0, -1) == [
            (ops.key_prefix() + f"web:{ops.HOST}:{os.getpid()}").encode()
        ]
        assert client.info("commandstats").get("cmdstat_scan", {}).get("calls", 0) == scans
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert client.zcard(ops.registry_key()) == 0, "a stopped report leaves the registry at once"
