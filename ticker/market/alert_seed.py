"""Simulated users and their alerts near current prices, for benchmarks and tests (``manage.py seed_alerts``)."""

from __future__ import annotations

import random
from decimal import Decimal

from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import User
from django.db import transaction

from ticker.market import lease as leases
from ticker.market import selectors
from ticker.models import ALERTS_MOST_PER_USER, Alert, Stock

SIM_USER = "sim-user-{:05d}"
SIM_USER_PREFIX = "sim-user-"
BATCH = 2000


def seed_users(total: int) -> list[int]:
    """``sim-user-00001`` ... up to ``total``, made if missing, with unusable passwords; their ids in order."""
    names = [SIM_USER.format(n) for n in range(1, total + 1)]
    taken = set(User.objects.filter(username__startswith=SIM_USER_PREFIX).values_list("username", flat=True))
    unusable = make_password(None)  # one unusable hash for all: nobody signs in as a simulated user
    User.objects.bulk_create(
        (User(username=name, password=unusable) for name in names if name not in taken), batch_size=BATCH
    )
    ids = dict(User.objects.filter(username__in=names).values_list("username", "id"))
    return [ids[name] for name in names]


def seed_alerts(*, users: int, alerts: int, seed: int = 1, spread: float = 1.0, just: float = 0.1) -> int:
    """Give the first ``users`` simulated users ``alerts`` armed alerts in all, spread over the listed symbols
    near their current prices: a share ``just`` a cent or a hundredth of a percent away, the others 0.2% to 5% of
    the price (or 0.2 to 5 points of change %) away, times ``spread``; return how many were made.

    Idempotent-ish: armed alerts the simulated users already hold count towards ``alerts``, so running it again
    makes only the difference (fired ones are made again). Each user holds at most ALERTS_MOST_PER_USER.
    """
    if alerts > users * ALERTS_MOST_PER_USER:
        raise ValueError(f"{alerts} alerts over {users} users is more than {ALERTS_MOST_PER_USER} per user")
    user_ids = seed_users(users)
    held = dict.fromkeys(user_ids, 0)
    for user_id in Alert.objects.filter(user_id__in=user_ids).values_list("user_id", flat=True).iterator():
        held[user_id] += 1
    armed = Alert.objects.filter(user_id__in=user_ids, state=Alert.State.ARMED).count()
    stocks = list(selectors.listed_stocks())
    if not stocks:
        raise ValueError("no listed symbols: run seed_symbols first")
    rng = random.Random(seed)
    step = max(selectors.last_step(), leases.last_step())
    made: list[Alert] = []
    room = [u for u in user_ids if held[u] < ALERTS_MOST_PER_USER]
    while armed + len(made) < alerts and room:
        user_id = room[len(made) % len(room)]
        made.append(_near(rng, rng.choice(stocks), user_id=user_id, step=step, spread=spread, just=just))
        held[user_id] += 1
        if held[user_id] >= ALERTS_MOST_PER_USER:
            room.remove(user_id)
    with transaction.atomic():
        Alert.objects.bulk_create(made, batch_size=BATCH)
    return len(made)


def _near(rng: random.Random, stock: Stock, *, user_id: int, step: int, spread: float, just: float) -> Alert:
    condition = rng.choice(Alert.Condition.values)
    close = stock.previous_close
    close_call = rng.random() < just
    if condition.startswith("price_"):
        share = Decimal(rng.uniform(0.002, 0.05) * spread)
        away = Decimal("0.01") if close_call else (stock.price * share).quantize(Decimal("0.01"))
        value = stock.price + away if condition.endswith("above") else max(Decimal("0.01"), stock.price - away)
    else:
        pct = Decimal(str(stock.change_pct)) if close else Decimal(0)
        away = Decimal("0.01") if close_call else Decimal(str(round(rng.uniform(0.2, 5.0) * spread, 2)))
        value = pct + away if condition.endswith("above") else pct - away
    return Alert(
        user_id=user_id,
        stock=stock,
        condition=condition,
        value=value,
        note="simulated",
        armed_step=step,
    )
