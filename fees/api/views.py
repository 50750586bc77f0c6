from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework.generics import ListAPIView
from rest_framework.pagination import CursorPagination

from fees import selectors
from fees.api.serializers import FeeChargeSerializer
from fees.models import FeeCharge
from wallet_project.api import error_response
from wallets.selectors import wallet_get_for_user


class FeeChargeCursorPagination(CursorPagination):
    """Keyset pagination on the period (unique per wallet), newest first."""

    ordering = "-period_start"
    page_size = 50
    page_size_query_param = "limit"
    max_page_size = 200


@extend_schema(
    summary="A wallet's monthly fee charges (newest period first)",
    responses={
        200: FeeChargeSerializer(many=True),
        404: error_response("No such wallet among yours (`wallet_not_found`)."),
    },
)
class WalletFeeChargeListView(ListAPIView):
    serializer_class = FeeChargeSerializer
    pagination_class = FeeChargeCursorPagination

    def get_queryset(self) -> QuerySet[FeeCharge]:
        if getattr(self, "swagger_fake_view", False):  # schema generation
            return FeeCharge.objects.none()
        wallet = wallet_get_for_user(
            user=self.request.user, wallet_id=self.kwargs["wallet_id"]
        )
        return selectors.fee_charge_list_for_wallet(wallet=wallet)
