from celery import shared_task
from django.conf import settings

from transactions import ledger, webhooks
from transactions.reconciliation import ledger_reconcile_and_alert


@shared_task
def topups_expire() -> int:
    """Expire pending top-ups older than TOPUP_TTL (beat: every few minutes)."""
    return ledger.topup_expire_stale()


@shared_task
def expire_holds() -> int:
    """Expire pending payouts past PAYOUT_TTL and holds past their expiry,
    releasing their money (beat: every minute)."""
    return ledger.payout_expire_stale() + ledger.hold_expire_due()


@shared_task(
    name="transactions.tasks.ledger_reconcile",
    soft_time_limit=settings.RECONCILE_SOFT_TIME_LIMIT,
    time_limit=settings.RECONCILE_TIME_LIMIT,
)
def ledger_reconcile() -> dict:
    """The nightly beat job: check the ledger, mail ADMINS when it is not clean."""
    report = ledger_reconcile_and_alert()
    return {"clean": report.clean, "problems": len(report.problems)}


# --- Webhooks (transactions.webhooks; registered with it in transactions.apps) ---------


@shared_task
def webhooks_dispatch() -> int:
    """Turn new events into webhook deliveries and enqueue their sends (beat:
    every WEBHOOKS_DISPATCH_SECONDS; one runs at a time)."""
    return webhooks.webhooks_dispatch()


@shared_task
def webhook_delivery_send(delivery_id: int) -> str | None:
    """Try one webhook delivery if it is still pending and due (messages
    enqueued before batches existed)."""
    return webhooks.delivery_send(delivery_id=delivery_id)


@shared_task
def webhook_deliveries_send(delivery_ids: list[int]) -> list[str | None]:
    """Try these webhook deliveries (one endpoint's) in turn, if still pending
    and due."""
    return webhooks.deliveries_send(delivery_ids=delivery_ids)


@shared_task
def webhooks_sweep() -> int:
    """Enqueue every pending delivery that is due, and disable the endpoints
    failing for too long (beat: every WEBHOOKS_SWEEP_SECONDS)."""
    return webhooks.webhooks_sweep()


@shared_task(
    autoretry_for=(OSError,),  # SMTP errors and refused connections
    retry_backoff=True,
    retry_backoff_max=60,
    max_retries=5,
)
def webhook_endpoint_disabled_email(endpoint_id: str) -> bool:
    """Tell an endpoint's owner that it was disabled (scheduled on commit)."""
    return webhooks.endpoint_disabled_email_send(endpoint_id=endpoint_id)


def webhook_send_enqueue(
    delivery_ids: list[int], countdown: float | None = None
) -> None:
    webhook_deliveries_send.apply_async((delivery_ids,), countdown=countdown)
