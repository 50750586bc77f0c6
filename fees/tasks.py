from celery import shared_task
from django.conf import settings
from django.utils import timezone

from fees.services import fee_charge_due


@shared_task(name="fees.tasks.fees_charge_due")
def fees_charge_due() -> dict:
    """The daily beat job. Safe to run twice at once: wallets are locked and
    re-checked one by one, and a period is charged at most once."""
    summary = fee_charge_due(as_of=timezone.now(), batch_size=settings.FEE_BATCH_SIZE)
    return summary.as_dict()
