import secrets
from decimal import Decimal

from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models

from ticker.market import prices as market

symbol_validator = RegexValidator(
    r"^[A-Z][A-Z0-9.\-]{0,9}$",
    "A symbol is 1 to 10 characters: capital letters, digits, '.' or '-', starting with a letter.",
)


# The eleven GICS sectors: what seed_symbols and the admin's sector list offer.
SECTORS = (
    "Communication Services",
    "Consumer Discretionary",
    "Consumer Staples",
    "Energy",
    "Financials",
    "Health Care",
    "Industrials",
    "Information Technology",
    "Materials",
    "Real Estate",
    "Utilities",
)


class Stock(models.Model):
    """A simulated listed instrument and its latest price.

    The operator owns the reference data and the controls (name, sector,
    reference price, volatility, drift, active, halted); the market process
    owns the live fields (price, seq, step, quoted_at, the previous close, the
    session's open/high/low/volume and the current one-minute candle). Each
    side writes only its own columns, so an admin save never rolls a price
    back (see StockAdmin and services._store_live_columns).
    """

    symbol = models.CharField(max_length=10, unique=True, validators=[symbol_validator])
    name = models.CharField(max_length=100)
    sector = models.CharField(max_length=40, blank=True, choices=[(s, s) for s in SECTORS])
    reference_price = models.DecimalField(
        max_digits=12,
        decimal_places=2,
        validators=[MinValueValidator(Decimal("0.01"))],
        help_text="The previous close to measure change from; a new value applies at once and lasts until the "
        "session closes (then the last price becomes the previous close).",
    )
    volatility = models.FloatField(
        default=0.3,
        validators=[MinValueValidator(0.0), MaxValueValidator(5.0)],
        help_text="Annualised volatility (0.3 = 30%). Takes effect within a second.",
    )
    drift = models.FloatField(
        default=0.05,
        validators=[MinValueValidator(-5.0), MaxValueValidator(5.0)],
        help_text="Annualised drift (0.05 = 5% a year). Takes effect within a second.",
    )
    active = models.BooleanField(default=True, help_text="Inactive symbols are not traded or listed.")
    halted = models.BooleanField(default=False, help_text="Halted symbols are listed but their price does not move.")

    # Written by the market process only.
    price = models.DecimalField(max_digits=12, decimal_places=2, validators=[MinValueValidator(Decimal("0.01"))])
    seq = models.PositiveBigIntegerField(default=0, help_text="Grows by one on every change of this symbol.")
    step = models.PositiveBigIntegerField(default=0, help_text="The market step of the last change.")
    quoted_at = models.BigIntegerField(default=0, help_text="Epoch milliseconds of the last change.")
    # Empty until the market first writes them; read as the reference price (prev_close) and the price.
    prev_close = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    open = models.DecimalField("session open", max_digits=12, decimal_places=2, null=True, blank=True)
    high = models.DecimalField("session high", max_digits=12, decimal_places=2, null=True, blank=True)
    low = models.DecimalField("session low", max_digits=12, decimal_places=2, null=True, blank=True)
    volume = models.PositiveBigIntegerField("session volume", default=0)
    # The current (unfinished) one-minute candle; its close is the price.
    candle_time = models.BigIntegerField(null=True, blank=True, help_text="Epoch milliseconds of the minute's start.")
    candle_open = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    candle_high = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    candle_low = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    candle_volume = models.PositiveBigIntegerField(default=0)

    class Meta:
        ordering = ["symbol"]
        # The admin's operations view shows host names, PIDs, memory, the Redis version and the database
        # vendor: more than a staff user needs to run the market (issue 21), so it has a permission of its
        # own, granted to nobody by default (superusers have every permission).
        permissions = [("view_operations", "Can see the operations view (processes, Redis, database)")]

    def __str__(self) -> str:
        return f"{self.symbol} ({self.name})"

    @property
    def previous_close(self) -> Decimal:
        return self.reference_price if self.prev_close is None else self.prev_close

    @property
    def change(self) -> Decimal:
        return self.price - self.previous_close

    @property
    def change_pct(self) -> float:
        return market.change_pct(self.change, self.previous_close)


class Candle(models.Model):
    """One finished one-minute OHLCV candle of one symbol; the market keeps the last MARKET_CANDLE_MINUTES minutes.

    The current minute's candle lives on the Stock row (``candle_*``), written
    with the price; it is stored here once the minute is over.
    """

    stock = models.ForeignKey(Stock, on_delete=models.CASCADE, related_name="candles")
    time = models.BigIntegerField(help_text="Epoch milliseconds of the minute's start (UTC).")
    open = models.DecimalField(max_digits=12, decimal_places=2)
    high = models.DecimalField(max_digits=12, decimal_places=2)
    low = models.DecimalField(max_digits=12, decimal_places=2)
    close = models.DecimalField(max_digits=12, decimal_places=2)
    volume = models.PositiveBigIntegerField()

    class Meta:
        ordering = ["stock", "-time"]
        indexes = [models.Index(fields=["time"])]
        constraints = [models.UniqueConstraint(fields=["stock", "time"], name="unique_candle_minute")]

    def __str__(self) -> str:
        return f"{self.stock.symbol} @{self.time} {self.close}"


class MarketState(models.Model):
    """The market's one row of state that is not per symbol: the trading session as of its last step.

    Polling and the hub's database snapshots read the session from here; the
    market reads it on start to tell a session that opened or closed while it
    was down.
    """

    ONE = 1

    id = models.PositiveSmallIntegerField(primary_key=True, default=ONE)
    session_state = models.CharField(max_length=6, default="open")
    session_until = models.BigIntegerField(default=0, help_text="Epoch milliseconds of the next change of state.")
    session_number = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"session {self.session_number} {self.session_state}"


def new_site_id() -> str:
    return secrets.token_hex(8)


class MarketLease(models.Model):
    """The one market lease of this database, and the site's identity: which market process may step.

    Exactly one market leads; any other waits as a standby (ticker/market/lease.py).
    ``token`` is the fencing token: it grows by one every time the lease
    changes hands, and every step renews the lease inside the step's own
    transaction only where ``holder`` and ``token`` are still the stepping
    market's, so a market that lost the lease can never store a step.
    ``site`` is made once, at random, with the row: the batches of this
    database's market carry it, and a web process ignores batches of another
    site's market that shares its Redis namespace.
    """

    ONE = 1

    id = models.PositiveSmallIntegerField(primary_key=True, default=ONE)
    site = models.CharField(max_length=32, default=new_site_id, editable=False)
    holder = models.CharField(max_length=200, blank=True, default="", help_text="host:pid:random of the leader.")
    token = models.PositiveBigIntegerField(default=0, help_text="Fencing token: grows by one on every takeover.")
    expires_at = models.BigIntegerField(default=0, help_text="Epoch milliseconds; 0 when released.")
    step = models.PositiveBigIntegerField(default=0, help_text="The last step the holder stored.")

    def __str__(self) -> str:
        return f"market lease {self.token} held by {self.holder or 'nobody'}"


# Issue 23: what a signed-in user keeps on the account.
WATCHLIST_MOST_SYMBOLS = 50  # a watchlist's longest (docs/protocol.md, "Watchlist")
ALERTS_MOST_PER_USER = 200  # armed and triggered alerts a user may hold at once (docs/protocol.md, "Alerts")


class Watchlist(models.Model):
    """A signed-in user's watchlist: symbols in the user's order, on every device."""

    user = models.OneToOneField("auth.User", on_delete=models.CASCADE, related_name="watchlist")
    symbols = models.JSONField(default=list)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.user}: {', '.join(self.symbols)}"


class SignUpFailures(models.Model):
    """Failed sign-ups from one client address (ticker/accounts/limits.py): in the database, as django-axes keeps
    failed sign-ins, so that every web process counts the same ones."""

    address = models.CharField(max_length=64, primary_key=True)
    failures = models.PositiveIntegerField(default=0)
    last_at = models.DateTimeField(db_index=True)

    class Meta:
        verbose_name_plural = "sign-up failures"

    def __str__(self) -> str:
        return f"{self.address}: {self.failures}"


class Alert(models.Model):
    """A user's price alert on one symbol: armed until the first market step after arming whose quote satisfies
    the condition, then triggered (with the step's figures) until re-armed. The market fires it inside the step's
    transaction, under the lease (ticker/market/services.py)."""

    class Condition(models.TextChoices):
        PRICE_ABOVE = "price_above", "price above"
        PRICE_BELOW = "price_below", "price below"
        CHANGE_PCT_ABOVE = "change_pct_above", "change % above"
        CHANGE_PCT_BELOW = "change_pct_below", "change % below"

    class State(models.TextChoices):
        ARMED = "armed"
        TRIGGERED = "triggered"

    # No index of its own: ``alert_by_user_newest`` begins with it (a user's alerts, a user's deletion). Each
    # index is written again by a fire that cannot update its row in place (docs/benchmarks.md).
    user = models.ForeignKey("auth.User", on_delete=models.CASCADE, related_name="alerts", db_index=False)
    stock = models.ForeignKey(Stock, on_delete=models.CASCADE, related_name="alerts")
    condition = models.CharField(max_length=20, choices=Condition.choices)
    value = models.DecimalField(max_digits=14, decimal_places=4)
    note = models.CharField(max_length=200, blank=True)
    state = models.CharField(max_length=10, choices=State.choices, default=State.ARMED)
    disabled = models.BooleanField(default=False, help_text="Set by an operator: a disabled alert never fires.")
    # The market step that was current when the alert was armed: it fires at a later step only.
    armed_step = models.BigIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    triggered_at = models.DateTimeField(null=True, blank=True)
    triggered_step = models.BigIntegerField(null=True, blank=True)
    triggered_price = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    triggered_change_pct = models.DecimalField(max_digits=9, decimal_places=2, null=True, blank=True)
    # A triggered alert is unread until the user opens the alert list.
    read = models.BooleanField(default=True)

    class Meta:
        # No index holds ``state``: a fire (or a re-arm) then changes no indexed column, and PostgreSQL updates
        # the row in place on its page (a HOT update, with the free space migration 0008 leaves on each page)
        # instead of a new entry in every index: 2.2-2.6 -> 0.8-1.2 ms for a step's 34 fires (docs/benchmarks.md).
        # The reads by state (the book's load at a takeover, the armed ids every 10 s) scan the table off the step.
        indexes = [
            models.Index(fields=["user", "-created_at"], name="alert_by_user_newest"),
        ]

    def __str__(self) -> str:
        return f"{self.user} {self.stock.symbol} {self.condition} {self.value} ({self.state})"
