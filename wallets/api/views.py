from typing import Any
from uuid import UUID

from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from fees import selectors as fee_selectors
from wallet_project.api import (
    VALIDATION_ERROR,
    error_response,
)
from wallet_project.lean import LeanMixin, json_response
from wallets import selectors, services
from wallets.api.serializers import (
    WalletCreateSerializer,
    WalletSerializer,
    WalletUpdateSerializer,
    wallet_data,
)
from wallets.errors import WalletNotFound
from wallets.models import Wallet

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
        description="Partial: only the fields sent change; `{}` changes nothing.",
        request=WalletUpdateSerializer,
        responses={200: WalletSerializer, 400: VALIDATION_ERROR, 404: NOT_FOUND},
    ),
)
class WalletViewSet(
    LeanMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    serializer_class = WalletSerializer
    http_method_names = ["get", "post", "patch", "head", "options"]

    def get_queryset(self) -> QuerySet[Wallet]:
        return fee_selectors.wallet_list_for_user(user=self.request.user)

    def lean_get(
        self, request: HttpRequest, user_id: UUID, **kwargs: Any
    ) -> HttpResponse | None:
        """GET wallets/{id}/ off DRF's envelope, by the same selector and row
        builder as `retrieve`; anything else, a 404 included, takes DRF's path
        (wallet_project.lean)."""
        if self.action_map.get("get") != "retrieve":
            return None
        data = _wallet_detail(user_id, kwargs["pk"])
        return None if data is None else json_response(data)

    def retrieve(self, request: Request, pk: str) -> Response:
        data = _wallet_detail(request.user.pk, pk)
        if data is None:
            raise WalletNotFound()
        return Response(data)

    def get_object(self) -> Wallet:
        return selectors.wallet_get_for_user(
            user=self.request.user, wallet_id=self.kwargs["pk"]
        )

    def create(self, request: Request) -> Response:
        data = WalletCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        wallet = services.wallet_create(owner=request.user, **data.validated_data)
        return Response(WalletSerializer(wallet).data, status=status.HTTP_201_CREATED)

    def partial_update(self, request: Request, pk: str) -> Response:
        data = WalletUpdateSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        wallet = services.wallet_update(wallet=self.get_object(), **data.validated_data)
        return Response(WalletSerializer(wallet).data)


def _wallet_detail(user_id: UUID, wallet_id: str) -> dict | None:
    """One of the user's wallets as the API shows it (one query: the wallet, its
    fee debt, an active owner), or None: the one data path of wallet detail."""
    wallet = fee_selectors.wallet_detail_for_user_id(
        user_id=user_id, wallet_id=wallet_id
    )
    if wallet is None:
        return None
    return wallet_data(wallet, balance=wallet.balance, debt=wallet.debt)
