from django.contrib import admin
from django.urls import path

from ticker import views

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("api/quotes/", views.quotes, name="quotes"),
    path("api/quotes/stream/", views.stream, name="stream"),
    path("api/quotes/<str:symbol>/history/", views.history, name="history"),
    path("api/movers/", views.movers, name="movers"),
    path("lab/", views.lab, name="lab"),
    path("api/lab/handshake/", views.lab_handshake, name="lab-handshake"),
    path("admin/", admin.site.urls),
]
