from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from transactions import services as ledger
from transactions.money import money_str
from wallet_project.api import (
    IDEMPOTENCY_HEADER,
    VALIDATION_ERROR,
    error_response,
    idempotency_request,
)
from wallets import selectors, services
from wallets.api.serializers import (
    OperationResultSerializer,
    OperationSerializer,
    WalletCreateSerializer,
    WalletSerializer,
    WalletUpdateSerializer,
)

NOT_FOUND = error_response("No such wallet among yours (`wallet_not_found`).")


@extend_schema_view(
    list=extend_schema(summary="List your wallets"),
    retrieve=extend_schema(
        summary="One of your wallets", responses={200: WalletSerializer, 404: NOT_FOUND}
    ),
    create=extend_schema(
        summary="Open a wallet in another currency",
        request=WalletCreateSerializer,
        responses={
            201: WalletSerializer,
            400: VALIDATION_ERROR,
            409: error_response(
                "You already have a wallet in this currency (`wallet_exists`)."
            ),
        },
    ),
    partial_update=extend_schema(
        summary="Rename a wallet",
        request=WalletUpdateSerializer,
        responses={200: WalletSerializer, 400: VALIDATION_ERROR, 404: NOT_FOUND},
    ),
)
class WalletViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    serializer_class = WalletSerializer
    http_method_names = ["get", "post", "patch", "head", "options"]

    def get_queryset(self):
        return selectors.wallet_list_for_user(user=self.request.user)

    def get_object(self):
        return selectors.wallet_get_for_user(
            user=self.request.user, wallet_id=self.kwargs["pk"]
        )

    def create(self, request: Request) -> Response:
        data = WalletCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        wallet = services.wallet_create(owner=request.user, **data.validated_data)
        return Response(WalletSerializer(wallet).data, status=status.HTTP_201_CREATED)

    def partial_update(self, request: Request, pk: str) -> Response:
        data = WalletUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        wallet = services.wallet_update(wallet=self.get_object(), **data.validated_data)
        return Response(WalletSerializer(wallet).data)


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
        move = (
            ledger.wallet_deposit
            if operation_type == "DEPOSIT"
            else ledger.wallet_withdraw
        )

        def render(posting: ledger.Posting) -> dict:
            return {
                "operation_id": str(posting.transaction.id),
                "status": "SUCCESS",
                "operation_type": operation_type,
                "amount": money_str(amount, wallet.currency),
                "currency": wallet.currency,
                "new_balance": money_str(posting.balances[wallet.id], wallet.currency),
            }

        result = ledger.idempotency_execute(
            request=idempotency_request(request),
            action=lambda: move(wallet=wallet, amount=amount, initiator=request.user),
            render=render,
        )
        return Response(result.body, status=result.status)
