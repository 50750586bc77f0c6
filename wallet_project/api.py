"""Small pieces every API module shares."""

from decimal import Decimal

from django.conf import settings
from django.utils.translation import gettext_lazy as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema_field
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request

from transactions.services import IdempotencyRequest

MAX_IDEMPOTENCY_KEY_LENGTH = 255

IDEMPOTENCY_HEADER = OpenApiParameter(
    name="Idempotency-Key",
    type=str,
    location=OpenApiParameter.HEADER,
    required=False,
    description=(
        "Any unique string (a UUID is ideal), at most 255 characters. A retry with "
        "the same key and body returns the first response and moves nothing; the "
        "same key with another body is a 422."
    ),
)


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()
    code = serializers.CharField()


def error_response(description: str) -> OpenApiResponse:
    return OpenApiResponse(ErrorSerializer, description=description)


VALIDATION_ERROR = OpenApiResponse(
    OpenApiTypes.OBJECT, description='Invalid input: {"field": ["message"]}.'
)


@extend_schema_field(
    {"type": "string", "pattern": r"^\d+(\.\d{1,2})?$", "example": "100.50"}
)
class AmountField(serializers.DecimalField):
    """A positive amount, given as a JSON string or number, with at most two
    decimal places. Never rounded: too many digits is an error."""

    def __init__(self, **kwargs):
        # Generous on digits so a huge amount is reported as "too large".
        kwargs.setdefault("max_digits", 40)
        kwargs.setdefault("decimal_places", settings.CURRENCY_DECIMAL_PLACES)
        kwargs.setdefault("min_value", Decimal("0.01"))
        kwargs.setdefault("max_value", settings.MAX_OPERATION_AMOUNT)
        kwargs.setdefault("coerce_to_string", True)
        super().__init__(**kwargs)
        self.error_messages["min_value"] = _("The amount must be greater than zero.")

    def validate_empty_values(self, data):
        # DRF reads a blank JSON string as null where null is allowed (an optional
        # commission): for money a blank value is a mistake, not "no value".
        # (A blank multipart field is still "no value": get_value() maps it first.)
        if isinstance(data, str) and not data.strip():
            self.fail("invalid")
        return super().validate_empty_values(data)

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, (str, int, Decimal, float)):
            self.fail("invalid")
        return super().to_internal_value(data)


def idempotency_request(request: Request) -> IdempotencyRequest | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    key = key.strip()
    if not key or len(key) > MAX_IDEMPOTENCY_KEY_LENGTH:
        raise ValidationError(
            {"Idempotency-Key": [_("Must be 1 to 255 characters long.")]}
        )
    return IdempotencyRequest(
        user_id=request.user.pk,
        key=key,
        fingerprint=IdempotencyRequest.fingerprint_of(
            request.method or "", request.path, request.data
        ),
    )
