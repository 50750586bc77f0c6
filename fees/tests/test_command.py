"""manage.py charge_fees and the thin beat task (run in-process here; the real
worker is in test_celery.py)."""

from datetime import timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.utils import timezone

from fees.models import FeeCharge
from fees.tasks import fees_charge_due
from wallets.models import Wallet

pytestmark = pytest.mark.django_db


def charge_fees(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("charge_fees", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_charge_fees_as_of_a_date_charges_what_is_due_then_and_prints_a_summary(
    make_wallet,
):
    payer = make_wallet(balance="500.00")
    debtor = make_wallet(balance="0")
    as_of = (payer.next_fee_at + timedelta(minutes=1)).isoformat()

    out, err = charge_fees("--as-of", as_of, "--batch-size", "1")

    assert "wallets 2, charged 1, debts 1, blocked 1" in out
    assert "paid KZT: 200.00" in out
    assert "new debt KZT: 200.00" in out
    assert "2/2 wallets" in err  # the progress bar
    payer.refresh_from_db()
    debtor.refresh_from_db()
    assert payer.balance.amount == Decimal("300.00")
    assert debtor.status == Wallet.Status.BLOCKED


def test_charge_fees_dry_run_changes_nothing(make_wallet):
    wallet = make_wallet(balance="500.00")
    due_at = wallet.next_fee_at

    out, _ = charge_fees("--as-of", due_at.isoformat(), "--dry-run", "--quiet")

    assert "Dry run (nothing changed)" in out
    assert "charged 1" in out
    wallet.refresh_from_db()
    assert wallet.balance.amount == Decimal("500.00")
    assert wallet.next_fee_at == due_at
    assert not FeeCharge.objects.exists()


def test_charge_fees_without_as_of_charges_nothing_early(make_wallet):
    wallet = make_wallet(balance="500.00")  # first fee due in 30 days

    out, _ = charge_fees("--quiet")

    assert "wallets 0, charged 0" in out
    assert not FeeCharge.objects.filter(wallet=wallet).exists()


def test_charge_fees_reports_skipped_wallets(make_wallet):
    wallet = make_wallet(currency="EUR", balance="5.00")

    out, _ = charge_fees("--as-of", wallet.next_fee_at.isoformat(), "--quiet")

    assert "skipped 1" in out
    assert "retried next run" in out


@pytest.mark.parametrize("value", ["yesterday", "2026-13-01T00:00:00"])
def test_a_malformed_as_of_is_an_error(value):
    with pytest.raises(CommandError):
        call_command("charge_fees", "--as-of", value)


def test_the_beat_task_charges_due_wallets_now(make_wallet):
    wallet = make_wallet(balance="500.00")
    Wallet.objects.filter(pk=wallet.pk).update(next_fee_at=timezone.now())

    result = fees_charge_due.apply().get()

    assert result["charged"] == 1
    assert result["totals"] == {"KZT": "200.00"}
    assert FeeCharge.objects.filter(wallet=wallet, status="paid").count() == 1


def test_the_beat_schedule_runs_the_task_daily():
    entry = settings.CELERY_BEAT_SCHEDULE["fees-charge-due"]
    assert entry["task"] == fees_charge_due.name
    schedule = entry["schedule"]  # a crontab: one hour and minute, every day
    assert (len(schedule.hour), len(schedule.minute)) == (1, 1)
    assert schedule.day_of_month == set(range(1, 32))
    assert schedule.day_of_week == set(range(7))
    assert schedule.month_of_year == set(range(1, 13))
