from django.contrib import admin
from django.templatetags.static import static
from django.urls import include, path, re_path
from django.views.generic import RedirectView

from ticker import api, api_alerts, views
from ticker.edge import streams
from ticker.ops import views as ops_views

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("api/quotes/", streams.quotes, name="quotes"),
    path("api/quotes/stream/", streams.stream, name="stream"),
    # Before the <symbol> routes, so "sparklines" is never taken for a symbol.
    path("api/quotes/sparklines/", api.sparklines, name="sparklines"),
    path("api/quotes/<str:symbol>/history/", api.history, name="history"),
    path("api/movers/", streams.movers, name="movers"),
    path("api/quotes/<str:symbol>/candles/", api.candles, name="candles"),
    path("api/symbols/", api.symbols, name="symbols"),
    path("api/alerts/", api_alerts.alerts, name="alerts"),
    path("api/alerts/read/", api_alerts.mark_read, name="alerts-read"),
    path("api/alerts/<int:alert_id>/", api_alerts.alert, name="alert"),
    path("api/alerts/<int:alert_id>/rearm/", api_alerts.rearm, name="alert-rearm"),
    path("lab/", views.lab, name="lab"),
    # Accounts and the watchlist on the account (issue 23): before the JSON 404 of other /api/ paths.
    path("", include("ticker.accounts.urls")),
    path("api/lab/handshake/", views.lab_handshake, name="lab-handshake"),
    # Before the admin's own routes, which would take "ops" for an app label.
    path("admin/ops/", ops_views.page, name="ops"),
    path("admin/ops/data/", ops_views.data, name="ops-data"),
    # Last of the API routes: any other /api/ path is a JSON 404 (docs/protocol.md, "HTTP errors").
    re_path(r"^api/(?P<rest>.*)$", api.api_not_found, name="api-not-found"),
    path("admin/", admin.site.urls),
    # Browsers ask for /favicon.ico on pages without a <link rel="icon"> (the admin, JSON answers).
    path("favicon.ico", RedirectView.as_view(url=static("ticker/img/favicon.svg"), permanent=True)),
]
