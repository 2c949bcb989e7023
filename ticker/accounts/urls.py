"""The account routes, included at the top of config/urls.py."""

from __future__ import annotations

from django.urls import path

from ticker.accounts import api, views

urlpatterns = [
    path("accounts/signup/", views.signup, name="signup"),
    path("accounts/login/", views.LoginView.as_view(), name="login"),
    path("accounts/logout/", views.LogoutView.as_view(), name="logout"),
    path("accounts/password_change/", views.PasswordChangeView.as_view(), name="password_change"),
    path("accounts/password_change/done/", views.PasswordChangeDoneView.as_view(), name="password_change_done"),
    path("api/watchlist/", api.watchlist, name="watchlist"),
]
