"""The caller's events (`GET events/`): the outbox as its owner sees it,
oldest first in commit order, in cursor pages. A client that was offline
catches up with `after=<the last event id it saw>`, without webhooks."""

from uuid import UUID

from django.utils.translation import gettext_lazy as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param
from rest_framework.views import APIView

from transactions import webhooks
from transactions.models import Event
from wallet_project.api import VALIDATION_ERROR
from wallets.errors import WalletNotFound
from wallets.selectors import wallet_get_for_user

PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
MAX_EVENT_ID = 2**63 - 1


class EventSerializer(serializers.Serializer):
    """An event as the list and every webhook delivery show it (one function,
    `webhooks.event_payload`, renders both)."""

    id = serializers.IntegerField(help_text="Increasing, but not in commit order.")
    type = serializers.ChoiceField(choices=Event.Type.choices)
    created_at = serializers.DateTimeField()
    wallet_id = serializers.UUIDField()
    sequence = serializers.IntegerField(
        help_text="1, 2, 3... per wallet, no gaps: order a wallet's events by it."
    )
    data = serializers.DictField(
        help_text=(
            "What changed: for `transaction.posted` the entry as the wallet's "
            "history shows it, with its `transaction_id`; for top-ups, payouts, "
            "wallets and fees the object as its own endpoint shows it."
        )
    )

    def to_representation(self, instance: Event) -> dict:
        return webhooks.event_payload(instance)


class EventQuerySerializer(serializers.Serializer):
    type = serializers.ListField(
        child=serializers.ChoiceField(choices=Event.Type.choices),
        required=False,
        allow_empty=True,
    )
    wallet = serializers.UUIDField(required=False)
    after = serializers.IntegerField(
        required=False, min_value=1, max_value=MAX_EVENT_ID
    )
    limit = serializers.IntegerField(
        required=False, min_value=1, max_value=MAX_PAGE_SIZE, default=PAGE_SIZE
    )

    def validate_wallet(self, value: UUID) -> UUID:
        try:
            wallet_get_for_user(user=self.context["user"], wallet_id=value)
        except WalletNotFound:
            raise serializers.ValidationError(
                WalletNotFound.message, code=WalletNotFound.code
            ) from None
        return value

    def validate_after(self, value: int) -> tuple[int, int]:
        position = webhooks.event_position_for_user(
            user=self.context["user"], event_id=value
        )
        if position is None:
            raise serializers.ValidationError(
                _(
                    "No such event among yours: give the id of an event this "
                    "list returned."
                ),
                code="event_not_found",
            )
        return position


def _query(request: Request) -> dict:
    params = {
        key: request.query_params.getlist(key) if key == "type" else value
        for key, value in request.query_params.items()
        if key in {"type", "wallet", "after", "limit"}
    }
    query = EventQuerySerializer(data=params, context={"user": request.user})
    query.is_valid(raise_exception=True)
    return query.validated_data


_SCHEMA = extend_schema(
    operation_id="events_list",
    summary="Your events, oldest first (catch up with `after`)",
    description=(
        "Every change to your wallets that a webhook would tell you about, in the "
        "order they were committed: `transaction.posted`, `topup.*`, `payout.*`, "
        "`wallet.blocked|unblocked`, `fee.charged`. A page holds at most `limit` "
        "events; `next` is the URL of the following page, or null when you have "
        "them all: poll again later with `after=<the last id you saw>`. An event "
        "appears once the transaction that wrote it, and every one that began "
        "before it, has ended (so paging never skips one)."
    ),
    parameters=[
        OpenApiParameter(
            "type",
            OpenApiTypes.STR,
            enum=Event.Type.values,
            many=True,
            explode=True,
            description="Only events of these types (repeat the parameter).",
        ),
        OpenApiParameter(
            "wallet", OpenApiTypes.UUID, description="Only the events of this wallet."
        ),
        OpenApiParameter(
            "after",
            OpenApiTypes.INT64,
            description=(
                "Only events after this one (an id from this list; another user's "
                "or an unknown id is a 400)."
            ),
        ),
        OpenApiParameter(
            "limit",
            OpenApiTypes.INT,
            description=f"Events per page, 1 to {MAX_PAGE_SIZE} (default {PAGE_SIZE}).",
        ),
    ],
    responses={
        200: inline_serializer(
            "EventPage",
            {
                "next": serializers.URLField(allow_null=True),
                "results": EventSerializer(many=True),
            },
        ),
        400: VALIDATION_ERROR,
    },
)


class EventListView(APIView):
    @_SCHEMA
    def get(self, request: Request) -> Response:
        query = _query(request)
        limit = query["limit"]
        events = webhooks.event_list_for_user(
            user=request.user,
            after=query.get("after"),
            types=query.get("type") or (),
            wallet_id=query.get("wallet"),
            limit=limit + 1,
        )
        page = events[:limit]
        next_url = None
        if len(events) > limit:
            next_url = replace_query_param(
                request.build_absolute_uri(), "after", page[-1].id
            )
        return Response(
            {"next": next_url, "results": EventSerializer(page, many=True).data}
        )
