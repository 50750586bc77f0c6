from celery import shared_task
from django.conf import settings

from transactions import ledger
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
