from decimal import Decimal

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.models import CHANGE, LogEntry
from django.db import transaction

from ticker.api_alerts import tell_market
from ticker.models import Alert, Candle, Stock, symbol_validator

# The columns the market process writes. The admin shows them read-only and
# never saves them, so an edit made while the market runs cannot roll a
# price, seq or session figure back.
MARKET_FIELDS = (
    "price",
    "prev_close",
    "open",
    "high",
    "low",
    "volume",
    "seq",
    "step",
    "quoted_at",
    "candle_time",
    "candle_open",
    "candle_high",
    "candle_low",
    "candle_volume",
)


class SymbolField(forms.CharField):
    """A symbol as typed: spaces trimmed and upper-cased before it is checked ("brk.b" is BRK.B)."""

    def to_python(self, value):
        return super().to_python(value).upper()


class StockForm(forms.ModelForm):
    symbol = SymbolField(
        max_length=10,
        validators=[symbol_validator],
        help_text="Capital letters, digits, . or -; lower case is upper-cased when saved.",
    )

    class Meta:
        model = Stock
        fields = ("symbol", "name", "sector", "reference_price", "active", "halted", "volatility", "drift")


class StockAddForm(StockForm):
    """Adding a stock: the starting price sits with the reference data, and the previous close defaults to it."""

    class Meta(StockForm.Meta):
        fields = (*StockForm.Meta.fields, "price")

    price = forms.DecimalField(
        label="Starting price", max_digits=12, decimal_places=2, min_value=Decimal("0.01"), required=True
    )
    reference_price = forms.DecimalField(
        label="Previous close",
        max_digits=12,
        decimal_places=2,
        min_value=Decimal("0.01"),
        required=False,
        help_text="What change is measured from until the first close; the starting price if left empty.",
    )

    def clean(self):
        data = super().clean()
        if data.get("reference_price") is None and data.get("price") is not None:
            data["reference_price"] = data["price"]
            self.instance.reference_price = data["price"]
        return data


@admin.register(Stock)
class StockAdmin(admin.ModelAdmin):
    # Few, narrow columns: with the sidebar open at 1366 px every column, Halted
    # and Active included, stays in view (the issue found them cut off).
    list_display = ("symbol", "name", "sector", "price", "change_pct_display", "halted", "active")
    list_filter = ("sector", "active", "halted")
    search_fields = ("symbol", "name")
    ordering = ("symbol",)
    list_per_page = 100
    actions = ("halt", "resume")
    form = StockForm

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = StockAddForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fieldsets(self, request, obj=None):
        if obj is None:
            return (
                (None, {"fields": ("symbol", "name", "sector", "price", "reference_price", "active", "halted")}),
                ("Price model", {"fields": ("volatility", "drift")}),
            )
        return (
            (None, {"fields": ("symbol", "name", "sector", "reference_price", "active", "halted")}),
            ("Price model", {"fields": ("volatility", "drift")}),
            ("Live (written by the market)", {"fields": MARKET_FIELDS}),
        )

    def has_delete_permission(self, request, obj=None):
        # Deleting and re-adding a symbol would restart its seq, which clients
        # read as old news. Deactivate it instead ("active" off).
        return False

    def get_readonly_fields(self, request, obj=None):
        # A new symbol needs a starting price; after that the market owns it.
        return MARKET_FIELDS if obj else ()

    def save_model(self, request, obj, form, change):
        if change:
            editable = [f for f in form.changed_data if f not in MARKET_FIELDS]
            if editable:
                obj.save(update_fields=editable)
        else:
            obj.save()

    @admin.display(description="change %")
    def change_pct_display(self, obj: Stock) -> str:
        return f"{obj.change_pct:+.2f}%"

    # Halting changes what the market does, so it needs the change permission (issue 21: a view-only staff
    # user was offered both actions and could halt every stock with select_across). Each stock it changes gets
    # an admin LogEntry naming the user; only "halted" is written, never MARKET_FIELDS.
    @admin.action(description="Halt trading in the selected stocks", permissions=["change"])
    def halt(self, request, queryset):
        self._set_halted(request, queryset, halted=True)

    @admin.action(description="Resume trading in the selected stocks", permissions=["change"])
    def resume(self, request, queryset):
        self._set_halted(request, queryset, halted=False)

    def _set_halted(self, request, queryset, *, halted: bool) -> None:
        verb = "Halted" if halted else "Resumed"
        with transaction.atomic():
            # Counted first: the changelist's own filter may be on "halted" (select_across).
            selected = queryset.count()
            changing = list(queryset.exclude(halted=halted).select_for_update().only("pk", "symbol", "name"))
            Stock.objects.filter(pk__in=[stock.pk for stock in changing]).update(halted=halted)
            if changing:
                LogEntry.objects.log_actions(
                    user_id=request.user.pk, queryset=changing, action_flag=CHANGE, change_message=verb
                )
        unchanged = selected - len(changing)
        already = f" ({unchanged} already {'halted' if halted else 'trading'})" if unchanged else ""
        self.message_user(
            request,
            f"{verb} {len(changing)} stock(s){already}; the market applies it within a second.",
            messages.SUCCESS,
        )


@admin.register(Candle)
class CandleAdmin(admin.ModelAdmin):
    list_display = ("stock", "time", "open", "high", "low", "close", "volume")
    search_fields = ("stock__symbol",)
    list_select_related = ("stock",)
    # Candles are written by the market only; with 5,000 symbols the table holds
    # about a million rows, so no exact count and no per-stock filter list.
    readonly_fields = ("stock", "time", "open", "high", "low", "close", "volume")
    show_full_result_count = False

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Alert)
class AlertAdmin(admin.ModelAdmin):
    """Users' price alerts (issue 23): find them by user or symbol, and disable (or enable again) all of a user's.

    Everything is read-only but ``disabled``: the figures are the market's (stored with the step that fired the
    alert), the rest the user's. A disabled alert never fires; enabling one tells the market to read it again.
    """

    list_display = ("user", "symbol", "condition", "value", "state", "disabled", "triggered_at", "created_at")
    list_filter = ("state", "disabled", "condition")
    search_fields = ("user__username", "stock__symbol")
    list_select_related = ("user", "stock")
    ordering = ("-created_at", "-id")
    actions = ("disable_users_alerts", "enable_users_alerts")
    fields = (
        "user", "stock", "condition", "value", "note", "state", "disabled", "armed_step", "created_at",
        "triggered_at", "triggered_step", "triggered_price", "triggered_change_pct", "read",
    )  # fmt: skip
    readonly_fields = tuple(f for f in fields if f != "disabled")

    def has_add_permission(self, request) -> bool:
        return False  # users set their own alerts

    @admin.display(ordering="stock__symbol")
    def symbol(self, alert: Alert) -> str:
        return alert.stock.symbol

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if "disabled" in form.changed_data and not obj.disabled:
            transaction.on_commit(lambda: tell_market([obj.pk]))

    @admin.action(description="Disable every alert of the selected alerts' users", permissions=["change"])
    def disable_users_alerts(self, request, queryset):
        users = set(queryset.values_list("user_id", flat=True))
        count = Alert.objects.filter(user_id__in=users, disabled=False).update(disabled=True)
        self.message_user(request, f"Disabled {count} alerts of {len(users)} user(s): they will not fire.")

    @admin.action(description="Enable every alert of the selected alerts' users", permissions=["change"])
    def enable_users_alerts(self, request, queryset):
        users = set(queryset.values_list("user_id", flat=True))
        enabled = Alert.objects.filter(user_id__in=users, disabled=True)
        ids = list(enabled.values_list("id", flat=True))
        enabled.filter(id__in=ids).update(disabled=False)
        transaction.on_commit(lambda: tell_market(ids))
        self.message_user(request, f"Enabled {len(ids)} alerts of {len(users)} user(s).")
