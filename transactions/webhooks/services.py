"""Writes of webhook endpoints and deliveries (each its own DB transaction)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import datetime
from functools import partial

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from accounts.models import User
from transactions.models import Event, WebhookDelivery, WebhookEndpoint
from transactions.webhooks.addresses import url_target
from transactions.webhooks.errors import (
    WebhookDeliveryPending,
    WebhookEndpointLimitReached,
)
from transactions.webhooks.queue import deliveries_enqueue, endpoint_disabled_notify
from transactions.webhooks.signing import secret_new

logger = logging.getLogger(__name__)

ALL_EVENTS = "*"
EVENT_TYPES = frozenset(Event.Type.values)


def event_types_clean(value: object) -> list[str]:
    """["*"] or a list of distinct Event.Type values (in the order given), or
    a ValidationError saying what is wrong."""
    if not isinstance(value, list) or not value:
        raise ValidationError(
            _('A non-empty list of event types, or ["*"] for every event.'),
            code="invalid",
        )
    types: list[str] = []
    for item in value:
        if not isinstance(item, str) or (
            item != ALL_EVENTS and item not in EVENT_TYPES
        ):
            raise ValidationError(
                _("Unknown event type: %(type)s."),
                code="invalid_choice",
                params={"type": str(item)[:64]},
            )
        if item not in types:
            types.append(item)
    if ALL_EVENTS in types and len(types) > 1:
        raise ValidationError(
            _('"*" means every event: give it alone.'), code="invalid"
        )
    return types


@transaction.atomic(durable=True)
def _endpoint_insert(
    *, user: User, url: str, event_types: list[str]
) -> WebhookEndpoint:
    # The owner's row serialises their creations: the limit holds under races.
    User.objects.select_for_update().filter(pk=user.pk).first()
    limit = settings.WEBHOOKS_MAX_ENDPOINTS
    if WebhookEndpoint.objects.filter(user=user).count() >= limit:
        raise WebhookEndpointLimitReached(limit=limit)
    return WebhookEndpoint.objects.create(
        user=user, url=url, event_types=event_types, secret=secret_new()
    )


def endpoint_create(
    *, user: User, url: str, event_types: Sequence[str]
) -> WebhookEndpoint:
    """A new enabled endpoint of `user` (its `secret` is shown only now).
    UrlNotAllowed when the URL may not be called (checked before the
    transaction: a DNS lookup holds no locks), WebhookEndpointLimitReached past
    WEBHOOKS_MAX_ENDPOINTS."""
    types = event_types_clean(list(event_types))
    url_target(url)
    return _endpoint_insert(user=user, url=url, event_types=types)


@transaction.atomic(durable=True)
def endpoint_delete(*, endpoint: WebhookEndpoint) -> None:
    """Deletes the endpoint with its deliveries and their attempts (a send in
    flight records nothing)."""
    WebhookEndpoint.objects.filter(pk=endpoint.pk).delete()


@transaction.atomic(durable=True)
def endpoint_rotate_secret(
    *, endpoint: WebhookEndpoint, now: datetime | None = None
) -> WebhookEndpoint:
    """A new secret; the one it replaces keeps signing (a second `v1`) for
    WEBHOOKS_SECRET_OVERLAP (24 h), so receivers can switch without missing a
    delivery. A second rotation within that time drops the oldest secret."""
    now = now or timezone.now()
    locked = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
    locked.previous_secret = locked.secret
    locked.previous_secret_expires_at = now + settings.WEBHOOKS_SECRET_OVERLAP
    locked.secret = secret_new()
    locked.save(
        update_fields=[
            "secret",
            "previous_secret",
            "previous_secret_expires_at",
            "updated_at",
        ]
    )
    return locked


def endpoint_signing_secrets(endpoint: WebhookEndpoint, *, now: datetime) -> list[str]:
    """The secrets a delivery is signed with now: the current one, and the
    previous one while its overlap lasts."""
    secrets = [endpoint.secret]
    if (
        endpoint.previous_secret
        and endpoint.previous_secret_expires_at is not None
        and endpoint.previous_secret_expires_at > now
    ):
        secrets.append(endpoint.previous_secret)
    return secrets


@transaction.atomic(durable=True)
def endpoint_enable(
    endpoint: WebhookEndpoint, *, by: User | None = None
) -> WebhookEndpoint:
    """Enable an endpoint again (after it was disabled for failing): its
    failing clock starts over. New events reach it from now on; deliveries
    that failed meanwhile can be resent one by one (`delivery_resend`)."""
    locked = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
    if locked.status != WebhookEndpoint.Status.ENABLED:
        locked.status = WebhookEndpoint.Status.ENABLED
        locked.failing_since = None
        locked.disabled_at = None
        locked.save(
            update_fields=["status", "failing_since", "disabled_at", "updated_at"]
        )
        logger.info(
            "webhook endpoint %s enabled by %s",
            locked.pk,
            getattr(by, "pk", None),
        )
    return locked


def endpoints_disable_failing(
    *, now: datetime | None = None, endpoint_id: uuid.UUID | None = None
) -> int:
    """Disable every enabled endpoint (or just `endpoint_id`) that has failed
    every delivery for WEBHOOKS_DISABLE_AFTER (3 days), fail its pending
    deliveries and email its owner; how many were disabled."""
    now = now or timezone.now()
    cutoff = now - settings.WEBHOOKS_DISABLE_AFTER
    endpoints = WebhookEndpoint.objects.filter(
        status=WebhookEndpoint.Status.ENABLED, failing_since__lte=cutoff
    )
    if endpoint_id is not None:
        endpoints = endpoints.filter(pk=endpoint_id)
    ids = list(endpoints.values_list("pk", flat=True)[:1000])
    return sum(_endpoint_disable(endpoint_id=pk, now=now) for pk in ids)


@transaction.atomic(durable=True)
def _endpoint_disable(*, endpoint_id: uuid.UUID, now: datetime) -> bool:
    cutoff = now - settings.WEBHOOKS_DISABLE_AFTER
    endpoint = (
        WebhookEndpoint.objects.select_for_update()
        .filter(
            pk=endpoint_id,
            status=WebhookEndpoint.Status.ENABLED,
            failing_since__lte=cutoff,
        )
        .first()
    )
    if endpoint is None:  # a success or an operator got there first
        return False
    endpoint.status = WebhookEndpoint.Status.DISABLED
    endpoint.disabled_at = now
    endpoint.save(update_fields=["status", "disabled_at", "updated_at"])
    # Its pending deliveries will not be tried again: failed (an operator can
    # resend them). One being sent right now (locked) is failed when its
    # attempt is recorded (delivery.py).
    pending = (
        WebhookDelivery.objects.select_for_update(skip_locked=True)
        .filter(endpoint_id=endpoint.pk, status=WebhookDelivery.Status.PENDING)
        .values_list("pk", flat=True)
    )
    WebhookDelivery.objects.filter(pk__in=list(pending)).update(
        status=WebhookDelivery.Status.FAILED, next_attempt_at=None
    )
    logger.warning(
        "webhook endpoint %s disabled: every delivery failed since %s",
        endpoint.pk,
        endpoint.failing_since.isoformat() if endpoint.failing_since else None,
    )
    transaction.on_commit(partial(endpoint_disabled_notify, str(endpoint.pk)))
    return True


@transaction.atomic(durable=True)
def delivery_resend(
    delivery: WebhookDelivery, *, by: User | None, now: datetime | None = None
) -> WebhookDelivery:
    """Send a delivered or failed delivery again, now: back to pending, its
    attempts kept (the retry window still counts from its creation, so one
    past it gets one try). A pending one is a WebhookDeliveryPending (it is
    retried on its own). Logged with the operator (`by`)."""
    now = now or timezone.now()
    locked = WebhookDelivery.objects.select_for_update().get(pk=delivery.pk)
    if locked.status == WebhookDelivery.Status.PENDING:
        raise WebhookDeliveryPending()
    previous = locked.status
    locked.status = WebhookDelivery.Status.PENDING
    locked.next_attempt_at = now
    locked.delivered_at = None
    locked.save(update_fields=["status", "next_attempt_at", "delivered_at"])
    logger.info(
        "webhook delivery %s (%s) resent by %s",
        locked.pk,
        previous,
        getattr(by, "pk", None),
    )
    transaction.on_commit(partial(deliveries_enqueue, [locked.pk]))
    return locked
