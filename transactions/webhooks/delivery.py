"""Sending a batch of deliveries (one endpoint's): claim them, POST each with no
DB transaction open, record the attempts.

1. Claim (a short transaction, one SELECT and one UPDATE for the batch): the
   deliveries that are pending and due, their endpoint enabled, locked with
   SKIP LOCKED, and leased: `next_attempt_at` moves to now + timeout + a
   margin, so neither a second worker nor the sweep picks them up while this
   one sends; committed at once.
2. POST each event's bytes, signed, to the address the URL check resolved
   (addresses.py: no second DNS lookup), no redirects followed, over kept-alive
   connections; after a try that got no answer the rest wait for the sweep.
3. Record (a short transaction, one INSERT and one UPDATE for the batch): the
   attempts, and each delivery delivered (2xx), due again after a backoff, or
   failed once the retry window is over; the endpoint's `failing_since` set or
   cleared.

A worker killed between 1 and 3 leaves pending deliveries whose lease runs
out: the sweep sends them again (at least once; receivers dedupe by event id).
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

import urllib3
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from transactions.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from transactions.webhooks.addresses import Target, url_target
from transactions.webhooks.errors import UrlNotAllowed
from transactions.webhooks.queue import deliveries_enqueue
from transactions.webhooks.services import (
    endpoint_signing_secrets,
    endpoints_disable_failing,
)
from transactions.webhooks.signing import SIGNATURE_HEADER, event_body, signature_header
from wallet_project import metrics

logger = logging.getLogger(__name__)

EXCERPT_CHARS = 1000
USER_AGENT = "Wallet-Webhooks/1.0"


@dataclass(frozen=True)
class Outcome:
    status_code: int | None
    error: str
    excerpt: str
    duration_ms: int

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def retry_delay(attempts: int) -> timedelta:
    """The wait after the `attempts`-th failed try: WEBHOOKS_RETRY_FIRST (30 s),
    doubling, at most WEBHOOKS_RETRY_MAX (1 h)."""
    first = settings.WEBHOOKS_RETRY_FIRST.total_seconds()
    cap = settings.WEBHOOKS_RETRY_MAX.total_seconds()
    return timedelta(seconds=min(cap, first * 2 ** min(max(attempts - 1, 0), 32)))


def _lease() -> timedelta:
    return (
        timedelta(seconds=settings.WEBHOOKS_TIMEOUT_SECONDS)
        + settings.WEBHOOKS_LEASE_MARGIN
    )


@transaction.atomic(durable=True)
def _claim(delivery_ids: list[int], *, now: datetime) -> list[WebhookDelivery]:
    """Those of these deliveries that are pending, due, their endpoint enabled
    and not locked by another worker, leased (in their order): one SELECT and
    one UPDATE for the batch."""
    deliveries = list(
        WebhookDelivery.objects.select_for_update(skip_locked=True, of=("self",))
        .select_related("endpoint", "event")
        .filter(
            pk__in=delivery_ids,
            status=WebhookDelivery.Status.PENDING,
            next_attempt_at__lte=now,
            endpoint__status=WebhookEndpoint.Status.ENABLED,
        )
        .order_by("pk")
    )
    if deliveries:
        WebhookDelivery.objects.filter(pk__in=[d.pk for d in deliveries]).update(
            next_attempt_at=now + _lease()
        )
    order = {delivery_id: n for n, delivery_id in enumerate(delivery_ids)}
    return sorted(deliveries, key=lambda d: order[d.pk])


def _excerpt(raw: bytes) -> str:
    text = raw.decode("utf-8", errors="replace").replace("\x00", "\ufffd")
    return text[:EXCERPT_CHARS]


class Pools:
    """The connections of one batch of sends, kept alive between them: one
    urllib3 pool per checked address, port and host name (the same endpoint's
    deliveries go over one connection). Closed at the end of the batch."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._pools: dict[tuple, urllib3.HTTPConnectionPool] = {}

    def get(self, target: Target) -> urllib3.HTTPConnectionPool:
        key = (target.scheme, target.address, target.port, target.hostname)
        pool = self._pools.get(key)
        if pool is None:
            options: dict = {}
            pool_class: type[urllib3.HTTPConnectionPool] = urllib3.HTTPConnectionPool
            if target.scheme == "https":
                pool_class = urllib3.HTTPSConnectionPool
                options = {
                    "server_hostname": target.hostname,
                    "assert_hostname": target.hostname,
                    "cert_reqs": "CERT_REQUIRED",
                }
            pool = self._pools[key] = pool_class(
                target.address,
                target.port,
                timeout=urllib3.Timeout(connect=self.timeout, read=self.timeout),
                retries=False,
                maxsize=1,
                **options,
            )
        return pool

    def close(self) -> None:
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()


def http_post(
    target: Target,
    *,
    headers: dict[str, str],
    body: bytes,
    timeout: float,
    pools: Pools | None = None,
) -> tuple[int, bytes]:
    """POST `body` to the checked address of `target`, naming its host in the
    Host header and (https) in SNI and the certificate check. No retries, no
    redirects; the status and the first bytes of the answer. With `pools`,
    over the batch's kept-alive connection to that address."""
    own = pools is None
    pools = pools or Pools(timeout)
    pool = pools.get(target)
    try:
        response = pool.urlopen(
            "POST",
            target.path,
            body=body,
            headers={**headers, "Host": target.host_header},
            redirect=False,
            retries=False,
            assert_same_host=False,
            preload_content=False,
        )
        try:
            # One read of at most a few KB: an excerpt, and no endless body.
            raw = response.read1(EXCERPT_CHARS * 4)
        finally:
            # Kept alive only when the whole (sized) body was read; the rest of
            # a longer or chunked one is never read: that connection is closed.
            if response.length_remaining != 0:
                response.close()
            response.release_conn()
        return response.status, raw
    finally:
        if own:
            pools.close()


def _error(exc: Exception) -> str:
    if isinstance(exc, UrlNotAllowed):
        return f"url_not_allowed: {exc.detail}"
    while isinstance(exc, urllib3.exceptions.MaxRetryError) and exc.reason:
        exc = exc.reason
    # Before the timeouts: urllib3's NewConnectionError (a refused connection)
    # is a subclass of its ConnectTimeoutError.
    if isinstance(exc, (urllib3.exceptions.NewConnectionError, ConnectionError)):
        return f"connection failed: {exc}"
    if isinstance(exc, (urllib3.exceptions.TimeoutError, TimeoutError)):
        return "timeout"
    if isinstance(exc, urllib3.exceptions.SSLError):
        return f"tls: {exc}"
    return f"{type(exc).__name__}: {exc}"


def _send(delivery: WebhookDelivery, *, now: datetime, pools: Pools) -> Outcome:
    endpoint, event = delivery.endpoint, delivery.event
    body = event_body(event)  # the bytes signed are the bytes sent
    timestamp = int(now.timestamp())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "Wallet-Event-Id": str(event.id),
        "Wallet-Event-Type": event.type,
        SIGNATURE_HEADER: signature_header(
            endpoint_signing_secrets(endpoint, now=now), timestamp, body
        ),
    }
    started = time.monotonic()
    status_code, error, excerpt = None, "", ""
    try:
        # Checked again at every try, resolved once: the POST goes to the
        # address checked here.
        target = url_target(endpoint.url)
        status_code, raw = http_post(
            target,
            headers=headers,
            body=body,
            timeout=settings.WEBHOOKS_TIMEOUT_SECONDS,
            pools=pools,
        )
        excerpt = _excerpt(raw)
        if 300 <= status_code < 400:
            error = "redirect not followed"
    except Exception as exc:  # every failure is an attempt's outcome
        error = _error(exc)[:255]
    duration_ms = int((time.monotonic() - started) * 1000)
    return Outcome(status_code, error, excerpt, duration_ms)


@dataclass(frozen=True)
class Tried:
    """One send of a batch: the delivery claimed, when it started, its outcome."""

    delivery: WebhookDelivery
    started_at: datetime
    outcome: Outcome


def _next_state(delivery: WebhookDelivery, outcome: Outcome, *, now: datetime) -> None:
    """The delivery after one more attempt (in memory): delivered on a 2xx,
    else due again after the backoff, or failed once the retry window is over
    or its endpoint is no longer enabled. One that is no longer pending (an
    operator's resend raced it) keeps its status."""
    delivery.attempts += 1
    delivery.last_status_code = outcome.status_code
    if delivery.status != WebhookDelivery.Status.PENDING:
        return
    if outcome.delivered:
        delivery.status = WebhookDelivery.Status.DELIVERED
        delivery.delivered_at = now
        delivery.next_attempt_at = None
        return
    due = now + retry_delay(delivery.attempts)
    if (
        due > delivery.created_at + settings.WEBHOOKS_RETRY_FOR
        or delivery.endpoint.status != WebhookEndpoint.Status.ENABLED
    ):
        delivery.status = WebhookDelivery.Status.FAILED
        delivery.next_attempt_at = None
    else:
        delivery.next_attempt_at = due


def _failing_since_update(tried: list[Tried]) -> None:
    """Each endpoint's `failing_since` after these tries, in their order: a
    2xx clears it, a failure sets it unless it is set already; one UPDATE per
    endpoint (a batch is one endpoint's)."""
    by_endpoint: dict[UUID, list[Tried]] = {}
    for one in tried:
        by_endpoint.setdefault(one.delivery.endpoint_id, []).append(one)
    for endpoint_id, tries in by_endpoint.items():
        endpoints = WebhookEndpoint.objects.filter(pk=endpoint_id)
        last_ok = max(
            (n for n, one in enumerate(tries) if one.outcome.delivered), default=None
        )
        failures = tries if last_ok is None else tries[last_ok + 1 :]
        if failures and last_ok is None:
            endpoints.filter(failing_since__isnull=True).update(
                failing_since=failures[0].started_at
            )
        elif failures:
            endpoints.update(failing_since=failures[0].started_at)
        else:
            endpoints.filter(failing_since__isnull=False).update(failing_since=None)


@transaction.atomic(durable=True)
def _record(tried: list[Tried], *, now: datetime) -> list[WebhookDelivery]:
    """The batch's attempts and the deliveries' new states, in one
    transaction: the rows locked (in id order), the attempts inserted in one
    statement, the deliveries updated in one. A delivery whose endpoint was
    deleted meanwhile is gone and left out."""
    locked = {
        d.pk: d
        for d in WebhookDelivery.objects.select_for_update(of=("self",))
        .select_related("endpoint")
        .filter(pk__in=[one.delivery.pk for one in tried])
        .order_by("pk")
    }
    tried = [one for one in tried if one.delivery.pk in locked]
    WebhookAttempt.objects.bulk_create(
        WebhookAttempt(
            delivery_id=one.delivery.pk,
            started_at=one.started_at,
            duration_ms=one.outcome.duration_ms,
            status_code=one.outcome.status_code,
            error=one.outcome.error,
            response_excerpt=one.outcome.excerpt,
        )
        for one in tried
    )
    _failing_since_update(tried)
    recorded = []
    for one in tried:
        delivery = locked[one.delivery.pk]
        _next_state(delivery, one.outcome, now=now)
        recorded.append(delivery)
    states = [
        {
            "id": d.pk,
            "status": d.status,
            "attempts": d.attempts,
            "last_status_code": d.last_status_code,
            "delivered_at": d.delivered_at and d.delivered_at.isoformat(),
            "next_attempt_at": d.next_attempt_at and d.next_attempt_at.isoformat(),
        }
        for d in recorded
    ]
    with connection.cursor() as cursor:
        cursor.execute(_STATES_SQL, {"states": json.dumps(states)})
    return recorded


# The batch's new states in one statement (Django's bulk_update compiles a
# CASE per column and row: most of a batch's CPU).
_STATES_SQL = """
UPDATE transactions_webhookdelivery AS d
   SET status = v.status, attempts = v.attempts,
       last_status_code = v.last_status_code, delivered_at = v.delivered_at,
       next_attempt_at = v.next_attempt_at
  FROM jsonb_to_recordset(%(states)s::jsonb)
       AS v (id bigint, status varchar, attempts int, last_status_code int,
             delivered_at timestamptz, next_attempt_at timestamptz)
 WHERE d.id = v.id
"""


def delivery_send(*, delivery_id: int) -> str | None:
    """Try one delivery if it is pending and due (and no other worker has it);
    its status afterwards, or None when there was nothing to send. A failure
    is retried: the send is enqueued again for when it is due (and the sweep
    would find it anyway)."""
    return deliveries_send(delivery_ids=[delivery_id])[0]


def deliveries_send(*, delivery_ids: list[int]) -> list[str | None]:
    """`delivery_send` for each of these (one endpoint's, as the dispatcher
    and the sweep enqueue them): claimed together, sent in turn over kept-alive
    connections, recorded together. After a try that got no answer (refused,
    timed out) the rest are not sent, their lease given back: the receiver is
    down, and each would wait out the timeout; the sweep finds them."""
    claimed = _claim(delivery_ids, now=timezone.now())
    tried: list[Tried] = []
    pools = Pools(settings.WEBHOOKS_TIMEOUT_SECONDS)
    try:
        for delivery in claimed:
            started_at = timezone.now()
            outcome = _send(delivery, now=started_at, pools=pools)
            tried.append(Tried(delivery, started_at, outcome))
            if outcome.status_code is None:
                break
    finally:
        pools.close()
    unsent = [d.pk for d in claimed[len(tried) :]]
    now = timezone.now()
    recorded = _record(tried, now=now) if tried else []
    _count(recorded, tried)
    if unsent:
        WebhookDelivery.objects.filter(
            pk__in=unsent, status=WebhookDelivery.Status.PENDING
        ).update(next_attempt_at=now)
    _after(recorded, tried, now=now)
    statuses = {d.pk: d.status for d in recorded}
    return [statuses.get(delivery_id) for delivery_id in delivery_ids]


_OUTCOMES: dict[str, str] = {
    WebhookDelivery.Status.DELIVERED.value: "delivered",
    WebhookDelivery.Status.FAILED.value: "failed",
    WebhookDelivery.Status.PENDING.value: "retrying",
}


def _count(recorded: list[WebhookDelivery], tried: list[Tried]) -> None:
    """The recorded attempts in the metrics: each by outcome, and for each
    delivered one the time from its event's commit to now."""
    if not metrics.enabled():
        return
    created = {one.delivery.pk: one.delivery.event.created_at for one in tried}
    metrics.webhook_outcomes_count(
        (_OUTCOMES.get(d.status, "retrying") for d in recorded),
        (
            (d.delivered_at - created[d.pk]).total_seconds()
            for d in recorded
            if d.status == WebhookDelivery.Status.DELIVERED and d.delivered_at
        ),
    )


def _after(
    recorded: list[WebhookDelivery], tried: list[Tried], *, now: datetime
) -> None:
    """What follows the recorded tries: the ones still pending enqueued for
    when they are due (those due together in one task), a warning for each
    that failed for good, and an endpoint failing for WEBHOOKS_DISABLE_AFTER
    disabled."""
    retries: dict[int, list[int]] = {}
    failing = {one.delivery.endpoint_id for one in tried if not one.outcome.delivered}
    for delivery in recorded:
        if delivery.status == WebhookDelivery.Status.PENDING:
            assert delivery.next_attempt_at is not None
            countdown = max(
                0, math.ceil((delivery.next_attempt_at - now).total_seconds())
            )
            retries.setdefault(countdown, []).append(delivery.pk)
        elif delivery.status == WebhookDelivery.Status.FAILED:
            logger.warning(
                "webhook delivery %s failed after %s attempts",
                delivery.pk,
                delivery.attempts,
            )
    for countdown, ids in sorted(retries.items()):
        deliveries_enqueue(ids, countdown=countdown)
    for endpoint_id in failing:
        failing_since = (
            WebhookEndpoint.objects.filter(pk=endpoint_id)
            .values_list("failing_since", flat=True)
            .first()
        )
        if (
            failing_since is not None
            and failing_since <= now - settings.WEBHOOKS_DISABLE_AFTER
        ):
            endpoints_disable_failing(now=now, endpoint_id=endpoint_id)
