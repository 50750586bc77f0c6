"""Throttles for the public account endpoints, in the Redis cache: one per client
IP and one per account (the email or phone number a request names). Rates come
from REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"] (THROTTLE_<SCOPE> in the env)."""

import hashlib
from collections.abc import Mapping
from typing import Any

from django.core.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle
from rest_framework.views import APIView

from accounts.models import normalize_email
from accounts.phones import phone_number_normalize
from accounts.selectors import verification_session_email


class _ScopedThrottle(SimpleRateThrottle):
    cache_format = "throttle:%(scope)s:%(ident)s"

    def get_rate(self) -> str | None:
        # Read per request (not once at import), so a settings change applies.
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)

    def identity(self, request: Request, view: APIView) -> str | None:
        raise NotImplementedError

    def get_cache_key(self, request: Request, view: APIView) -> str | None:
        ident = self.identity(request, view)
        if not ident:
            return None
        digest = hashlib.sha256(ident.encode()).hexdigest()[:32]
        return self.cache_format % {"scope": self.scope, "ident": digest}


class IPThrottle(_ScopedThrottle):
    def identity(self, request: Request, view: APIView) -> str | None:
        return self.get_ident(request)


def _data(request: Request) -> Mapping[str, Any]:
    return request.data if isinstance(request.data, Mapping) else {}


class AccountThrottle(_ScopedThrottle):
    """Keyed by the email (or phone number, or session's email) in the body."""

    def identity(self, request: Request, view: APIView) -> str | None:
        data = _data(request)
        email = data.get("email")
        if isinstance(email, str) and email.strip():
            return f"email:{normalize_email(email)}"
        phone = data.get("phone_number")
        if isinstance(phone, str) and phone.strip():
            try:
                return f"phone:{phone_number_normalize(phone)}"
            except ValidationError:
                return f"phone:{phone.strip()}"
        session_id = data.get("session_id")
        if isinstance(session_id, str):
            email = verification_session_email(session_id=session_id)
            if email:
                return f"email:{email}"
        return None


class UserThrottle(_ScopedThrottle):
    def identity(self, request: Request, view: APIView) -> str | None:
        user = getattr(request, "user", None)
        return f"user:{user.pk}" if user is not None and user.pk else None


def throttles(*scopes: str) -> list[type[_ScopedThrottle]]:
    """Throttle classes for scopes named `<name>_ip`, `<name>_account` or
    `<name>_user`."""
    kinds = {"ip": IPThrottle, "account": AccountThrottle, "user": UserThrottle}
    return [
        type(
            f"{scope.title().replace('_', '')}Throttle",
            (kinds[scope.rsplit("_", 1)[1]],),
            {"scope": scope},
        )
        for scope in scopes
    ]
