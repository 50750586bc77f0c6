from typing import Any
from uuid import UUID

from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django_filters import rest_framework as filters
from django_filters.utils import translate_validation
from drf_spectacular.utils import extend_schema
from rest_framework.exceptions import APIException, NotFound
from rest_framework.generics import ListAPIView, RetrieveAPIView
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response

from transactions import selectors
from transactions.api.serializers import (
    EntrySerializer,
    TransactionSerializer,
    entry_page_data,
)
from transactions.models import Entry, Transaction
from wallet_project.api import error_response
from wallet_project.filters import DatabaseDateTimeFilter
from wallet_project.lean import LeanMixin, json_response
from wallet_project.replica import replica_reads
from wallets.errors import WalletNotFound
from wallets.selectors import wallet_get_for_user

BIGINT = range(-(2**63), 2**63)


class EntryCursorPagination(CursorPagination):
    """Keyset pagination on the entry id: every page costs the same, however deep."""

    ordering = "-id"
    page_size = 50
    page_size_query_param = "limit"
    max_page_size = 200

    def decode_cursor(self, request: Request) -> Any:
        # A cursor is the client's to tamper with: a position that is not an
        # entry id is an invalid cursor (404), not a failed query.
        cursor = super().decode_cursor(request)
        if cursor is not None and cursor.position is not None:
            try:
                valid = int(cursor.position) in BIGINT
            except ValueError:
                valid = False
            if not valid:
                raise NotFound(self.invalid_cursor_message)
        return cursor


class EntryFilter(filters.FilterSet):
    kind = filters.ChoiceFilter(
        field_name="transaction__kind", choices=Transaction.Kind.choices
    )

    class Meta:
        model = Entry
        fields = ["kind"]


# `from` is a Python keyword, so these two are added by name. Both history paths
# (lean and DRF's) validate them with this FilterSet: one check of what the
# database can compare.
EntryFilter.base_filters["from"] = DatabaseDateTimeFilter(
    field_name="created_at", lookup_expr="gte", label="Entries at or after (ISO 8601)"
)
EntryFilter.base_filters["to"] = DatabaseDateTimeFilter(
    field_name="created_at", lookup_expr="lt", label="Entries before (ISO 8601)"
)


class _EntryPage:
    """The slice of the QuerySet API that DRF's CursorPagination uses (order_by,
    filter on the id, one slice), answered by one keyset query
    (`entry_page_for_user_wallet`), so the cursor semantics and links stay
    DRF's own. Rows come back as their JSON representation (dicts: the
    paginator reads their "id")."""

    def __init__(self, *, user_id: UUID, wallet_id: UUID, filters: dict) -> None:
        self.user_id, self.wallet_id, self.filters = user_id, wallet_id, filters
        self.ascending = False
        self.before: int | None = None
        self.after: int | None = None
        self.found = False

    def order_by(self, *ordering: str) -> "_EntryPage":
        if ordering not in (("-id",), ("id",)):
            raise ValueError(f"unsupported ordering {ordering}")
        self.ascending = ordering == ("id",)
        return self

    def filter(self, **lookup: str) -> "_EntryPage":
        ((name, position),) = lookup.items()
        if name == "id__lt":
            self.before = int(position)
        elif name == "id__gt":
            self.after = int(position)
        else:
            raise ValueError(f"unsupported filter {name}")
        return self

    def __getitem__(self, window: slice) -> list[dict]:
        rows = selectors.entry_page_for_user_wallet(
            user_id=self.user_id,
            wallet_id=self.wallet_id,
            before=self.before,
            after=self.after,
            limit=window.stop - window.start,
            offset=window.start,
            **self.filters,
        )
        if rows is None:
            return []
        self.found = True
        return entry_page_data(
            rows, wallet_id=str(self.wallet_id), tz=timezone.get_current_timezone()
        )


# Query parameters of EntryFilter, and the selector argument each one sets.
_FILTER_ARGUMENTS = {"kind": "kind", "from": "since", "to": "until"}


@extend_schema(
    summary="A wallet's history (its entries, newest first)",
    responses={200: EntrySerializer(many=True), 404: error_response("No such wallet.")},
)
class WalletEntryListView(LeanMixin, ListAPIView):
    serializer_class = EntrySerializer
    pagination_class = EntryCursorPagination
    filterset_class = EntryFilter

    @replica_reads
    def lean_get(
        self, request: HttpRequest, user_id: UUID, **kwargs: Any
    ) -> HttpResponse | None:
        """The page off DRF's envelope, by the same code as `list`; anything
        DRF would refuse (a foreign wallet, a bad filter or cursor) takes DRF's
        path (wallet_project.lean)."""
        try:
            wallet_id = UUID(kwargs["wallet_id"])
            body = _wallet_entry_page(self, Request(request), user_id, wallet_id)
        except (ValueError, APIException):
            return None
        return None if body is None else json_response(body)

    @replica_reads
    def list(self, request: Request, wallet_id: str) -> Response:
        wallet = wallet_get_for_user(user=request.user, wallet_id=wallet_id)
        body = _wallet_entry_page(self, request, request.user.pk, wallet.id)
        if body is None:  # gone since: as for any wallet that is not yours
            raise WalletNotFound()
        return Response(body)

    def get_queryset(self) -> QuerySet[Entry]:
        # Only for the schema (the filters' model); `list` reads by keyset.
        return Entry.objects.none()


def _wallet_entry_page(
    view: WalletEntryListView, request: Request, user_id: UUID, wallet_id: UUID
) -> dict | None:
    """One page of a wallet's history, the one data path of both envelopes:
    the filters checked by EntryFilter (a ValidationError as DRF's filter
    backend words it), one keyset query (`entry_page_for_user_wallet`: ownership,
    filters and cursor in it) through DRF's own CursorPagination. None when the
    wallet is not the user's."""
    filters: dict = {}
    if any(request.query_params.get(name) for name in _FILTER_ARGUMENTS):
        filterset = EntryFilter(request.query_params, queryset=Entry.objects.none())
        if not filterset.is_valid():
            raise translate_validation(filterset.errors)
        for name, argument in _FILTER_ARGUMENTS.items():
            if filterset.form.cleaned_data.get(name) not in (None, ""):
                filters[argument] = filterset.form.cleaned_data[name]
    entries = _EntryPage(user_id=user_id, wallet_id=wallet_id, filters=filters)
    paginator = view.pagination_class()
    page = paginator.paginate_queryset(entries, request, view=view)
    if not entries.found:
        return None
    return {
        "next": paginator.get_next_link(),
        "previous": paginator.get_previous_link(),
        "results": page,
    }


@extend_schema(summary="Your history across all your wallets, newest first")
class EntryListView(ListAPIView):
    serializer_class = EntrySerializer
    pagination_class = EntryCursorPagination
    filterset_class = EntryFilter

    @replica_reads
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    def get_queryset(self) -> QuerySet[Entry]:
        return selectors.entry_list_for_user(user=self.request.user)


@extend_schema(
    summary="One transaction with your legs of it",
    responses={200: TransactionSerializer, 404: error_response("No such transaction.")},
)
class TransactionDetailView(RetrieveAPIView):
    serializer_class = TransactionSerializer

    def get_object(self) -> Transaction:
        return selectors.transaction_get_for_user(
            user=self.request.user, transaction_id=self.kwargs["transaction_id"]
        )
