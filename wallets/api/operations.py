"""POST wallets/{id}/operation: DEPOSIT (cash in) or WITHDRAW (cash out)."""

import re
from decimal import Decimal
from typing import Any
from uuid import UUID

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from transactions import services as ledger
from transactions.money import money_str
from wallet_project.api import IDEMPOTENCY_HEADER, error_response, idempotency_request
from wallet_project.errors import WalletNotFound
from wallets import selectors
from wallets.api.serializers import (
    OPERATION_TYPES,
    OperationResultSerializer,
    OperationSerializer,
)
from wallets.api.views import NOT_FOUND
from wallets.models import Wallet


class WalletOperationView(APIView):
    """DEPOSIT (cash in) or WITHDRAW (cash out) on one of your wallets."""

    @extend_schema(
        summary="Deposit to or withdraw from a wallet",
        parameters=[IDEMPOTENCY_HEADER],
        request=OperationSerializer,
        responses={
            201: OperationResultSerializer,
            400: error_response(
                "Invalid input, or not enough money (`insufficient_funds`)."
            ),
            404: NOT_FOUND,
            409: error_response("WITHDRAW from a blocked wallet (`wallet_blocked`)."),
            422: error_response("Idempotency-Key reused with another request."),
        },
    )
    def post(self, request: Request, wallet_id: str) -> Response:
        try:
            wallet_uuid = UUID(wallet_id)
        except ValueError:
            raise WalletNotFound() from None
        parsed = _parse_well_formed(request.data)
        if parsed is None:
            # The serializer explains what is wrong, after a 404 for a wallet
            # that is not the caller's (as for every wallet endpoint).
            selectors.wallet_get_for_user(user=request.user, wallet_id=wallet_uuid)
            data = OperationSerializer(data=request.data)
            data.is_valid(raise_exception=True)
            parsed = (
                data.validated_data["operation_type"],
                data.validated_data["amount"],
            )
        operation_type, amount = parsed

        def render(wallet: Wallet, posting: ledger.Posting) -> dict:
            return {
                "operation_id": str(posting.transaction.id),
                "status": "SUCCESS",
                "operation_type": operation_type,
                "amount": money_str(amount, wallet.currency),
                "currency": wallet.currency,
                "new_balance": money_str(posting.balances[wallet.id], wallet.currency),
            }

        result = ledger.wallet_operation(
            wallet_id=wallet_uuid,
            owner=request.user,
            operation_type=operation_type,
            amount=amount,
            request=idempotency_request(request),
            render=render,
        )
        return Response(result.body, status=result.status)


# What OperationSerializer accepts, in its most common spelling: a known
# operation type and an amount string like "100" or "100.50".
_AMOUNT = re.compile(r"[0-9]{1,13}(?:\.[0-9]{1,2})?")
_CENT = Decimal("0.01")


def _parse_well_formed(data: Any) -> tuple[str, Decimal] | None:
    """(operation_type, amount) for a body OperationSerializer would accept
    as is, or None to let the serializer decide (and word any error)."""
    if not isinstance(data, dict) or len(data) != 2:
        return None
    operation_type = data.get("operation_type", data.get("operationType"))
    amount = data.get("amount")
    if (
        operation_type not in OPERATION_TYPES
        or not isinstance(amount, str)
        or not _AMOUNT.fullmatch(amount)
    ):
        return None
    value = Decimal(amount).quantize(_CENT)
    if not _CENT <= value <= settings.MAX_OPERATION_AMOUNT:
        return None
    return operation_type, value
