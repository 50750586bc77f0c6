"""Top-ups: the owner's side (`wallets/{id}/topups/`) and the payment provider's
side (`service/topups/`, service accounts only; anyone else gets a 404)."""

from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpResponse
from django.utils.translation import gettext_lazy as _
from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.generics import ListAPIView
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import User
from accounts.permissions import IsServiceAccount
from transactions import ledger
from transactions.ledger import TopupNotFound
from transactions.models import TopUp
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


class TopUpSerializer(serializers.ModelSerializer):
    wallet = serializers.UUIDField(source="wallet_id", read_only=True)
    amount = serializers.SerializerMethodField()
    currency = serializers.CharField(read_only=True)
    commission = serializers.SerializerMethodField()
    transaction_id = serializers.UUIDField(read_only=True, allow_null=True)
    expires_at = serializers.DateTimeField(read_only=True, allow_null=True)

    class Meta:
        model = TopUp
        fields = [
            "id",
            "wallet",
            "amount",
            "currency",
            "status",
            "commission",
            "provider_reference",
            "transaction_id",
            "created_at",
            "decided_at",
            "expires_at",
        ]
        read_only_fields = fields

    def get_amount(self, topup: TopUp) -> str:
        return money_str(topup.amount.amount, str(topup.currency))

    def get_commission(self, topup: TopUp) -> str | None:
        if topup.commission is None:
            return None
        return money_str(topup.commission, str(topup.currency))


class TopUpCreateSerializer(serializers.Serializer):
    amount = AmountField()


class CommissionField(AmountField):
    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("min_value", Decimal(0))
        super().__init__(**kwargs)
        self.error_messages["min_value"] = _("The commission must not be negative.")


class TopUpDecisionSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=ledger.TOPUP_DECISIONS)
    commission = CommissionField(
        required=False,
        allow_null=True,
        help_text=(
            "For `paid`: the provider's commission, taken from the credited amount "
            "(0 <= commission <= amount). Default: TOPUP_COMMISSION_PERCENT of the "
            "amount. Ignored for `rejected`."
        ),
    )
    provider_reference = StrictCharField(
        max_length=255, required=False, allow_blank=True, default=""
    )


class TopUpReversalSerializer(serializers.Serializer):
    amount = AmountField(
        required=False,
        allow_null=True,
        help_text="In the top-up's currency; default: all that is left to reverse.",
    )
    reason = StrictCharField(max_length=255)


class ReversalSerializer(serializers.Serializer):
    """A posted reversal as its requester sees it."""

    transaction_id = serializers.UUIDField(source="transaction.id")
    reverses = serializers.UUIDField(source="transaction.reverses_id")
    amount = serializers.CharField(source="transaction.metadata.reversed_amount")
    currency = serializers.CharField(source="transaction.metadata.currency")
    reason = serializers.CharField(source="transaction.metadata.reason")
    created_at = serializers.DateTimeField(source="transaction.created_at")


# --- Queries (scoped reads) -----------------------------------------------------------


def _topups_of_wallet(*, user: User, wallet_id: str) -> QuerySet[TopUp]:
    wallet = wallet_get_for_user(user=user, wallet_id=wallet_id)
    return TopUp.objects.filter(wallet=wallet)


def _topup_get(topup_id: str) -> TopUp:
    try:
        return TopUp.objects.get(pk=topup_id)
    except (TopUp.DoesNotExist, ValidationError, ValueError):  # or a malformed id
        raise TopupNotFound() from None


class TopUpFilter(filters.FilterSet):
    status = filters.ChoiceFilter(choices=TopUp.Status.choices)

    class Meta:
        model = TopUp
        fields = ["status"]


class NewestFirst(CursorPagination):
    ordering = "-created_at"
    page_size = 50
    page_size_query_param = "limit"
    max_page_size = 200


class OldestFirst(NewestFirst):
    """The provider's queue: a top-up decided while paging does not shift the
    pages after it (keyset, not offset)."""

    ordering = "created_at"


# --- The owner's side -----------------------------------------------------------------

WALLET_NOT_FOUND = error_response("No such wallet among yours (`wallet_not_found`).")


class WalletTopUpView(ListAPIView):
    serializer_class = TopUpSerializer
    pagination_class = NewestFirst
    filterset_class = TopUpFilter

    def get_queryset(self) -> QuerySet[TopUp]:
        if getattr(self, "swagger_fake_view", False):  # schema generation
            return TopUp.objects.none()
        return _topups_of_wallet(
            user=self.request.user, wallet_id=self.kwargs["wallet_id"]
        )

    @extend_schema(
        summary="A wallet's top-ups, newest first",
        responses={
            200: TopUpSerializer(many=True),
            400: VALIDATION_ERROR,
            404: WALLET_NOT_FOUND,
        },
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    @extend_schema(
        summary="Start a top-up through the payment provider",
        description=(
            "Creates a `pending` top-up; no money moves until the provider confirms "
            "it (`paid`), and then the wallet is credited the amount less the "
            "provider's commission. A blocked wallet may be topped up."
        ),
        parameters=[IDEMPOTENCY_HEADER],
        request=TopUpCreateSerializer,
        responses={
            201: TopUpSerializer,
            400: VALIDATION_ERROR,
            404: WALLET_NOT_FOUND,
            422: error_response("Idempotency-Key reused with another request."),
        },
    )
    def post(self, request: Request, wallet_id: str) -> HttpResponse:
        wallet = wallet_get_for_user(user=request.user, wallet_id=wallet_id)
        data = TopUpCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        amount = data.validated_data["amount"]
        result = ledger.idempotency_execute(
            request=idempotency_request(request),
            action=lambda: ledger.topup_create(
                wallet=wallet, amount=amount, initiator=request.user
            ),
            render=lambda topup: TopUpSerializer(topup).data,
            status=status.HTTP_201_CREATED,
        )
        return idempotent_response(result)


# --- The payment provider's side ------------------------------------------------------

SERVICE_ONLY = error_response(
    "Not a service account: the same 404 as an unknown URL (`not_found`)."
)


@extend_schema(
    summary="Provider: top-ups, oldest first (filter `status=pending` for the queue)",
    responses={
        200: TopUpSerializer(many=True),
        400: VALIDATION_ERROR,
        404: SERVICE_ONLY,
    },
    tags=["service"],
)
class ServiceTopUpListView(ListAPIView):
    permission_classes = [IsServiceAccount]
    serializer_class = TopUpSerializer
    pagination_class = OldestFirst
    filterset_class = TopUpFilter
    queryset = TopUp.objects.all()


class ServiceTopUpDetailView(APIView):
    permission_classes = [IsServiceAccount]

    @extend_schema(
        summary="Provider: one top-up",
        responses={
            200: TopUpSerializer,
            404: error_response(
                "No such top-up (`topup_not_found`), or not a service account."
            ),
        },
        tags=["service"],
    )
    def get(self, request: Request, topup_id: str) -> Response:
        return Response(TopUpSerializer(_topup_get(topup_id)).data)

    @extend_schema(
        summary="Provider: decide a top-up (paid or rejected)",
        description=(
            "`paid` credits the wallet from the provider's system wallet and moves "
            "the commission to the fees wallet, in one transaction; `rejected` moves "
            "nothing. Repeating the same decision returns 200 with the same body and "
            "moves nothing. The other decision on a decided top-up is a 409 "
            "`topup_already_decided`; any decision on an expired top-up (pending "
            "longer than TOPUP_TTL) is a 409 `topup_expired`."
        ),
        request=TopUpDecisionSerializer,
        responses={
            200: TopUpSerializer,
            400: error_response(
                "Invalid input, or a commission outside [0, amount] "
                "(`invalid_commission`)."
            ),
            404: error_response(
                "No such top-up (`topup_not_found`), or not a service account."
            ),
            409: error_response(
                "Already decided the other way (`topup_already_decided`) or expired "
                "(`topup_expired`)."
            ),
        },
        tags=["service"],
    )
    def put(self, request: Request, topup_id: str) -> Response:
        data = TopUpDecisionSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        topup = ledger.topup_decide(
            topup_id=topup_id,
            status=data.validated_data["status"],
            commission=data.validated_data.get("commission"),
            provider_reference=data.validated_data["provider_reference"],
            decided_by=request.user,
        )
        return Response(TopUpSerializer(topup).data)


class ServiceTopUpReversalView(APIView):
    permission_classes = [IsServiceAccount]

    @extend_schema(
        summary="Provider: reverse a paid top-up (a chargeback), fully or in part",
        description=(
            "Posts a `reversal` transaction at once: every leg of the top-up's "
            "transaction mirrored (in proportion for a partial amount, the "
            "commission included), never more in total than the top-up. The "
            "wallet must have the available funds. With an Idempotency-Key a "
            "retry returns the first answer and moves nothing."
        ),
        parameters=[IDEMPOTENCY_HEADER],
        request=TopUpReversalSerializer,
        responses={
            201: ReversalSerializer,
            400: error_response(
                "Invalid input, or the top-up is not paid (`reversal_not_allowed`)."
            ),
            404: error_response(
                "No such top-up (`topup_not_found`), or not a service account."
            ),
            409: error_response(
                "More than is left to reverse (`reversal_exceeds_original`), or the "
                "wallet cannot give the money back (`insufficient_funds`)."
            ),
            422: error_response("Idempotency-Key reused with another request."),
        },
        tags=["service"],
    )
    def post(self, request: Request, topup_id: str) -> HttpResponse:
        data = TopUpReversalSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        result = ledger.idempotency_execute(
            request=idempotency_request(request),
            action=lambda: ledger.topup_reverse(
                topup_id=topup_id,
                amount=data.validated_data.get("amount"),
                reason=data.validated_data["reason"],
                initiator=request.user,
            ),
            render=lambda posting: ReversalSerializer(posting).data,
            status=status.HTTP_201_CREATED,
        )
        return idempotent_response(result)
