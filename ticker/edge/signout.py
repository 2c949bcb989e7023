"""Signing out ends a user's personal frames on every web process (issue 23); so does a password change, for
the user's other sessions (Django ends them then).

Django sends ``user_logged_out`` from ``logout()`` (the accounts' logout view, the admin's); the receiver here
publishes ``personal.signed_out_frame()`` for that user to the ``personal`` group. Each web process's hub
(ticker/hub/personal.py) writes it to the user's open connections there and forgets them: the sockets stay
open as anonymous ones, for quotes only. Connected in ``TickerConfig.ready`` (ticker/apps.py).
"""

from __future__ import annotations

import asyncio
import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

from ticker.wire import personal

log = logging.getLogger(__name__)
# Tasks of sign-outs published from the event loop's thread (an async logout), kept until done.
_pending: set[asyncio.Task] = set()


def publish_signed_out(sender, request=None, user=None, **kwargs) -> None:
    """The ``user_logged_out`` receiver: tell every web process that ``user`` signed out. A failure is logged,
    never raised: the sign-out itself has happened (the session is gone, and with it the next handshake's user)."""
    if user is None or getattr(user, "pk", None) is None:
        return
    _publish(personal.signed_out_message(user.pk))


# Set on a user instance before its new password is saved, by the page it was changed on (the accounts'
# PasswordChangeView): the tag of that session (``session_tag``), whose connections keep their personal frames.
SPARING = "ticker_sparing_session"


def publish_password_changed(sender, instance, update_fields=None, **kwargs) -> None:
    """``pre_save`` of the user model: a password that changes (the accounts' page, the admin's forms, ``manage.py
    changepassword``) ends the user's sessions in Django, all but the one it was changed in if there is one;
    once the save commits, their connections sign out too, on every web process. A new user, or a save of other
    fields (a sign-in's ``last_login``), is not looked at; otherwise one read of the stored password."""
    if instance.pk is None or (update_fields is not None and "password" not in update_fields):
        return
    before = sender.objects.filter(pk=instance.pk).values_list("password", flat=True).first()
    if before is None or before == instance.password:
        return
    message = personal.signed_out_message(instance.pk, sparing=getattr(instance, SPARING, None))
    transaction.on_commit(lambda: _publish(message))


def _publish(message: dict) -> None:
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    try:
        layer = get_channel_layer()
        if layer is None:
            return
        if loop is None:  # a sync view, in its worker thread (or a test, or a command)
            async_to_sync(layer.group_send)(personal.PERSONAL_GROUP, message)
        else:
            task = loop.create_task(layer.group_send(personal.PERSONAL_GROUP, message))
            _pending.add(task)
            task.add_done_callback(_pending.discard)
    except Exception as exc:
        log.warning("could not publish a sign-out to the web processes: %s", exc)
