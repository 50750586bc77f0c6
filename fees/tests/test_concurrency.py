"""Parallel fee runs and credits against the real PostgreSQL."""

import threading
import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.utils import timezone

from conftest import run_in_threads
from fees.models import FeeCharge
from fees.services import fee_charge_due
from transactions import ledger
from transactions.ledger import InsufficientFunds, WalletBlocked
from transactions.models import Transaction
from transactions.selectors import ledger_reconcile
from wallets.models import Wallet

pytestmark = pytest.mark.django_db(transaction=True)


def make_due(wallets: list[Wallet]) -> None:
    Wallet.objects.filter(pk__in=[w.pk for w in wallets]).update(
        next_fee_at=timezone.now()
    )


def test_two_fee_runs_at_once_charge_every_wallet_exactly_once(make_wallet):
    wallets = [make_wallet(balance="1000.00") for _ in range(30)]
    poor = [make_wallet(balance="10.00") for _ in range(6)]
    make_due(wallets + poor)
    as_of = timezone.now()

    summaries = run_in_threads(2, lambda i: fee_charge_due(as_of=as_of, batch_size=4))

    assert sum(s.wallets for s in summaries) == 36
    assert sum(s.charged for s in summaries) == 30
    assert sum(s.blocked for s in summaries) == 6
    for wallet in wallets + poor:
        assert FeeCharge.objects.filter(wallet=wallet).count() == 1
    assert Transaction.objects.filter(kind=Transaction.Kind.FEE).count() == 30
    for wallet in wallets:
        wallet.refresh_from_db()
        assert wallet.balance.amount == Decimal("800.00")
    assert ledger_reconcile().clean


def test_a_fee_run_racing_withdrawals_never_overdraws_and_charges_once(make_wallet):
    wallets = [make_wallet(balance="1000.00") for _ in range(8)]
    make_due(wallets)
    as_of = timezone.now()

    def work(i: int):
        if i == 0:
            return fee_charge_due(as_of=as_of, batch_size=3)
        withdrawn = Decimal(0)
        for wallet in wallets:
            for _ in range(3):
                try:
                    ledger.wallet_withdraw(wallet=wallet, amount=Decimal("150.00"))
                    withdrawn += Decimal("150.00")
                except (InsufficientFunds, WalletBlocked):
                    # Drained below the fee before the run reached it, the
                    # wallet is blocked for the debt: it may no longer send.
                    pass
        return withdrawn

    results = run_in_threads(4, work)

    summary = results[0]
    assert summary.wallets == 8
    for wallet in wallets:
        wallet.refresh_from_db()
        charges = list(FeeCharge.objects.filter(wallet=wallet))
        assert len(charges) == 1
        assert wallet.balance.amount >= 0
        if charges[0].status == FeeCharge.Status.DEBT:
            assert wallet.status == Wallet.Status.BLOCKED
    paid = FeeCharge.objects.filter(status="paid").count()
    total_withdrawn = sum(results[1:], Decimal(0))
    total_left = sum((w.balance.amount for w in wallets), Decimal(0))
    assert total_left == 8 * Decimal("1000.00") - total_withdrawn - paid * 200
    assert ledger_reconcile().clean


def test_simultaneous_deposits_to_a_blocked_wallet_collect_each_debt_once(
    make_wallet,
):
    wallet = make_wallet(balance="0")
    Wallet.objects.filter(pk=wallet.pk).update(
        next_fee_at=timezone.now() - timedelta(days=40)
    )
    fee_charge_due(as_of=timezone.now(), batch_size=10)  # two periods owed
    assert FeeCharge.objects.filter(wallet=wallet, status="debt").count() == 2

    run_in_threads(
        8, lambda i: ledger.wallet_deposit(wallet=wallet, amount=Decimal("100.00"))
    )

    wallet.refresh_from_db()
    assert wallet.balance.amount == Decimal("400.00")  # 800 in, 400 of debt out
    assert wallet.status == Wallet.Status.ACTIVE
    assert FeeCharge.objects.filter(wallet=wallet, status="paid").count() == 2
    assert Transaction.objects.filter(kind=Transaction.Kind.FEE).count() == 2
    assert ledger_reconcile().clean


def test_a_wallet_locked_by_a_payment_when_the_run_reaches_it_is_charged_at_the_end(
    make_wallet,
):
    """The claim skips locked rows; the run comes back for them and waits."""
    busy = make_wallet(balance="1000.00")
    others = [make_wallet(balance="1000.00") for _ in range(3)]
    make_due([busy, *others])
    holding = threading.Event()

    def hold_the_wallet_until_the_fee_run_waits_for_it() -> None:
        try:
            with transaction.atomic():
                Wallet.objects.select_for_update().get(pk=busy.pk)
                holding.set()
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    with connection.cursor() as cursor:
                        cursor.execute(
                            "SELECT count(*) FROM pg_stat_activity WHERE "
                            "datname = current_database() AND wait_event_type = 'Lock'"
                        )
                        if cursor.fetchone()[0]:
                            break
                    time.sleep(0.05)
        finally:
            connection.close()

    holder = threading.Thread(target=hold_the_wallet_until_the_fee_run_waits_for_it)
    holder.start()
    assert holding.wait(30)
    summary = fee_charge_due(as_of=timezone.now(), batch_size=2)
    holder.join(60)

    assert summary.wallets == 4
    busy.refresh_from_db()
    assert busy.balance.amount == Decimal("800.00")
    assert FeeCharge.objects.filter(wallet=busy, status="paid").count() == 1
