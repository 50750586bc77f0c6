"""The nightly reconcile: a beat task that logs the result and mails the
operators (ADMINS) when the ledger is not clean, and only then."""

import logging
from decimal import Decimal

import pytest
from django.conf import settings
from django.core import mail

from transactions.tasks import ledger_reconcile
from wallets.models import Wallet

pytestmark = pytest.mark.django_db

OPERATORS = [
    ("ops@example.com", "ops@example.com"),
    ("cfo@example.com", "cfo@example.com"),
]


def test_the_reconcile_task_is_on_the_beat_schedule_nightly():
    entry = settings.CELERY_BEAT_SCHEDULE["transactions-reconcile-ledger"]
    assert entry["task"] == ledger_reconcile.name
    schedule = entry["schedule"]
    assert (len(schedule.hour), len(schedule.minute)) == (1, 1)
    assert schedule.day_of_month == set(range(1, 32))
    assert ledger_reconcile.soft_time_limit == settings.RECONCILE_SOFT_TIME_LIMIT


def test_a_clean_ledger_is_logged_and_mails_nobody(make_wallet, settings, caplog):
    settings.ADMINS = OPERATORS
    make_wallet(balance="10.00")
    with caplog.at_level(logging.INFO, logger="transactions.reconciliation"):
        result = ledger_reconcile.apply().get()
    assert result == {"clean": True, "problems": 0}
    assert mail.outbox == []
    assert "Ledger clean" in caplog.text


def test_a_broken_ledger_row_mails_the_operators(make_wallet, settings, caplog):
    """A wallet whose cached balance no longer equals its entries (written behind
    the ledger's back): the task logs an error and mails every ADMINS address the
    wallet and what is wrong."""
    settings.ADMINS = OPERATORS
    wallet = make_wallet(balance="10.00")
    Wallet.objects.filter(pk=wallet.pk).update(balance=Decimal("25.00"))
    with caplog.at_level(logging.INFO, logger="transactions.reconciliation"):
        result = ledger_reconcile.apply().get()
    assert result == {"clean": False, "problems": 1}
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert sorted(message.to) == ["cfo@example.com", "ops@example.com"]
    assert message.subject.startswith("[Wallet] Ledger NOT clean: 1 balance mismatches")
    assert f"wallet {wallet.number} (user, KZT): balance 25.00" in message.body
    assert "entries sum to 10.00" in message.body
    error = next(r for r in caplog.records if r.levelno == logging.ERROR)
    assert error.getMessage().startswith("Ledger NOT clean")
