"""POST wallets/{id}/operation: DEPOSIT (cash in) or WITHDRAW (cash out)."""

from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from transactions import services as ledger
from transactions.money import money_str
from wallet_project.api import IDEMPOTENCY_HEADER, error_response, idempotency_request
from wallets import selectors
from wallets.api.serializers import OperationResultSerializer, OperationSerializer
from wallets.api.views import NOT_FOUND


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
        wallet = selectors.wallet_get_for_user(user=request.user, wallet_id=wallet_id)
        data = OperationSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        operation_type = data.validated_data["operation_type"]
        amount = data.validated_data["amount"]

        def render(posting: ledger.Posting) -> dict:
            return {
                "operation_id": str(posting.transaction.id),
                "status": "SUCCESS",
                "operation_type": operation_type,
                "amount": money_str(amount, wallet.currency),
                "currency": wallet.currency,
                "new_balance": money_str(posting.balances[wallet.id], wallet.currency),
            }

        result = ledger.wallet_operation(
            wallet=wallet,
            operation_type=operation_type,
            amount=amount,
            initiator=request.user,
            request=idempotency_request(request),
            render=render,
        )
        return Response(result.body, status=result.status)
