"""How the webhooks code reaches its Celery tasks without importing them.

The tasks (transactions.tasks) call into this package, so this package cannot
import them back; transactions.apps registers them here when Django starts.
Enqueuing is best effort by design: a delivery is a row in PostgreSQL, and the
beat sweep enqueues every pending delivery that is due, so a message that
never reaches the broker (Redis down) only delays the delivery.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable
from uuid import UUID

from django.conf import settings

logger = logging.getLogger(__name__)

SendDeliveries = Callable[[list[int], float | None], object]
NotifyDisabled = Callable[[str], object]

_tasks: dict[str, Callable] = {}


def webhook_tasks_register(
    *, send: SendDeliveries, notify_disabled: NotifyDisabled
) -> None:
    """`send(delivery_ids, countdown)` enqueues one task sending those
    deliveries one after the other (one endpoint's, as callers group them);
    `notify_disabled(endpoint_id)` the email telling an owner that their
    endpoint was disabled."""
    _tasks["send"] = send
    _tasks["notify_disabled"] = notify_disabled


def deliveries_enqueue(ids: Iterable[int], *, countdown: float | None = None) -> int:
    """Enqueue sends of these deliveries, WEBHOOKS_SEND_BATCH to a task (pass
    one endpoint's together: a task sends them in turn, over one kept-alive
    connection); how many were enqueued. Stops at the first failure (the
    broker is down: the sweep will find them)."""
    send = _tasks.get("send")
    if send is None:
        logger.warning("webhook send task not registered; the sweep will send")
        return 0
    ids = list(ids)
    size = max(1, settings.WEBHOOKS_SEND_BATCH)
    count = 0
    for start in range(0, len(ids), size):
        chunk = ids[start : start + size]
        try:
            send(chunk, countdown)
        except Exception:  # the broker: whatever it raises, the row is the truth
            logger.warning(
                "could not enqueue webhook deliveries %s...; the sweep will send them",
                chunk[0],
                exc_info=True,
            )
            break
        count += len(chunk)
    return count


def deliveries_enqueue_by_endpoint(
    pairs: Iterable[tuple[UUID | str, int]],
) -> int:
    """`deliveries_enqueue` for (endpoint id, delivery id) pairs, each
    endpoint's deliveries in their order, in tasks of their own."""
    by_endpoint: dict[str, list[int]] = defaultdict(list)
    for endpoint_id, delivery_id in pairs:
        by_endpoint[str(endpoint_id)].append(delivery_id)
    return sum(deliveries_enqueue(ids) for ids in by_endpoint.values())


def endpoint_disabled_notify(endpoint_id: str) -> None:
    notify = _tasks.get("notify_disabled")
    if notify is None:
        logger.warning("webhook email task not registered (endpoint %s)", endpoint_id)
        return
    try:
        notify(endpoint_id)
    except Exception:
        logger.error(
            "could not enqueue the disabled-endpoint email for %s",
            endpoint_id,
            exc_info=True,
        )
