from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema
from rest_framework.generics import ListAPIView, RetrieveAPIView
from rest_framework.pagination import CursorPagination

from transactions import selectors
from transactions.api.serializers import EntrySerializer, TransactionSerializer
from transactions.models import Entry, Transaction
from wallet_project.api import error_response
from wallets.selectors import wallet_get_for_user


class EntryCursorPagination(CursorPagination):
    """Keyset pagination on the entry id: every page costs the same, however deep."""

    ordering = "-id"
    page_size = 50
    page_size_query_param = "limit"
    max_page_size = 200


class EntryFilter(filters.FilterSet):
    kind = filters.ChoiceFilter(
        field_name="transaction__kind", choices=Transaction.Kind.choices
    )

    class Meta:
        model = Entry
        fields = ["kind"]


# `from` is a Python keyword, so these two are added by name.
EntryFilter.base_filters["from"] = filters.IsoDateTimeFilter(
    field_name="created_at", lookup_expr="gte", label="Entries at or after (ISO 8601)"
)
EntryFilter.base_filters["to"] = filters.IsoDateTimeFilter(
    field_name="created_at", lookup_expr="lt", label="Entries before (ISO 8601)"
)


@extend_schema(
    summary="A wallet's history (its entries, newest first)",
    responses={200: EntrySerializer(many=True), 404: error_response("No such wallet.")},
)
class WalletEntryListView(ListAPIView):
    serializer_class = EntrySerializer
    pagination_class = EntryCursorPagination
    filterset_class = EntryFilter

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation
            return Entry.objects.none()
        wallet = wallet_get_for_user(
            user=self.request.user, wallet_id=self.kwargs["wallet_id"]
        )
        return selectors.entry_list_for_wallet(wallet=wallet)


@extend_schema(summary="Your history across all your wallets, newest first")
class EntryListView(ListAPIView):
    serializer_class = EntrySerializer
    pagination_class = EntryCursorPagination
    filterset_class = EntryFilter

    def get_queryset(self):
        return selectors.entry_list_for_user(user=self.request.user)


@extend_schema(
    summary="One transaction with your legs of it",
    responses={200: TransactionSerializer, 404: error_response("No such transaction.")},
)
class TransactionDetailView(RetrieveAPIView):
    serializer_class = TransactionSerializer

    def get_object(self):
        return selectors.transaction_get_for_user(
            user=self.request.user, transaction_id=self.kwargs["transaction_id"]
        )
