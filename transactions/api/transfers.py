"""POST /api/v1/transfers/: send money to any wallet by number, converted across
currencies; between the caller's own wallets of different currencies it is an
exchange."""

from collections.abc import Mapping
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.views import APIView

from accounts.models import User
from transactions import ledger
from transactions.ledger import IdempotencyRequest, IdempotentResponse
from transactions.models import Transaction
from wallet_project.api import (
    IDEMPOTENCY_HEADER,
    AmountField,
    error_response,
    idempotency_request,
    idempotent_response,
    well_formed_amount,
)
from wallet_project.fields import StrictCharField
from wallet_project.lean import LeanMixin


class TransferSerializer(serializers.Serializer):
    from_wallet = serializers.CharField(
        max_length=64,
        help_text=_("One of your wallets: its id, or its 16-digit number."),
    )
    to_wallet_number = serializers.CharField(
        max_length=32, help_text=_("The 16-digit number of the receiving wallet.")
    )
    amount = AmountField(help_text=_("In the source wallet's currency."))
    description = StrictCharField(
        max_length=255, required=False, allow_blank=True, default=""
    )


class TransferResultSerializer(serializers.Serializer):
    transaction_id = serializers.UUIDField()
    kind = serializers.ChoiceField(
        choices=[Transaction.Kind.TRANSFER, Transaction.Kind.EXCHANGE]
    )
    amount = serializers.CharField(help_text=_("Debited, in `currency`."))
    currency = serializers.CharField()
    credited_amount = serializers.CharField(
        help_text=_("Credited, in `credited_currency`.")
    )
    credited_currency = serializers.CharField()
    rate = serializers.CharField(
        help_text=_("1 `currency` = `rate` `credited_currency` (10 decimal places).")
    )
    spread_bps = serializers.IntegerField(
        help_text=_(
            "The house's spread on a conversion, in basis points of the converted "
            "amount (FX_SPREAD_BPS); 0 within one currency."
        )
    )
    spread = serializers.CharField(
        help_text=_(
            "What the house kept, in `credited_currency`: amount x rate, rounded "
            "toward zero, minus `credited_amount`."
        )
    )


def render_transfer(posting: ledger.Posting) -> dict:
    metadata = posting.transaction.metadata
    return {
        "transaction_id": str(posting.transaction.id),
        "kind": posting.transaction.kind,
        "amount": metadata["amount"],
        "currency": metadata["currency"],
        "credited_amount": metadata["credited_amount"],
        "credited_currency": metadata["credited_currency"],
        "rate": metadata["rate"],
        "spread_bps": metadata["spread_bps"],
        "spread": metadata["spread"],
    }


class TransferView(LeanMixin, APIView):
    @extend_schema(
        summary="Transfer to any wallet by number, or exchange between your wallets",
        description=(
            "`amount` is in the source wallet's currency. Across currencies it is "
            "converted at the current rate less the house's spread (`spread_bps`), "
            "rounded toward zero to the target currency's minor unit. Between two of your own wallets in different "
            "currencies the transaction's kind is `exchange`. A blocked destination "
            "still receives."
        ),
        parameters=[IDEMPOTENCY_HEADER],
        request=TransferSerializer,
        responses={
            201: TransferResultSerializer,
            400: error_response(
                "Invalid input, the same wallet on both sides (`same_wallet`), or "
                "not enough money (`insufficient_funds`)."
            ),
            404: error_response(
                "The source is not one of your wallets, or no wallet has that "
                "number (`wallet_not_found`)."
            ),
            409: error_response("The source wallet is blocked (`wallet_blocked`)."),
            422: error_response("Idempotency-Key reused with another request."),
            503: error_response(
                "No current exchange rate for the conversion (`rate_unavailable`)."
            ),
        },
        examples=[
            OpenApiExample(
                "Exchange 100 USD to KZT",
                value={
                    "transaction_id": "0b7f8a4e-8d1c-4f4e-9b7e-3f0f2f6a1c55",
                    "kind": "exchange",
                    "amount": "100.00",
                    "currency": "USD",
                    "credited_amount": "49750.00",
                    "credited_currency": "KZT",
                    "rate": "500.0000000000",
                    "spread_bps": 50,
                    "spread": "250.00",
                },
                response_only=True,
            )
        ],
    )
    def post(self, request: Request) -> HttpResponse:
        data = _parse_well_formed(request.data)
        if data is None:
            serializer = TransferSerializer(data=request.data)
            serializer.is_valid(raise_exception=True)
            data = serializer.validated_data
        result = _transfer(request.user, data, idempotency_request(request))
        return idempotent_response(result)

    def lean_post(
        self, request: HttpRequest, user: User, data: Any, **kwargs: Any
    ) -> HttpResponse | None:
        """The common, well-formed request off DRF's pipeline (wallet_project.lean);
        anything the serializer must explain takes DRF's path."""
        fields = _parse_well_formed(data)
        if fields is None:
            return None
        key = idempotency_request(request, user_id=user.pk, data=data)
        result = _transfer(user, fields, key)
        return idempotent_response(result)


def _transfer(
    user: User, data: Mapping[str, Any], request: IdempotencyRequest | None
) -> IdempotentResponse:
    return ledger.transfer_execute(
        owner=user,
        source_reference=data["from_wallet"],
        destination_number=data["to_wallet_number"].strip(),
        amount=data["amount"],
        description=data["description"],
        request=request,
        render=render_transfer,
    )


_REQUIRED = frozenset({"from_wallet", "to_wallet_number", "amount"})
_KNOWN = _REQUIRED | {"description"}
_MAX_LENGTHS = {"from_wallet": 64, "to_wallet_number": 32, "description": 255}


def _parse_well_formed(data: Any) -> dict[str, Any] | None:
    """TransferSerializer's validated data for a body it would accept as is, in
    its most common spelling (plain strings with nothing to trim, an amount
    string), or None to let the serializer decide (and word any error)."""
    if not isinstance(data, dict) or not _REQUIRED <= data.keys() <= _KNOWN:
        return None
    amount = well_formed_amount(data["amount"])
    if amount is None:
        return None
    fields: dict[str, Any] = {"amount": amount}
    for name, max_length in _MAX_LENGTHS.items():
        value = data.get(name, "")
        if (
            not isinstance(value, str)
            or not (value or name == "description")
            or len(value) > max_length
            or value != value.strip()
            or not value.isprintable()  # no NUL or lone surrogate
        ):
            return None
        fields[name] = value
    return fields
