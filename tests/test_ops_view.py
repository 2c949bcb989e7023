"""The operations view's access rule and its JSON (in-process, on the test Redis and database)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

pytestmark = pytest.mark.django_db


def test_the_operations_page_and_its_data_are_for_staff_only(client):
    """Anonymous: the page sends to the admin's sign-in and the data is 403; a signed-in non-staff user too."""
    page = client.get("/admin/ops/")
    assert page.status_code == 302 and page["Location"].startswith("/admin/login/")
    refused = client.get("/admin/ops/data/")
    assert refused.status_code == 403 and refused.json()["code"] == "forbidden"
    client.force_login(User.objects.create_user("reader", password="x-long-password-1"))
    assert client.get("/admin/ops/data/").status_code == 403


def test_staff_see_redis_the_database_and_the_reports(client, clean_redis):
    """A staff user gets Redis's and the database's state and a list (maybe empty) of each kind of process."""
    client.force_login(User.objects.create_user("op", password="x-long-password-1", is_staff=True))
    assert client.get("/admin/ops/").status_code == 200
    view = client.get("/admin/ops/data/").json()
    assert view["redis"]["ok"] and view["redis"]["version"]
    assert view["database"] == {
        "ok": True,
        "ping_ms": view["database"]["ping_ms"],
        "vendor": view["database"]["vendor"],
    }
    assert view["web"] == [] and view["market"] == []
