"""Reads of events and webhook endpoints, each scoped to its owner."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from django.db.models import BooleanField, QuerySet
from django.db.models.expressions import RawSQL

from accounts.models import User
from transactions import ledger
from transactions.models import Event, WebhookEndpoint
from transactions.webhooks.errors import WebhookEndpointNotFound

# Events in commit order, only those no running transaction can precede
# (transactions.ledger.EVENTS_VISIBLE_SQL): a reader that pages on (txid, id)
# never skips an event that commits later.
_VISIBLE = RawSQL(ledger.EVENTS_VISIBLE_SQL, (), output_field=BooleanField())  # noqa: S611


def event_position_for_user(*, user: User, event_id: int) -> tuple[int, int] | None:
    """The (txid, id) of one of the user's events, or None if it is not theirs."""
    row = Event.objects.filter(user=user, pk=event_id).values_list("txid", "id").first()
    return None if row is None else (row[0], row[1])


def event_list_for_user(
    *,
    user: User,
    after: tuple[int, int] | None = None,
    types: Sequence[str] = (),
    wallet_id: uuid.UUID | None = None,
    limit: int,
) -> list[Event]:
    """Up to `limit` of the user's visible events after the position `after`
    (a (txid, id)), oldest first in commit order."""
    events = Event.objects.filter(user=user).filter(_VISIBLE)
    if after is not None:
        events = events.filter(
            RawSQL("(txid, id) > (%s, %s)", after, output_field=BooleanField())
        )
    if types:
        events = events.filter(type__in=types)
    if wallet_id is not None:
        events = events.filter(wallet_id=wallet_id)
    return list(events.order_by("txid", "id")[:limit])


def endpoint_list_for_user(*, user: User) -> QuerySet[WebhookEndpoint]:
    return WebhookEndpoint.objects.filter(user=user).order_by("-created_at")


def endpoint_get_for_user(
    *, user: User, endpoint_id: str | uuid.UUID
) -> WebhookEndpoint:
    """One of the user's endpoints; anyone else's, or a malformed id, is not found."""
    try:
        endpoint_id = uuid.UUID(str(endpoint_id))
    except ValueError:
        raise WebhookEndpointNotFound() from None
    endpoint = WebhookEndpoint.objects.filter(user=user, pk=endpoint_id).first()
    if endpoint is None:
        raise WebhookEndpointNotFound()
    return endpoint
