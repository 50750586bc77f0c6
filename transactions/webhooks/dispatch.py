"""The dispatcher and the sweep.

The dispatcher reads the outbox (transactions.Event) after its cursor
(OutboxCursor "webhooks") in commit order, (txid, id), and only events no
running transaction can precede (transactions.ledger.EVENTS_VISIBLE_SQL), so
the cursor never passes an event that commits later. For each batch, in one
transaction: a delivery row for every enabled endpoint of the event's owner
that wants its type, and the cursor moved past the batch; then, committed, a
send is enqueued per delivery. A transaction-scoped advisory lock keeps a
second dispatcher (beat runs one every WEBHOOKS_DISPATCH_SECONDS) out.

The sweep (beat, every minute) enqueues every pending delivery that is due:
the row in PostgreSQL is the truth, a broker message only a nudge, so a lost
message or a killed worker delays a delivery and never loses it.
"""

from __future__ import annotations

from datetime import datetime
from functools import partial

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from transactions import ledger
from transactions.models import WebhookDelivery, WebhookEndpoint
from transactions.webhooks.queue import deliveries_enqueue_by_endpoint
from transactions.webhooks.services import endpoints_disable_failing

CURSOR_NAME = "webhooks"
# pg_try_advisory_xact_lock's key for the dispatcher ("whdispat").
DISPATCH_LOCK_KEY = 0x7768646973706174

_BATCH_SQL = """
WITH ev AS (
    SELECT id, txid, user_id, type
      FROM transactions_event
     WHERE (txid, id) > (%(txid)s, %(event_id)s) AND {visible}
     ORDER BY txid, id
     LIMIT %(limit)s
),
ins AS (
    INSERT INTO transactions_webhookdelivery
           (endpoint_id, event_id, status, attempts, next_attempt_at, created_at)
    SELECT e.id, ev.id, 'pending', 0, %(now)s, %(now)s
      FROM ev
      JOIN transactions_webhookendpoint AS e
        ON e.user_id = ev.user_id
       AND e.status = 'enabled'
       AND (e.event_types ? '*' OR e.event_types ? ev.type)
     ORDER BY ev.txid, ev.id, e.id
        ON CONFLICT (endpoint_id, event_id) DO NOTHING
 RETURNING id, endpoint_id
)
SELECT (SELECT count(*) FROM ev),
       (SELECT txid FROM ev ORDER BY txid DESC, id DESC LIMIT 1),
       (SELECT id FROM ev ORDER BY txid DESC, id DESC LIMIT 1),
       (SELECT coalesce(array_agg(id ORDER BY id), '{}') FROM ins),
       (SELECT coalesce(array_agg(endpoint_id::text ORDER BY id), '{}') FROM ins)
""".replace("{visible}", ledger.EVENTS_VISIBLE_SQL)

_CURSOR_SAVE_SQL = """
INSERT INTO transactions_outboxcursor (name, txid, event_id)
VALUES (%s, %s, %s)
ON CONFLICT (name) DO UPDATE SET txid = EXCLUDED.txid, event_id = EXCLUDED.event_id
"""


@transaction.atomic(durable=True)
def _dispatch_batch(*, limit: int, now: datetime) -> tuple[int, list[int]] | None:
    """One batch: (events read, deliveries created), or None when another
    dispatcher holds the lock."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [DISPATCH_LOCK_KEY])
        (locked,) = cursor.fetchone()
        if not locked:
            return None
        cursor.execute(
            "SELECT txid, event_id FROM transactions_outboxcursor WHERE name = %s",
            [CURSOR_NAME],
        )
        row = cursor.fetchone()
        txid, event_id = row if row is not None else (0, 0)
        cursor.execute(
            _BATCH_SQL,
            {"txid": txid, "event_id": event_id, "limit": limit, "now": now},
        )
        read, last_txid, last_id, created, endpoints = cursor.fetchone()
        if read:
            cursor.execute(_CURSOR_SAVE_SQL, [CURSOR_NAME, last_txid, last_id])
    if created:
        pairs = list(zip(endpoints, created, strict=True))
        transaction.on_commit(partial(deliveries_enqueue_by_endpoint, pairs))
    return read, list(created)


def webhooks_dispatch(
    *, batch_size: int | None = None, max_batches: int | None = None
) -> int:
    """Turn the visible events after the cursor into deliveries, batch after
    batch (each its own transaction) until the outbox is read or
    `max_batches`; how many deliveries were created. Returns at once (0) if
    another dispatcher is running."""
    limit = batch_size or settings.WEBHOOKS_DISPATCH_BATCH
    batches = max_batches or settings.WEBHOOKS_DISPATCH_MAX_BATCHES
    created = 0
    for _ in range(batches):
        result = _dispatch_batch(limit=limit, now=timezone.now())
        if result is None:
            break
        read, ids = result
        created += len(ids)
        if read < limit:
            break
    return created


def webhooks_sweep(*, now: datetime | None = None, limit: int | None = None) -> int:
    """Disable the endpoints failing for too long, then enqueue a send of
    every pending delivery that is due (the earliest first, at most `limit`);
    how many were enqueued."""
    now = now or timezone.now()
    endpoints_disable_failing(now=now)
    due = (
        WebhookDelivery.objects.filter(
            status=WebhookDelivery.Status.PENDING,
            next_attempt_at__lte=now,
            endpoint__status=WebhookEndpoint.Status.ENABLED,
        )
        .order_by("next_attempt_at")
        .values_list("endpoint_id", "pk")[: limit or settings.WEBHOOKS_SWEEP_BATCH]
    )
    return deliveries_enqueue_by_endpoint(due)
