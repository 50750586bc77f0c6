"""POST wallets/{id}/operation: DEPOSIT (cash in) or WITHDRAW (cash out)."""

from decimal import Decimal
from typing import Any
from uuid import UUID

from django.http import HttpRequest, HttpResponse
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.views import APIView

from accounts.models import User
from transactions import ledger
from transactions.ledger import IdempotencyRequest, IdempotentResponse
from wallet_project.api import (
    IDEMPOTENCY_HEADER,
    error_response,
    idempotency_request,
    idempotent_response,
    well_formed_amount,
)
from wallet_project.lean import LeanMixin
from wallets import selectors
from wallets.api.serializers import (
    OPERATION_TYPES,
    OperationResultSerializer,
    OperationSerializer,
)
from wallets.api.views import NOT_FOUND
from wallets.errors import WalletNotFound
from wallets.models import Wallet
from wallets.money import money_str


class WalletOperationView(LeanMixin, APIView):
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
    def post(self, request: Request, wallet_id: str) -> HttpResponse:
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
        result = _operate(
            request.user, wallet_uuid, *parsed, idempotency_request(request)
        )
        return idempotent_response(result)

    def lean_post(
        self, request: HttpRequest, user: User, data: Any, **kwargs: Any
    ) -> HttpResponse | None:
        """The common, well-formed request off DRF's pipeline (wallet_project.lean);
        anything the serializer must explain takes DRF's path."""
        try:
            wallet_uuid = UUID(kwargs["wallet_id"])
        except ValueError:
            return None
        parsed = _parse_well_formed(data)
        if parsed is None:
            return None
        key = idempotency_request(request, user_id=user.pk, data=data)
        result = _operate(user, wallet_uuid, *parsed, key)
        return idempotent_response(result)


def _operate(
    user: User,
    wallet_id: UUID,
    operation_type: str,
    amount: Decimal,
    request: IdempotencyRequest | None,
) -> IdempotentResponse:
    def render(wallet: Wallet, posting: ledger.Posting) -> dict:
        return {
            "operation_id": str(posting.transaction.id),
            "status": "SUCCESS",
            "operation_type": operation_type,
            "amount": money_str(amount, wallet.currency),
            "currency": wallet.currency,
            "new_balance": money_str(posting.balances[wallet.id], wallet.currency),
        }

    return ledger.wallet_operation(
        wallet_id=wallet_id,
        owner=user,
        operation_type=operation_type,
        amount=amount,
        request=request,
        render=render,
    )


def _parse_well_formed(data: Any) -> tuple[str, Decimal] | None:
    """(operation_type, amount) for a body OperationSerializer would accept as
    is, in its most common spelling, or None to let the serializer decide (and
    word any error)."""
    if not isinstance(data, dict) or len(data) != 2:
        return None
    operation_type = data.get("operation_type", data.get("operationType"))
    amount = well_formed_amount(data.get("amount"))
    if operation_type not in OPERATION_TYPES or amount is None:
        return None
    return operation_type, amount
