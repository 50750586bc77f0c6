"""The console handler drops the routine INFO lines of the tasks beat runs
every second (the webhook dispatcher), and nothing else."""

import logging

from django.conf import settings

from wallet_project.logging import QuietTasksFilter


def record(name: str, level: int, message: str) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, message, None, None)


def test_the_dispatchers_routine_lines_are_dropped_and_the_rest_kept():
    quiet = QuietTasksFilter()
    dispatch = "Task transactions.tasks.webhooks_dispatch[1] succeeded in 0.01s: 0"
    assert not quiet.filter(record("celery.app.trace", logging.INFO, dispatch))
    assert not quiet.filter(
        record(
            "celery.beat",
            logging.INFO,
            "Scheduler: Sending due task transactions-webhooks-dispatch",
        )
    )
    assert quiet.filter(record("celery.app.trace", logging.ERROR, dispatch))
    fee_run = "Task fees.tasks.charge_fees[2] succeeded in 12.5s: {}"
    assert quiet.filter(record("celery.app.trace", logging.INFO, fee_run))
    assert quiet.filter(record("wallet.access", logging.INFO, "webhooks_dispatch"))


def test_the_console_handler_uses_it():
    filters = settings.LOGGING["handlers"]["console"]["filters"]
    assert "quiet_tasks" in filters
