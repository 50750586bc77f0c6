"""Small pieces every API module shares."""

import re
from decimal import Decimal
from typing import Any
from uuid import UUID

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils.text import format_lazy
from django.utils.translation import gettext_lazy as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema_field
from rest_framework import exceptions, serializers
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request

from accounts.errors import ErrorCode as AccountsErrorCode
from fees.errors import ErrorCode as FeesErrorCode
from transactions.ledger import ErrorCode as LedgerErrorCode
from transactions.ledger import IdempotencyRequest, IdempotentResponse
from transactions.webhooks import ErrorCode as WebhooksErrorCode
from wallet_project.errors import (
    DATABASE_UNAVAILABLE,
    DomainError,
    ErrorCode,
    ErrorCodes,
)
from wallets.errors import ErrorCode as WalletsErrorCode

MAX_IDEMPOTENCY_KEY_LENGTH = 255

IDEMPOTENCY_HEADER = OpenApiParameter(
    name="Idempotency-Key",
    type=str,
    location=OpenApiParameter.HEADER,
    required=False,
    description=(
        "Any unique string (a UUID is ideal), at most 255 characters. A retry with "
        "the same key and body returns the first response and moves nothing, "
        "marked `Idempotency-Replayed: true`; the same key with another body is a "
        "422."
    ),
)


def _error_classes(base: type) -> dict[str, type]:
    """`base` and its subclasses, by the code each answers with (the first class
    found for a code, the most general)."""
    code = getattr(base, "code", None) or base.default_code  # type: ignore[attr-defined]  # DRF's APIException subclasses
    found: dict[str, type] = {code: base}
    subclass: type
    for subclass in base.__subclasses__():
        for sub_code, sub in _error_classes(subclass).items():
            found.setdefault(sub_code, sub)
    return found


# What a code without an error class of its own means.
_UNCLASSED = {
    ErrorCode.BAD_REQUEST: _("400: The request could not be read."),
    ErrorCode.SERVER_ERROR: _("500: Internal server error (a bug: report it)."),
    ErrorCode.SERVICE_UNAVAILABLE: format_lazy("503: {}", DATABASE_UNAVAILABLE),
    AccountsErrorCode.BAD_AUTHORIZATION_HEADER: _(
        "401: The Authorization header is not `Bearer <token>`."
    ),
    AccountsErrorCode.USER_NOT_FOUND: _("401: The token's user no longer exists."),
    AccountsErrorCode.USER_INACTIVE: _("401: The token's user is deactivated."),
    AccountsErrorCode.PASSWORD_CHANGED: _(
        "401: The password was changed after the token was issued."
    ),
}


def _error_choices() -> list[tuple[str, Any]]:
    """Every code the API answers with, each app's enum in turn, labelled with
    its HTTP status and message (the schema's `ErrorCode` enum)."""
    classes = {
        **_error_classes(exceptions.APIException),
        **_error_classes(DomainError),
    }
    choices = []
    enums: tuple[type[ErrorCodes], ...] = (
        ErrorCode,
        AccountsErrorCode,
        WalletsErrorCode,
        LedgerErrorCode,
        WebhooksErrorCode,
        FeesErrorCode,
    )
    for enum in enums:
        for code in enum:
            cls: Any = classes.get(code)
            if cls is None:
                label = _UNCLASSED[code]
            elif issubclass(cls, DomainError):
                label = format_lazy("{}: {}", cls.status_code, cls.message)
            else:
                label = format_lazy("{}: {}", cls.status_code, cls.default_detail)
            choices.append((code.value, label))
    return choices


ERROR_CODES = _error_choices()


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()
    code = serializers.ChoiceField(choices=ERROR_CODES)


def error_response(description: str) -> OpenApiResponse:
    return OpenApiResponse(ErrorSerializer, description=description)


VALIDATION_ERROR = OpenApiResponse(
    OpenApiTypes.OBJECT, description='Invalid input: {"field": ["message"]}.'
)


# An amount given as a string: ASCII digits, no leading zeros, an optional
# fraction; no sign, exponent, spaces, separators or other scripts' digits (all of
# which Python's Decimal would read, and no other system reads the same way).
# A JSON number is read as Decimal by the parser (wallet_project.parsers).
AMOUNT_STRING = re.compile(r"(?:0|[1-9][0-9]*)(?:\.[0-9]+)?")


@extend_schema_field(
    {
        # A string (the spelling clients should use), or a JSON number, which the
        # parser reads exactly as Decimal (wallet_project.parsers).
        "oneOf": [
            {"type": "string", "pattern": r"^(0|[1-9][0-9]*)(\.[0-9]{1,2})?$"},
            {"type": "number"},
        ],
        "example": "100.50",
    }
)
class AmountField(serializers.DecimalField):
    """A positive amount, given as a JSON string (AMOUNT_STRING) or number, with
    at most two decimal places. Never rounded: too many digits is an error."""

    default_error_messages = {
        # Here, not set after __init__: DecimalField words its min_value
        # validator's message from this dict while it is being constructed.
        "min_value": _("The amount must be greater than zero."),
        "format": _(
            'Write the amount as digits with an optional decimal point, e.g. "100.50" '
            "(no sign, spaces or exponent)."
        ),
    }

    def __init__(self, **kwargs: Any) -> None:
        # Generous on digits so a huge amount is reported as "too large".
        kwargs.setdefault("max_digits", 40)
        kwargs.setdefault("decimal_places", settings.CURRENCY_DECIMAL_PLACES)
        kwargs.setdefault("min_value", Decimal("0.01"))
        kwargs.setdefault("max_value", settings.MAX_OPERATION_AMOUNT)
        kwargs.setdefault("coerce_to_string", True)
        super().__init__(**kwargs)

    def validate_empty_values(self, data: Any) -> tuple[bool, Any]:
        # DRF reads a blank JSON string as null where null is allowed (an optional
        # commission): for money a blank value is a mistake, not "no value".
        # (A blank multipart field is still "no value": get_value() maps it first.)
        if isinstance(data, str) and not data.strip():
            self.fail("invalid")
        return super().validate_empty_values(data)

    def to_internal_value(self, data: Any) -> Decimal:
        if isinstance(data, bool) or not isinstance(data, (str, int, Decimal, float)):
            self.fail("invalid")
        if isinstance(data, str) and not AMOUNT_STRING.fullmatch(data):
            self.fail("format")
        return super().to_internal_value(data)


_CENT = Decimal("0.01")


def well_formed_amount(value: Any) -> Decimal | None:
    """The amount AmountField makes of `value` when `value` is a plain amount
    string AmountField accepts as is, else None (let the serializer decide)."""
    if (
        not isinstance(value, str)
        or len(value) > 16
        or not AMOUNT_STRING.fullmatch(value)
    ):
        return None
    amount = Decimal(value)
    if amount.as_tuple().exponent < -2 or not (  # type: ignore[operator]  # AMOUNT_STRING: finite, an int exponent
        _CENT <= amount <= settings.MAX_OPERATION_AMOUNT
    ):
        return None
    return amount.quantize(_CENT)


def idempotency_request(
    request: Request | HttpRequest, *, user_id: UUID | None = None, data: Any = None
) -> IdempotencyRequest | None:
    """The request's Idempotency-Key (400 if it is blank or too long), or None.

    A DRF request brings its user and parsed body; a lean one (wallet_project.lean)
    passes them. Both give the same fingerprint for the same request."""
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    key = key.strip()
    if not key or len(key) > MAX_IDEMPOTENCY_KEY_LENGTH:
        raise ValidationError(
            {"Idempotency-Key": [_("Must be 1 to 255 characters long.")]}
        )
    if isinstance(request, Request):
        user_id, data = request.user.pk, request.data
    assert user_id is not None
    return IdempotencyRequest(
        user_id=user_id,
        key=key,
        fingerprint=IdempotencyRequest.fingerprint_of(
            request.method or "", request.path, data
        ),
    )


def idempotent_response(result: IdempotentResponse) -> HttpResponse:
    """The answer of a money-moving POST: its exact stored bytes, and on a replay
    `Idempotency-Replayed: true` (the IETF draft's and Stripe's convention)."""
    response = HttpResponse(
        result.content, status=result.status, content_type="application/json"
    )
    if result.replayed:
        response["Idempotency-Replayed"] = "true"
    return response
