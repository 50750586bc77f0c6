"""Racing top-up decisions against the real PostgreSQL: exactly one wins."""

import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from decimal import Decimal

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from conftest import client_for
from transactions import ledger
from transactions.models import Entry, TopUp, Transaction
from transactions.selectors import ledger_reconcile

pytestmark = pytest.mark.django_db(transaction=True)


def run_in_threads(works: list[Callable[[], object]]) -> list:
    """Run every callable on its own thread, all released together."""
    barrier = threading.Barrier(len(works))

    def runner(work: Callable[[], object]):
        try:
            barrier.wait()
            return work()
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=len(works)) as pool:
        return list(pool.map(runner, works))


def put(client, topup_id, body: dict):
    return lambda: (
        client.put(
            f"/api/v1/service/topups/{topup_id}/", body, format="json"
        ).status_code
    )


def test_paid_and_rejected_racing_exactly_one_wins(make_wallet, service_account):
    """Of `paid` and `rejected` sent at once, one gets 200 and the other 409;
    money moves exactly when `paid` won."""
    wallet = make_wallet(balance="0")
    client = client_for(service_account)
    rounds = 8
    outcomes = Counter()
    for _ in range(rounds):
        topup = ledger.topup_create(wallet=wallet, amount=Decimal("10.00"))
        paid, rejected = run_in_threads(
            [
                put(client, topup.id, {"status": "paid", "commission": "1.00"}),
                put(client, topup.id, {"status": "rejected"}),
            ]
        )
        assert sorted([paid, rejected]) == [200, 409]
        topup.refresh_from_db()
        winner = "paid" if paid == 200 else "rejected"
        assert topup.status == winner
        outcomes[winner] += 1
    wallet.refresh_from_db()
    assert wallet.balance.amount == Decimal("9.00") * outcomes["paid"]
    assert (
        Transaction.objects.filter(kind="topup").count()
        == TopUp.objects.filter(status="paid").count()
        == outcomes["paid"]
    )
    assert ledger_reconcile().clean


def test_the_same_decision_sent_many_times_at_once_pays_once(
    make_wallet, service_account
):
    wallet = make_wallet(balance="0")
    client = client_for(service_account)
    topup = ledger.topup_create(wallet=wallet, amount=Decimal("25.00"))
    codes = run_in_threads([put(client, topup.id, {"status": "paid"})] * 6)
    assert codes == [200] * 6
    wallet.refresh_from_db()
    assert wallet.balance.amount == Decimal("25.00")
    assert Entry.objects.filter(wallet=wallet, transaction__kind="topup").count() == 1
    assert ledger_reconcile().clean


def test_a_paid_decision_racing_the_expiry_sweep_is_never_both(
    make_wallet, service_account
):
    """The sweep skips a top-up a decision holds; a decision on a stale top-up
    expires it itself. Either way: expired and nothing moved, or paid once."""
    wallet = make_wallet(balance="0")
    client = client_for(service_account)
    topups = [
        ledger.topup_create(wallet=wallet, amount=Decimal("1.00")) for _ in range(6)
    ]
    TopUp.objects.filter(pk__in=[t.pk for t in topups]).update(
        created_at=timezone.now() - settings.TOPUP_TTL - timedelta(seconds=1)
    )
    works = [put(client, t.id, {"status": "paid"}) for t in topups]
    works.append(lambda: ledger.topup_expire_stale())
    *codes, _ = run_in_threads(works)
    assert codes == [409] * 6
    assert set(TopUp.objects.values_list("status", flat=True)) == {"expired"}
    wallet.refresh_from_db()
    assert wallet.balance.amount == 0
    assert not Transaction.objects.filter(kind="topup").exists()
