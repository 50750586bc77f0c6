from celery import shared_task

from transactions import ledger


@shared_task
def topups_expire() -> int:
    """Expire pending top-ups older than TOPUP_TTL (beat: every few minutes)."""
    return ledger.topup_expire_stale()
