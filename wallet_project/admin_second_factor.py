"""The back-office's second-factor pages: enrolment (a QR code drawn on the server,
no CDN, then a code to confirm it), the code asked after the password, and the
recovery codes shown once. The rules (lockout, recovery codes, audit) are in
accounts/second_factor.py; these pages only call them.

They are open to a staff user who has given the password (the admin's own
views are not, until the code: wallet_project.middleware.SecondFactorMiddleware).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from math import ceil
from typing import Any

import segno
from django import forms
from django.conf import settings
from django.contrib.admin import AdminSite
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme, urlencode
from django.utils.safestring import mark_safe
from django.utils.translation import gettext_lazy as _
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django_otp import login as otp_login

from accounts.models import User
from accounts.second_factor import (
    SecondFactorLocked,
    WrongCode,
    second_factor_enrolled,
    second_factor_verify,
    totp_device_confirm,
    totp_device_start,
    totp_secret,
)


class CodeForm(forms.Form):
    code = forms.CharField(
        label=_("Code"),
        max_length=64,
        widget=forms.TextInput(
            attrs={
                "autocomplete": "one-time-code",
                "autofocus": True,
                "autocapitalize": "none",
                "spellcheck": "false",
            }
        ),
    )


def _next_url(request: HttpRequest) -> str:
    wanted = request.POST.get("next") or request.GET.get("next") or ""
    if wanted and url_has_allowed_host_and_scheme(
        wanted,
        allowed_hosts={request.get_host()},
        require_https=request.is_secure(),
    ):
        return wanted
    return reverse("admin:index")


def _with_next(url_name: str, request: HttpRequest) -> str:
    return f"{reverse(url_name)}?{urlencode({'next': _next_url(request)})}"


def _locked_message(error: SecondFactorLocked) -> str:
    minutes = max(1, ceil((error.until - timezone.now()).total_seconds() / 60))
    return _(
        "Too many wrong codes. Try again in %(minutes)d minute(s), or ask a "
        "superuser to reset your second factor."
    ) % {"minutes": minutes}


def _wrong_message(error: WrongCode) -> str:
    return _("Wrong code. %(left)d tries left before a 15-minute lock.") % {
        "left": error.left
    }


def staff_view(site: AdminSite, view: Callable) -> Callable:
    """For a staff user who has given the password: not yet the second factor."""

    @wraps(view)
    def inner(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        user: Any = request.user  # is_verified: django-otp's OTPMiddleware
        if not (user.is_active and user.is_staff):
            login = reverse("admin:login", current_app=site.name)
            return HttpResponseRedirect(
                f"{login}?{urlencode({'next': request.get_full_path()})}"
            )
        if user.is_verified():
            return HttpResponseRedirect(_next_url(request))
        return view(request, *args, **kwargs)

    return never_cache(csrf_protect(inner))


def _page(
    site: AdminSite,
    request: HttpRequest,
    template: str,
    status: int = 200,
    **context: Any,
) -> HttpResponse:
    return TemplateResponse(
        request,
        template,
        {
            **site.each_context(request),
            "next": _next_url(request),
            "username": request.user.get_username(),
            **context,
        },
        status=status,
    )


def _operator(request: HttpRequest) -> User:
    """The staff user staff_view let in (never anonymous here)."""
    assert isinstance(request.user, User)
    return request.user


def _logged_in(request: HttpRequest, device: Any) -> None:
    # A new session id with the raised privilege: an id seen before the code
    # (a fixed or sniffed one) is worth nothing after it.
    request.session.cycle_key()
    otp_login(request, device)


def verify_view(site: AdminSite, request: HttpRequest) -> HttpResponse:
    """The code after the password: from the authenticator app, or a recovery code."""
    operator = _operator(request)
    if not second_factor_enrolled(user=operator):
        return HttpResponseRedirect(_with_next("admin:second_factor_setup", request))
    form = CodeForm(request.POST if request.method == "POST" else None)
    status = 200
    if form.is_bound and form.is_valid():
        try:
            device = second_factor_verify(user=operator, code=form.cleaned_data["code"])
        except SecondFactorLocked as error:
            form.add_error(None, _locked_message(error))
            status = 429
        except WrongCode as error:
            form.add_error("code", _wrong_message(error))
        else:
            _logged_in(request, device)
            return HttpResponseRedirect(_next_url(request))
    return _page(
        site,
        request,
        "admin/second_factor/verify.html",
        status=status,
        title=_("Second factor"),
        form=form,
    )


def setup_view(site: AdminSite, request: HttpRequest) -> HttpResponse:
    """Enrolment: scan the QR code (or type the key), confirm with a code; the
    recovery codes are then shown on this one page, never again."""
    operator = _operator(request)
    if second_factor_enrolled(user=operator):
        return HttpResponseRedirect(_with_next("admin:second_factor", request))
    device = totp_device_start(user=operator)
    form = CodeForm(request.POST if request.method == "POST" else None)
    status = 200
    if form.is_bound and form.is_valid():
        try:
            enrolment = totp_device_confirm(
                user=operator, code=form.cleaned_data["code"]
            )
        except SecondFactorLocked as error:
            form.add_error(None, _locked_message(error))
            status = 429
        except WrongCode as error:
            form.add_error("code", _wrong_message(error))
        else:
            _logged_in(request, enrolment.device)
            return _page(
                site,
                request,
                "admin/second_factor/recovery_codes.html",
                title=_("Your recovery codes"),
                recovery_codes=enrolment.recovery_codes,
            )
    secret = totp_secret(device)
    qr = segno.make(device.config_url, error="m")
    return _page(
        site,
        request,
        "admin/second_factor/setup.html",
        status=status,
        title=_("Set up the second factor"),
        form=form,
        # segno writes the SVG itself (no user input in it but the URI, escaped).
        qr_svg=mark_safe(  # noqa: S308
            qr.svg_inline(scale=5, border=2, title=settings.OTP_TOTP_ISSUER)
        ),
        secret=secret,
        secret_groups=[secret[i : i + 4] for i in range(0, len(secret), 4)],
    )
