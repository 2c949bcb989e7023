from django.contrib import admin, messages

from .models import PricePoint, Stock

# The columns the market process writes. The admin shows them read-only and
# never saves them, so an edit made while the market runs cannot roll a
# price or seq back.
MARKET_FIELDS = ("price", "seq", "step", "quoted_at")


@admin.register(Stock)
class StockAdmin(admin.ModelAdmin):
    list_display = (
        "symbol",
        "name",
        "price",
        "change_display",
        "change_pct_display",
        "volatility",
        "drift",
        "halted",
        "active",
    )
    list_filter = ("halted", "active")
    list_editable = ("volatility", "drift")
    search_fields = ("symbol", "name")
    ordering = ("symbol",)
    actions = ("halt", "resume")
    fieldsets = (
        (None, {"fields": ("symbol", "name", "reference_price", "active", "halted")}),
        ("Price model", {"fields": ("volatility", "drift")}),
        ("Live (written by the market)", {"fields": MARKET_FIELDS}),
    )

    def has_delete_permission(self, request, obj=None):
        # Deleting and re-adding a symbol would restart its seq, which clients
        # read as old news. Deactivate it instead ("active" off).
        return False

    def get_readonly_fields(self, request, obj=None):
        # A new symbol needs a starting price; after that the market owns it.
        return MARKET_FIELDS if obj else MARKET_FIELDS[1:]

    def save_model(self, request, obj, form, change):
        if change:
            editable = [f for f in form.changed_data if f not in MARKET_FIELDS]
            if editable:
                obj.save(update_fields=editable)
        else:
            obj.save()

    @admin.display(description="change", ordering="price")
    def change_display(self, obj: Stock) -> str:
        return f"{obj.change:+.2f}"

    @admin.display(description="change %")
    def change_pct_display(self, obj: Stock) -> str:
        return f"{obj.change_pct:+.2f}%"

    @admin.action(description="Halt trading in the selected stocks")
    def halt(self, request, queryset):
        count = queryset.update(halted=True)
        self.message_user(request, f"Halted {count} stock(s); the market applies it within a second.", messages.SUCCESS)

    @admin.action(description="Resume trading in the selected stocks")
    def resume(self, request, queryset):
        count = queryset.update(halted=False)
        self.message_user(
            request, f"Resumed {count} stock(s); the market applies it within a second.", messages.SUCCESS
        )


@admin.register(PricePoint)
class PricePointAdmin(admin.ModelAdmin):
    list_display = ("stock", "step", "seq", "price", "ts")
    list_filter = ("stock",)
    search_fields = ("stock__symbol",)
    list_select_related = ("stock",)
    # History is written by the market only.
    readonly_fields = ("stock", "step", "seq", "price", "ts")
    show_full_result_count = False

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
