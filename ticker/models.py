from decimal import Decimal

from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models

symbol_validator = RegexValidator(
    r"^[A-Z][A-Z0-9.\-]{0,9}$",
    "A symbol is 1 to 10 characters: capital letters, digits, '.' or '-', starting with a letter.",
)


class Stock(models.Model):
    """A simulated listed instrument and its latest price.

    The operator owns the reference data and the controls (name, reference
    price, volatility, drift, active, halted); the market process owns the
    live fields (price, seq, step, quoted_at). Each side writes only its own
    columns, so an admin save never rolls a price back (see StockAdmin).
    """

    symbol = models.CharField(max_length=10, unique=True, validators=[symbol_validator])
    name = models.CharField(max_length=100)
    reference_price = models.DecimalField(
        "previous close",
        max_digits=12,
        decimal_places=2,
        validators=[MinValueValidator(Decimal("0.01"))],
        help_text="The price that change and change % are measured from.",
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

    class Meta:
        ordering = ["symbol"]

    def __str__(self) -> str:
        return f"{self.symbol} ({self.name})"

    @property
    def change(self) -> Decimal:
        return self.price - self.reference_price

    @property
    def change_pct(self) -> float:
        return round(float(self.change / self.reference_price * 100), 2) if self.reference_price else 0.0


class PricePoint(models.Model):
    """One change of one symbol; the market keeps the last MARKET_HISTORY_STEPS steps."""

    stock = models.ForeignKey(Stock, on_delete=models.CASCADE, related_name="history")
    step = models.PositiveBigIntegerField()
    seq = models.PositiveBigIntegerField()
    price = models.DecimalField(max_digits=12, decimal_places=2)
    ts = models.BigIntegerField(help_text="Epoch milliseconds.")

    class Meta:
        ordering = ["stock", "-step"]
        indexes = [models.Index(fields=["stock", "-step"]), models.Index(fields=["step"])]
        constraints = [models.UniqueConstraint(fields=["stock", "seq"], name="unique_pricepoint_seq")]

    def __str__(self) -> str:
        return f"{self.stock.symbol} #{self.seq} {self.price}"
