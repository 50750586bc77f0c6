"""Lean JSON requests: the common case of an authenticated GET or JSON POST without
DRF's machinery.

DRF costs most of a cheap request's CPU before the view runs (its Request,
content negotiation, parsers, authentication classes, permission and throttle
checks, then a serializer and the renderer). A view that mixes in `LeanMixin`
answers the plain case itself: a valid bearer access token, an Accept header that
can only mean compact JSON, no `?format=`, and for a POST a small UTF-8
`application/json` body. Anything else - no or a bad token, another Accept, a
wallet that is not the caller's, a bad filter, a body the serializer must word an
error for - returns None from the lean handler and takes DRF's path, which stays
the reference: every error status and body is DRF's own, because DRF produces it
(an exception a lean POST raises is handed to the view's DRF exception handling,
never run twice).

Building blocks (usable on their own, e.g. for a lean POST):
- `bearer_user_id(request)`: the user id of a valid access token, checked exactly
  as simplejwt checks it, or None;
- `wants_plain_json(request)`: the request negotiates DRF's JSONRenderer, compact;
- `json_response(data)`: the bytes and headers DRF's JSONRenderer would send;
- `drf_datetime(value, tz)`: a datetime as DRF's DateTimeField represents it;
- `json_body(request)`: the parsed body of a plain JSON POST, as DRF's parser
  would parse it, or None;
- `LeanMixin`: the dispatch described above (lean handler, else DRF).

Its queries go through `wallet_project.db.prepared_cursor()` (planned once per
connection).
"""

import time
from datetime import UTC, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Any
from uuid import UUID

from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse
from rest_framework import HTTP_HEADER_ENCODING
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.permissions import IsAuthenticated
from rest_framework.settings import api_settings as drf_settings
from rest_framework_simplejwt.authentication import (
    AUTH_HEADER_TYPE_BYTES,
    JWTAuthentication,
)
from rest_framework_simplejwt.exceptions import InvalidToken, TokenError
from rest_framework_simplejwt.models import TokenUser
from rest_framework_simplejwt.settings import api_settings as jwt_settings

from wallet_project.parsers import loads_strict
from wallet_project.rendering import json_bytes

if TYPE_CHECKING:
    # What the mixin is mixed into: every lean view is a DRF APIView.
    from rest_framework.views import APIView as _ViewBase
else:
    _ViewBase = object

# Accept values that DRF's negotiation resolves to JSONRenderer without an
# `indent` parameter (DRF reads a missing header as */*).
_PLAIN_JSON_ACCEPTS = frozenset({None, "*/*", "application/json", "application/*"})

# Tokens already verified, by their exact bytes: (deadline, payload). A signature
# and its claims never change, so a token valid once stays valid until it expires;
# only the expiry is checked again. Access tokens are never revoked (simplejwt's
# blacklist is for refresh tokens), and the user's row is checked by each lean
# query (it must still exist and be active).
_MAX_TOKENS = 10_000
_tokens: dict[bytes, tuple[float, dict[str, Any]]] = {}


def wants_plain_json(request: HttpRequest) -> bool:
    """DRF would render this request's response with JSONRenderer, compact."""
    return (
        request.META.get("HTTP_ACCEPT") in _PLAIN_JSON_ACCEPTS
        and drf_settings.URL_FORMAT_OVERRIDE not in request.GET
    )


def _verified_payload(raw_token: bytes) -> dict[str, Any] | None:
    now = time.time()
    hit = _tokens.get(raw_token)
    if hit is not None:
        if hit[0] > now:
            return hit[1]
        _tokens.pop(raw_token, None)
        return None
    # simplejwt's own token classes: the same signature, algorithm, expiry,
    # type and id checks as JWTAuthentication.get_validated_token.
    for token_class in jwt_settings.AUTH_TOKEN_CLASSES:
        try:
            token = token_class(raw_token)
        except TokenError:
            continue
        payload = token.payload
        break
    else:
        return None
    exp = payload.get("exp")
    if not isinstance(exp, int | float):
        return None
    if len(_tokens) >= _MAX_TOKENS:
        _tokens.clear()
    # simplejwt refuses a token once exp <= now - leeway.
    leeway = jwt_settings.LEEWAY
    if isinstance(leeway, timedelta):
        leeway = leeway.total_seconds()
    _tokens[raw_token] = (exp + float(leeway), payload)
    return payload


def bearer_payload(request: HttpRequest) -> dict[str, Any] | None:
    """The claims of the request's valid bearer access token, else None (every
    case simplejwt would not authenticate: no header, another scheme, a
    malformed, forged, expired or wrong-type token)."""
    header = request.META.get(jwt_settings.AUTH_HEADER_NAME)
    if not header or jwt_settings.CHECK_REVOKE_TOKEN:
        return None
    parts = header.encode(HTTP_HEADER_ENCODING).split()
    if len(parts) != 2 or parts[0] not in AUTH_HEADER_TYPE_BYTES:
        return None
    return _verified_payload(parts[1])


def bearer_user_id(request: HttpRequest) -> UUID | None:
    """The user id of the request's valid bearer access token, else None.

    None covers every case simplejwt would not authenticate: the caller then
    lets DRF answer, with DRF's exact 401. Whether the user still exists and is
    active is the caller's to check (in the same query as its data).
    """
    payload = bearer_payload(request)
    if payload is None:
        return None
    try:
        return UUID(str(payload[jwt_settings.USER_ID_CLAIM]))
    except (KeyError, ValueError):
        return None


def drf_datetime(value: datetime | None, tz: tzinfo | None) -> str | None:
    """DRF's DateTimeField representation (ISO 8601, "Z" for UTC) of an aware
    datetime in `tz` (DRF uses the current time zone: `get_current_timezone()`)."""
    if value is None:
        return None
    if tz is not None:
        if value.tzinfo is not tz:
            value = value.astimezone(tz)
    elif value.utcoffset() is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


# A lean POST body is read whole; a larger one takes DRF's path.
_MAX_LEAN_BODY = 16 * 1024


def json_body(request: HttpRequest) -> Any | None:
    """The body of a small `application/json` (UTF-8) request, parsed as the
    project's StrictJSONParser parses it (numbers as Decimal, no NaN/Infinity),
    or None: another content type, charset or size, malformed JSON or a JSON
    null - DRF's parsers then read it again and word the error."""
    if request.content_type != "application/json":
        return None
    charset = (request.content_params or {}).get("charset")
    if charset is not None and charset.lower() not in ("utf-8", "utf8"):
        return None
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return None
    if not 0 < length <= _MAX_LEAN_BODY:
        return None
    try:
        return loads_strict(request.body.decode())
    except ValueError:  # UnicodeDecodeError and JSONDecodeError included
        return None


def json_response(
    data: Any, *, status: int = 200, headers: dict[str, str] | None = None
) -> HttpResponse:
    return HttpResponse(
        json_bytes(data),
        status=status,
        content_type="application/json",
        headers=headers,
    )


# For DRF views: answer a plain authenticated GET with `lean_get()`, a plain JSON
# POST with `lean_post()`.
#
# Lean handlers read raw rows, typed by psycopg.
#
# `lean_get(request, user_id, **kwargs)` returns an HttpResponse for the plain
# successful case, or None to let DRF's full dispatch answer (errors, anything
# unusual). It must check what DRF's path would check after authentication:
# here, that the user still exists and is active, and the permissions.
#
# `lean_post(request, user, data, **kwargs)` gets the user exactly as the view's
# JWT authentication finds it (existing and active; permissions: only views whose
# permission is IsAuthenticated and that have no throttles go lean) and the
# parsed body. It returns an HttpResponse, or None *before doing anything* to let
# DRF's full dispatch answer. Whatever it raises is answered by the view's DRF
# exception handling (a domain error's 4xx, the 503 of an unreachable database).
# (A comment, not a docstring: drf-spectacular would publish a docstring inherited
# from here as the description of every view that mixes it in.)
class LeanMixin(_ViewBase):
    def lean_get(
        self, request: HttpRequest, user_id: UUID, **kwargs: Any
    ) -> HttpResponse | None:
        return None

    def lean_post(
        self, request: HttpRequest, user: Any, data: Any, **kwargs: Any
    ) -> HttpResponse | None:
        return None

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if settings.LEAN_REQUESTS and wants_plain_json(request):
            if request.method == "GET":
                response = self._lean_get(request, *args, **kwargs)
            elif request.method == "POST":
                response = self._lean_post(request, *args, **kwargs)
            else:
                response = None
            if response is not None:
                response["Allow"] = ", ".join(self.allowed_methods)
                return response
        return super().dispatch(request, *args, **kwargs)

    def _lean_get(
        self, request: HttpRequest, *args: Any, **kwargs: Any
    ) -> HttpResponse | None:
        if not self._lean_allowed():
            return None
        user_id = bearer_user_id(request)
        if user_id is None:
            return None
        try:
            response = self.lean_get(request, user_id, **kwargs)
        except Exception as exc:  # answered as DRF answers it (a DataError: 400)
            return self._drf_error_response(request, exc, *args, **kwargs)
        if response is not None:
            # What DRF sets: the access log reads request.user.
            request.user = TokenUser({jwt_settings.USER_ID_CLAIM: user_id})  # type: ignore[arg-type, assignment]  # a TokenUser reads only the claim, as DRF's request.user
        return response

    def _lean_post(
        self, request: HttpRequest, *args: Any, **kwargs: Any
    ) -> HttpResponse | None:
        if not self._lean_allowed():
            return None
        data = json_body(request)
        if data is None:
            return None
        payload = bearer_payload(request)
        if payload is None:
            return None
        try:
            # The view's own authentication finds the user (simplejwt's checks:
            # it exists and is active); its 401s are DRF's to give.
            user = self.authentication_classes[0]().get_user(payload)
        except (AuthenticationFailed, InvalidToken):
            return None
        except (OperationalError, InterfaceError) as exc:
            return self._drf_error_response(request, exc, *args, **kwargs)
        request.user = user  # what DRF sets; the access log reads it
        try:
            return self.lean_post(request, user, data, **kwargs)
        except Exception as exc:
            return self._drf_error_response(request, exc, *args, **kwargs)

    def _lean_allowed(self) -> bool:
        authentication = self.authentication_classes
        return (
            len(authentication) == 1
            and issubclass(authentication[0], JWTAuthentication)
            and all(
                permission is IsAuthenticated for permission in self.permission_classes
            )
            and not self.throttle_classes
        )

    def _drf_error_response(
        self, request: HttpRequest, exc: Exception, *args: Any, **kwargs: Any
    ) -> HttpResponse:
        """The response DRF's dispatch gives for `exc` (e.g. the 503 of an
        unreachable database), without running the request again."""
        self.args, self.kwargs = args, kwargs
        drf_request = self.initialize_request(request, *args, **kwargs)
        self.request = drf_request
        self.headers = self.default_response_headers
        response = self.handle_exception(exc)
        self.response = self.finalize_response(drf_request, response, *args, **kwargs)
        return self.response
