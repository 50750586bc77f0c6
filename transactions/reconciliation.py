"""The nightly reconcile (beat: transactions.tasks.ledger_reconcile): the checks
of `manage.py reconcile`, logged, and mailed to the operators (ADMINS) when the
ledger is not clean."""

import logging

from django.conf import settings
from django.core.mail import mail_admins

from transactions.selectors import ReconcileReport, ledger_reconcile
from wallet_project.db import long_running_timeouts

logger = logging.getLogger(__name__)

# A mail lists at most this many problems; the command shows them all.
_MAILED_PROBLEMS = 100


def ledger_reconcile_and_alert(*, batch_size: int = 2000) -> ReconcileReport:
    with long_running_timeouts():
        report = ledger_reconcile(batch_size=batch_size)
    if report.clean:
        logger.info("%s", report.summary, extra={"wallets": report.wallets_checked})
        return report
    logger.error(
        "%s", report.summary, extra={"problems": report.problems[:_MAILED_PROBLEMS]}
    )
    if not settings.ADMINS:
        logger.warning("ledger not clean and no ADMINS to mail: set ADMINS")
        return report
    shown = report.problems[:_MAILED_PROBLEMS]
    more = len(report.problems) - len(shown)
    mail_admins(
        subject=report.summary,
        message="\n".join(
            [
                report.summary,
                "",
                *(f"  {problem}" for problem in shown),
                *([f"  ... and {more} more"] if more else []),
                "",
                "Run `manage.py reconcile` for the full list. Nothing was changed.",
            ]
        ),
        fail_silently=False,
    )
    return report
