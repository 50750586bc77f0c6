"""Payouts: the owner's side (`wallets/{id}/payouts/`, `payouts/{id}/`) and the
payment provider's (`service/payouts/`, service accounts only; anyone else gets
a 404)."""

from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpResponse
from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.generics import ListAPIView
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import User
from accounts.permissions import IsServiceAccount
from transactions import ledger
from transactions.api.topups import NewestFirst, OldestFirst
from transactions.ledger import PayoutNotFound
from transactions.models import Payout
from wallet_project.api import (
    IDEMPOTENCY_HEADER,
    VALIDATION_ERROR,
    AmountField,
    error_response,
    idempotency_request,
    idempotent_response,
)
from wallet_project.fields import StrictCharField
from wallets.money import money_str
from wallets.selectors import wallet_get_for_user

# --- Serializers ----------------------------------------------------------------------


class PayoutSerializer(serializers.ModelSerializer):
    wallet = serializers.UUIDField(source="wallet_id", read_only=True)
    amount = serializers.SerializerMethodField()
    currency = serializers.CharField(read_only=True)
    transaction_id = serializers.UUIDField(read_only=True, allow_null=True)

    class Meta:
        model = Payout
        fields = [
            "id",
            "wallet",
            "amount",
            "currency",
            "destination",
            "description",
            "status",
            "provider_reference",
            "failure_reason",
            "transaction_id",
            "created_at",
            "expires_at",
            "decided_at",
        ]
        read_only_fields = fields

    def get_amount(self, payout: Payout) -> str:
        return money_str(payout.amount.amount, str(payout.currency))


class PayoutCreateSerializer(serializers.Serializer):
    amount = AmountField()
    destination = StrictCharField(
        max_length=64, help_text="Where the provider sends it: a card token, an IBAN."
    )
    description = StrictCharField(
        max_length=255, required=False, allow_blank=True, default=""
    )


class PayoutDecisionSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=ledger.PAYOUT_DECISIONS)
    provider_reference = StrictCharField(
        max_length=255, required=False, allow_blank=True, default=""
    )
    reason = StrictCharField(
        max_length=255,
        required=False,
        allow_blank=True,
        default="",
        help_text="For `failed`: why (kept on the payout as `failure_reason`).",
    )


# --- Queries (scoped reads) -----------------------------------------------------------


def _payout_get(payout_id: str, *, owner: User | None = None) -> Payout:
    payouts = Payout.objects.all()
    if owner is not None:
        payouts = payouts.filter(wallet__owner=owner)
    try:
        return payouts.get(pk=payout_id)
    except (Payout.DoesNotExist, ValidationError, ValueError):  # or a malformed id
        raise PayoutNotFound() from None


class PayoutFilter(filters.FilterSet):
    status = filters.ChoiceFilter(choices=Payout.Status.choices)

    class Meta:
        model = Payout
        fields = ["status"]


# --- The owner's side -----------------------------------------------------------------

WALLET_NOT_FOUND = error_response("No such wallet among yours (`wallet_not_found`).")
PAYOUT_NOT_FOUND = error_response("No such payout among yours (`payout_not_found`).")


class WalletPayoutView(ListAPIView):
    serializer_class = PayoutSerializer
    pagination_class = NewestFirst
    filterset_class = PayoutFilter

    def get_queryset(self) -> QuerySet[Payout]:
        if getattr(self, "swagger_fake_view", False):  # schema generation
            return Payout.objects.none()
        wallet = wallet_get_for_user(
            user=self.request.user, wallet_id=self.kwargs["wallet_id"]
        )
        return Payout.objects.filter(wallet=wallet)

    @extend_schema(
        summary="A wallet's payouts, newest first",
        responses={
            200: PayoutSerializer(many=True),
            400: VALIDATION_ERROR,
            404: WALLET_NOT_FOUND,
        },
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    @extend_schema(
        summary="Pay out through the payment provider",
        description=(
            "Creates a `pending` payout and holds its amount on the wallet at once: "
            "`held` grows and `available_balance` shrinks; the balance moves only "
            "when the provider confirms it (`paid`: one `payout` transaction). "
            "Failed, canceled or expired (after PAYOUT_TTL_SECONDS), the hold is "
            "released."
        ),
        parameters=[IDEMPOTENCY_HEADER],
        request=PayoutCreateSerializer,
        responses={
            201: PayoutSerializer,
            400: error_response(
                "Invalid input, or more than the available balance "
                "(`insufficient_funds`)."
            ),
            404: WALLET_NOT_FOUND,
            409: error_response("The wallet is blocked (`wallet_blocked`)."),
            422: error_response("Idempotency-Key reused with another request."),
        },
    )
    def post(self, request: Request, wallet_id: str) -> HttpResponse:
        wallet = wallet_get_for_user(user=request.user, wallet_id=wallet_id)
        data = PayoutCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        result = ledger.idempotency_execute(
            request=idempotency_request(request),
            action=lambda: ledger.payout_create(
                wallet=wallet,
                amount=values["amount"],
                destination=values["destination"],
                description=values["description"],
                initiator=request.user,
            ),
            render=lambda payout: PayoutSerializer(payout).data,
            status=status.HTTP_201_CREATED,
        )
        return idempotent_response(result)


class PayoutDetailView(APIView):
    @extend_schema(
        summary="One of your payouts",
        responses={200: PayoutSerializer, 404: PAYOUT_NOT_FOUND},
    )
    def get(self, request: Request, payout_id: str) -> Response:
        return Response(
            PayoutSerializer(_payout_get(payout_id, owner=request.user)).data
        )


class PayoutCancelView(APIView):
    @extend_schema(
        summary="Cancel one of your pending payouts",
        description=(
            "Releases the hold. Canceling a canceled payout returns it unchanged; "
            "a payout already paid or failed is a 409 `payout_already_decided`, "
            "an expired one a 409 `payout_expired`."
        ),
        request=None,
        responses={
            200: PayoutSerializer,
            404: PAYOUT_NOT_FOUND,
            409: error_response(
                "Already decided (`payout_already_decided`) or expired "
                "(`payout_expired`)."
            ),
        },
    )
    def post(self, request: Request, payout_id: str) -> Response:
        payout = ledger.payout_cancel(payout_id=payout_id, owner=request.user)
        return Response(PayoutSerializer(payout).data)


# --- The payment provider's side ------------------------------------------------------

SERVICE_PAYOUT_NOT_FOUND = error_response(
    "No such payout (`payout_not_found`), or not a service account."
)


@extend_schema(
    summary="Provider: payouts, oldest first (filter `status=pending` for the queue)",
    responses={
        200: PayoutSerializer(many=True),
        400: VALIDATION_ERROR,
        404: error_response(
            "Not a service account: the same 404 as an unknown URL (`not_found`)."
        ),
    },
    tags=["service"],
)
class ServicePayoutListView(ListAPIView):
    permission_classes = [IsServiceAccount]
    serializer_class = PayoutSerializer
    pagination_class = OldestFirst
    filterset_class = PayoutFilter
    queryset = Payout.objects.all()


class ServicePayoutDetailView(APIView):
    permission_classes = [IsServiceAccount]

    @extend_schema(
        summary="Provider: one payout",
        responses={200: PayoutSerializer, 404: SERVICE_PAYOUT_NOT_FOUND},
        tags=["service"],
    )
    def get(self, request: Request, payout_id: str) -> Response:
        return Response(PayoutSerializer(_payout_get(payout_id)).data)

    @extend_schema(
        summary="Provider: decide a payout (paid or failed)",
        description=(
            "`paid` posts the held amount as one `payout` transaction, wallet -> the "
            "provider's system wallet, and releases the hold; `failed` releases the "
            "hold and posts nothing. Repeating the same decision returns 200 with "
            "the same body and moves nothing. The other decision, or any decision "
            "on a canceled payout, is a 409 `payout_already_decided`; on an expired "
            "one (pending longer than PAYOUT_TTL_SECONDS) a 409 `payout_expired`."
        ),
        request=PayoutDecisionSerializer,
        responses={
            200: PayoutSerializer,
            400: VALIDATION_ERROR,
            404: SERVICE_PAYOUT_NOT_FOUND,
            409: error_response(
                "Already decided (`payout_already_decided`) or expired "
                "(`payout_expired`)."
            ),
        },
        tags=["service"],
    )
    def put(self, request: Request, payout_id: str) -> Response:
        data = PayoutDecisionSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        payout = ledger.payout_decide(
            payout_id=payout_id,
            status=data.validated_data["status"],
            provider_reference=data.validated_data["provider_reference"],
            reason=data.validated_data["reason"],
            decided_by=request.user,
        )
        return Response(PayoutSerializer(payout).data)
