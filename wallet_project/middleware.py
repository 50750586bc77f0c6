"""Request id and the per-request access log line.

Nginx passes the id it logged as X-Request-ID (the client's own one if it sent a
sane one, else one it generated); without Nginx we generate one. The id is
echoed in the response's X-Request-ID header and put on every log record of the
request, so a user's "request id" leads to the access line and any traceback.
Tracebacks go to the log only: clients get the JSON bodies of wallet_project.errors.
"""

import logging
import re
import time
import uuid
from collections.abc import Callable
from typing import Any

from csp import middleware as csp_middleware
from django.contrib.auth import middleware as auth
from django.contrib.messages import middleware as messages
from django.contrib.sessions import middleware as sessions
from django.db import connection
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils.http import urlencode
from django_otp import middleware as otp_middleware

from wallet_project import metrics
from wallet_project.logging import request_id_var

REQUEST_ID_HEADER = "X-Request-ID"
# What we accept from outside: a log field, so no spaces, quotes or newlines.
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

access_logger = logging.getLogger("wallet.access")


def request_id_from(request: HttpRequest) -> str:
    incoming = request.META.get("HTTP_X_REQUEST_ID", "")
    return incoming if _REQUEST_ID_RE.match(incoming) else uuid.uuid4().hex


def _user_id(request: HttpRequest) -> str | None:
    # DRF sets the authenticated (JWT) user on the Django request too; the admin
    # uses the session's. Never let logging fail a request that already has its
    # response (e.g. the database went away while it ran).
    try:
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            return str(user.pk)
    except Exception:  # noqa: S110
        pass
    return None


# Paths answered before URL resolution (wallet_project.health), by their own name.
_UNRESOLVED_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})


def _metrics_observe(request: HttpRequest, status: int, seconds: float) -> None:
    """Count the request under its route template (never its path, which
    holds ids), then sample this process's pool."""
    match = request.resolver_match
    if match is not None:
        route = match.route
    elif request.path_info in _UNRESOLVED_ROUTES:
        route = request.path_info
    else:
        route = "unmatched"
    metrics.http_observe(route, request.method or "", status, seconds)
    pool = getattr(connection, "pool", None)
    if pool is not None:
        metrics.pool_sample(pool)


class RequestLogMiddleware:
    """First in MIDDLEWARE: it sees every request, redirects and errors included."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request_id = request_id_from(request)
        request.request_id = request_id  # type: ignore[attr-defined]  # ours, for the access log
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        try:
            response = self.get_response(request)
            response[REQUEST_ID_HEADER] = request_id
            seconds = time.perf_counter() - started
            if metrics.enabled():
                _metrics_observe(request, response.status_code, seconds)
            access_logger.info(
                "%s %s %s",
                request.method,
                request.path,
                response.status_code,
                extra={
                    "method": request.method,
                    "path": request.path,
                    "status": response.status_code,
                    "duration_ms": round(seconds * 1000, 1),
                    "user_id": _user_id(request),
                    "remote_addr": request.META.get("REMOTE_ADDR"),
                },
            )
            return response
        finally:
            request_id_var.reset(token)


# --- Admin-only middleware, skipped on the JSON API --------------------------------------
# The API authenticates with bearer tokens (DRF) and every view under API_PREFIX is
# a DRF view: no session, no session user, no flash messages, and DRF's views are
# csrf_exempt. The admin (and anything else outside the prefix) gets the full
# middleware. Subclasses, so Django's admin checks (admin.E408-E410) still find
# them in MIDDLEWARE.
API_PREFIX = "/api/v1/"
ADMIN_NAMESPACE = "admin"


class _SkippedOnAPI:
    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path_info.startswith(API_PREFIX):
            return self.get_response(request)  # type: ignore[attr-defined]  # a mixin of middleware
        return super().__call__(request)  # type: ignore[misc]  # the middleware's own __call__


class SessionMiddleware(_SkippedOnAPI, sessions.SessionMiddleware):
    """django.contrib.sessions' middleware, except on the API."""


class AuthenticationMiddleware(_SkippedOnAPI, auth.AuthenticationMiddleware):
    """django.contrib.auth's middleware (the session user), except on the API:
    DRF sets request.user there from the bearer token."""


class MessageMiddleware(_SkippedOnAPI, messages.MessageMiddleware):
    """django.contrib.messages' middleware, except on the API."""


class CSPMiddleware(_SkippedOnAPI, csp_middleware.CSPMiddleware):
    """django-csp's Content-Security-Policy, except on the JSON API (no HTML there)."""


class OTPMiddleware(_SkippedOnAPI, otp_middleware.OTPMiddleware):
    """django-otp's: request.user.otp_device and is_verified(), except on the API."""


class SecondFactorMiddleware:
    """No back-office view without a verified second factor.

    Every view the URL resolver finds in the admin's namespace (the admin's own,
    every ModelAdmin's and their extra views, the dashboard, autocomplete's JSON,
    the catch-all) is closed to a staff user who has given the password but no
    code yet: they are sent to the second-factor page (which sends a user with
    no device to the enrolment). Anonymous and non-staff users go to the login
    page, as the admin itself would send them. Only the pages that lead in and
    out stay open. The admin site checks the same (WalletAdminSite.has_permission):
    this holds even for a view that an app forgot to wrap in admin_view.
    """

    OPEN_VIEWS = frozenset({"login", "logout", "second_factor", "second_factor_setup"})

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_view(self, request: HttpRequest, view_func, view_args, view_kwargs):
        match = request.resolver_match
        if match is None or ADMIN_NAMESPACE not in match.namespaces:
            return None
        if match.url_name in self.OPEN_VIEWS:
            return None
        user: Any = request.user
        if user.is_active and user.is_staff and user.is_verified():
            return None
        next_url = request.get_full_path()
        if user.is_active and user.is_staff:
            target = reverse(f"{ADMIN_NAMESPACE}:second_factor")
        else:
            target = reverse(f"{ADMIN_NAMESPACE}:login")
        return HttpResponseRedirect(f"{target}?{urlencode({'next': next_url})}")
