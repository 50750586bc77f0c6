"""Threads against the real PostgreSQL: the ledger stays exact under contention."""

import random
from decimal import Decimal

import pytest

from conftest import client_for, run_in_threads
from transactions import ledger
from transactions.ledger import InsufficientFunds
from transactions.models import Entry, Transaction
from transactions.selectors import ledger_reconcile

pytestmark = pytest.mark.django_db(transaction=True)


def test_mixed_deposits_and_withdrawals_on_one_wallet_stay_exact(make_wallet):
    wallet = make_wallet(balance="100.00")
    threads, ops_per_thread = 32, 100

    def work(i: int):
        rng = random.Random(i)
        done = Decimal(0)
        succeeded = 0
        for _ in range(ops_per_thread):
            amount = Decimal(rng.randint(1, 500)) / 100
            try:
                if rng.random() < 0.5:
                    ledger.wallet_deposit(wallet=wallet, amount=amount)
                    done += amount
                else:
                    ledger.wallet_withdraw(wallet=wallet, amount=amount)
                    done -= amount
                succeeded += 1
            except InsufficientFunds:
                pass
        return done, succeeded

    results = run_in_threads(threads, work)
    net = sum((r[0] for r in results), Decimal(0))
    succeeded = sum(r[1] for r in results)

    wallet.refresh_from_db()
    assert wallet.balance.amount == Decimal("100.00") + net
    assert Entry.objects.filter(wallet=wallet).count() == succeeded + 1
    assert Transaction.objects.count() == succeeded + 1
    assert not Entry.objects.filter(wallet=wallet, balance_after__lt=0).exists()
    assert ledger_reconcile().clean


def test_withdrawals_racing_for_the_last_funds_succeed_exactly_as_often_as_affordable(
    make_wallet,
):
    wallet = make_wallet(balance="10.00")

    def work(i: int) -> bool:
        try:
            ledger.wallet_withdraw(wallet=wallet, amount=Decimal("1.00"))
            return True
        except InsufficientFunds:
            return False

    results = run_in_threads(40, work)
    assert sum(results) == 10
    wallet.refresh_from_db()
    assert wallet.balance.amount == Decimal("0.00")
    assert ledger_reconcile().clean


def test_identical_idempotent_requests_in_flight_at_once_move_money_once(
    user, make_wallet
):
    wallet = make_wallet(owner=user, balance="0")
    url = f"/api/v1/wallets/{wallet.id}/operation"
    body = {"operationType": "DEPOSIT", "amount": "7.00"}

    def work(i: int):
        response = client_for(user).post(
            url, body, format="json", HTTP_IDEMPOTENCY_KEY="same-key-for-all"
        )
        return response.status_code, response.json()

    results = run_in_threads(16, work)
    assert {status for status, _ in results} == {201}
    assert len({body["operation_id"] for _, body in results}) == 1
    wallet.refresh_from_db()
    assert wallet.balance.amount == Decimal("7.00")
    assert Transaction.objects.filter(kind="deposit").count() == 1


def test_identical_withdrawals_in_flight_at_once_all_get_the_first_answer(
    user, make_wallet
):
    """The money allows one withdrawal: the twins that wait on the first one's
    row lock must answer with its result, not with "insufficient funds"."""
    wallet = make_wallet(owner=user, balance="10.00")
    url = f"/api/v1/wallets/{wallet.id}/operation"
    body = {"operationType": "WITHDRAW", "amount": "10.00"}

    def work(i: int):
        response = client_for(user).post(
            url, body, format="json", HTTP_IDEMPOTENCY_KEY="one-withdrawal"
        )
        return response.status_code, response.json()

    results = run_in_threads(16, work)
    assert [status for status, _ in results] == [201] * 16, results
    assert len({body["operation_id"] for _, body in results}) == 1
    wallet.refresh_from_db()
    assert wallet.balance.amount == Decimal("0.00")
    assert Transaction.objects.filter(kind="withdrawal").count() == 1
    assert ledger_reconcile().clean
