"""The account pages: sign up, sign in, sign out (POST only), change password; Django's auth views in the
site's look (templates/accounts/)."""

from __future__ import annotations

from django.conf import settings
from django.contrib import auth
from django.contrib.auth import views as auth_views
from django.db import IntegrityError, transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse_lazy
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods

from ticker.accounts import limits
from ticker.accounts.forms import SignUpForm, taken
from ticker.edge import signout
from ticker.edge.session import session_tag


def too_many_attempts(request: HttpRequest) -> HttpResponse:
    """429: this address failed to sign up too often; when it may try again."""
    context = {
        "failure_limit": settings.TICKER_SIGNUP_FAILURE_LIMIT,
        "cooloff_minutes": round(settings.TICKER_LOGIN_COOLOFF_MINUTES),
    }
    return render(request, "accounts/signup_locked.html", context, status=429)


def _next_page(request: HttpRequest) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        return target
    return settings.LOGIN_REDIRECT_URL


@require_http_methods(["GET", "HEAD", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
    """GET: the form. POST: a new account, signed in at once (no email needed); a failure is counted."""
    if request.user.is_authenticated and request.method != "POST":
        return redirect(_next_page(request))
    if limits.signup_locked(request):
        return too_many_attempts(request)
    form = SignUpForm(request.POST if request.method == "POST" else None)
    if request.method == "POST":
        if form.is_valid():
            try:
                with transaction.atomic():
                    user = form.save()
            except IntegrityError:  # another sign-up took the name (any case) since the form's check
                form.add_error("username", taken(form.cleaned_data["username"]))
            else:
                auth.login(request, user, backend="django.contrib.auth.backends.ModelBackend")
                return redirect(_next_page(request))
        limits.count_signup_failure(request)
        if limits.signup_locked(request):
            return too_many_attempts(request)
    return render(request, "accounts/signup.html", {"form": form, "next": _next_page(request)})


class LoginView(auth_views.LoginView):
    """Django's LoginView: its AuthenticationForm passes the request to ``authenticate``, so django-axes
    counts failures and locks as for the admin (ticker.edge.lockout)."""

    template_name = "accounts/login.html"
    redirect_authenticated_user = True


class LogoutView(auth_views.LogoutView):
    """POST only (Django's LogoutView refuses GET with 405); back to the market screen."""

    next_page = "/"


class PasswordChangeView(auth_views.PasswordChangeView):
    """Django's: this session stays signed in (``update_session_auth_hash``, which also gives it a new key), the
    user's other sessions end; so do their open sockets' personal frames, on every web process."""

    template_name = "accounts/password_change.html"
    success_url = reverse_lazy("password_change_done")

    def form_valid(self, form):
        # This session's connections keep their personal frames (ticker/edge/signout.py); its key read before
        # Django cycles it.
        setattr(form.user, signout.SPARING, session_tag(self.request.session.session_key))
        return super().form_valid(form)


class PasswordChangeDoneView(auth_views.PasswordChangeDoneView):
    template_name = "accounts/password_change_done.html"
