"""Sending one delivery: claim it, POST it with no DB transaction open, record
the attempt.

1. Claim (a short transaction): the delivery row, if it is pending and due
   and its endpoint enabled, locked with SKIP LOCKED, and leased: its
   `next_attempt_at` moves to now + timeout + a margin, so neither a second
   worker nor the sweep picks it up while this one sends; committed at once.
2. POST the event's bytes, signed, to the address the URL check resolved
   (addresses.py: no second DNS lookup), no redirects followed.
3. Record (a short transaction): the attempt, and the delivery delivered
   (2xx), due again after a backoff, or failed once the retry window is over;
   the endpoint's `failing_since` set or cleared.

A worker killed between 1 and 3 leaves a pending delivery whose lease runs
out: the sweep sends it again (at least once; receivers dedupe by event id).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import urllib3
from django.conf import settings
from django.db import transaction
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
def _claim(delivery_id: int, *, now: datetime) -> WebhookDelivery | None:
    delivery = (
        WebhookDelivery.objects.select_for_update(skip_locked=True, of=("self",))
        .select_related("endpoint", "event")
        .filter(
            pk=delivery_id,
            status=WebhookDelivery.Status.PENDING,
            next_attempt_at__lte=now,
            endpoint__status=WebhookEndpoint.Status.ENABLED,
        )
        .first()
    )
    if delivery is None:
        return None
    delivery.next_attempt_at = now + _lease()
    delivery.save(update_fields=["next_attempt_at"])
    return delivery


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
        exc = exc.reason  # type: ignore[assignment]
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


@transaction.atomic(durable=True)
def _record(
    delivery_id: int, outcome: Outcome, *, started_at: datetime, now: datetime
) -> WebhookDelivery | None:
    delivery = (
        WebhookDelivery.objects.select_for_update()
        .select_related("endpoint")
        .filter(pk=delivery_id)
        .first()
    )
    if delivery is None:  # its endpoint was deleted meanwhile
        return None
    WebhookAttempt.objects.create(
        delivery=delivery,
        started_at=started_at,
        duration_ms=outcome.duration_ms,
        status_code=outcome.status_code,
        error=outcome.error,
        response_excerpt=outcome.excerpt,
    )
    delivery.attempts += 1
    delivery.last_status_code = outcome.status_code
    endpoints = WebhookEndpoint.objects.filter(pk=delivery.endpoint_id)
    if outcome.delivered:
        endpoints.filter(failing_since__isnull=False).update(failing_since=None)
    else:
        endpoints.filter(failing_since__isnull=True).update(failing_since=started_at)
    if delivery.status == WebhookDelivery.Status.PENDING:
        if outcome.delivered:
            delivery.status = WebhookDelivery.Status.DELIVERED
            delivery.delivered_at = now
            delivery.next_attempt_at = None
        else:
            due = now + retry_delay(delivery.attempts)
            if (
                due > delivery.created_at + settings.WEBHOOKS_RETRY_FOR
                or delivery.endpoint.status != WebhookEndpoint.Status.ENABLED
            ):
                delivery.status = WebhookDelivery.Status.FAILED
                delivery.next_attempt_at = None
            else:
                delivery.next_attempt_at = due
    delivery.save(
        update_fields=[
            "status",
            "attempts",
            "last_status_code",
            "delivered_at",
            "next_attempt_at",
        ]
    )
    return delivery


def delivery_send(*, delivery_id: int) -> str | None:
    """Try one delivery if it is pending and due (and no other worker has it);
    its status afterwards, or None when there was nothing to send. A failure
    is retried: the send is enqueued again for when it is due (and the sweep
    would find it anyway)."""
    return deliveries_send(delivery_ids=[delivery_id])[0]


def deliveries_send(*, delivery_ids: list[int]) -> list[str | None]:
    """`delivery_send` for each of these (one endpoint's, as the dispatcher
    and the sweep enqueue them), in turn, over kept-alive connections. After
    a try that got no answer (refused, timed out) the rest are left for the
    sweep: the receiver is down, and each would wait out the timeout."""
    pools = Pools(settings.WEBHOOKS_TIMEOUT_SECONDS)
    statuses: list[str | None] = [None] * len(delivery_ids)
    try:
        for n, delivery_id in enumerate(delivery_ids):
            status, answered = _send_one(delivery_id, pools)
            statuses[n] = status
            if not answered:
                break
    finally:
        pools.close()
    return statuses


def _send_one(delivery_id: int, pools: Pools) -> tuple[str | None, bool]:
    """(the delivery's status after a try, or None; whether the receiver
    answered at all)."""
    started_at = timezone.now()
    delivery = _claim(delivery_id, now=started_at)
    if delivery is None:
        return None, True
    outcome = _send(delivery, now=started_at, pools=pools)
    now = timezone.now()
    recorded = _record(delivery_id, outcome, started_at=started_at, now=now)
    if recorded is None:
        return None, True
    if recorded.status == WebhookDelivery.Status.PENDING:
        assert recorded.next_attempt_at is not None
        countdown = max(0.0, (recorded.next_attempt_at - now).total_seconds())
        deliveries_enqueue([recorded.pk], countdown=countdown)
    elif not outcome.delivered:
        logger.warning(
            "webhook delivery %s failed after %s attempts",
            recorded.pk,
            recorded.attempts,
        )
    if not outcome.delivered:
        failing_since = (
            WebhookEndpoint.objects.filter(pk=recorded.endpoint_id)
            .values_list("failing_since", flat=True)
            .first()
        )
        if (
            failing_since is not None
            and failing_since <= now - settings.WEBHOOKS_DISABLE_AFTER
        ):
            endpoints_disable_failing(now=now, endpoint_id=recorded.endpoint_id)
    return recorded.status, outcome.status_code is not None
