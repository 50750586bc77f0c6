from celery import shared_task
from django.conf import settings
from django.utils import timezone

from fees.services import fee_charge_due
from wallet_project.db import long_running_timeouts


@shared_task(
    name="fees.tasks.fees_charge_due",
    soft_time_limit=settings.FEE_RUN_SOFT_TIME_LIMIT,
    time_limit=settings.FEE_RUN_TIME_LIMIT,
)
def fees_charge_due() -> dict:
    """The daily beat job. Safe to run twice at once: wallets are locked and
    re-checked one by one, and a period is charged at most once (so a run cut by
    its time limit is finished by the next one)."""
    with long_running_timeouts():
        summary = fee_charge_due(
            as_of=timezone.now(), batch_size=settings.FEE_BATCH_SIZE
        )
    return summary.as_dict()
