from celery import shared_task

from transactions import ledger


@shared_task
def topups_expire() -> int:
    """Expire pending top-ups older than TOPUP_TTL (beat: every few minutes)."""
    return ledger.topup_expire_stale()


@shared_task
def expire_holds() -> int:
    """Expire pending payouts past PAYOUT_TTL and holds past their expiry,
    releasing their money (beat: every minute)."""
    return ledger.payout_expire_stale() + ledger.hold_expire_due()
