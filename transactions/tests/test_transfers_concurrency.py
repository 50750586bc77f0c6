"""Opposite transfers between the same two wallets at once, over the API, on the
real PostgreSQL: no deadlock, no 5xx, exact balances."""

import random
from decimal import Decimal

import pytest

from conftest import TEST_RATES, client_for, run_in_threads
from transactions.models import Transaction
from transactions.selectors import ledger_reconcile
from wallets.models import Wallet

pytestmark = pytest.mark.django_db(transaction=True)

THREADS = 8  # half send A -> B, half B -> A
TRANSFERS_PER_THREAD = 25


def opposite_transfers(a: Wallet, b: Wallet) -> list[tuple[int, int, str, str]]:
    """Each thread: many transfers one way; returns (thread, status, code, body)."""

    def work(i: int):
        source, destination = (a, b) if i % 2 == 0 else (b, a)
        client = client_for(source.owner)
        rng = random.Random(i)
        outcomes = []
        for _ in range(TRANSFERS_PER_THREAD):
            amount = f"{rng.randint(1, 2000) / 100:.2f}"
            response = client.post(
                "/api/v1/transfers/",
                {
                    "from_wallet": str(source.id),
                    "to_wallet_number": destination.number,
                    "amount": amount,
                },
                format="json",
            )
            body = response.json()
            outcomes.append((i, response.status_code, body.get("code", ""), body))
        return outcomes

    return [o for outcomes in run_in_threads(THREADS, work) for o in outcomes]


def test_opposite_same_currency_transfers_at_once_never_deadlock(make_wallet):
    a = make_wallet(currency="KZT", balance="100.00")
    b = make_wallet(currency="KZT", balance="100.00")

    outcomes = opposite_transfers(a, b)

    assert {(status, code) for _, status, code, _ in outcomes} <= {
        (201, ""),
        (400, "insufficient_funds"),
    }
    net_to_b = sum(
        (
            Decimal(body["amount"]) * (1 if i % 2 == 0 else -1)
            for i, status, _, body in outcomes
            if status == 201
        ),
        Decimal(0),
    )
    succeeded = sum(1 for _, status, _, _ in outcomes if status == 201)
    assert succeeded > 0
    a.refresh_from_db()
    b.refresh_from_db()
    assert a.balance.amount == Decimal("100.00") - net_to_b
    assert b.balance.amount == Decimal("100.00") + net_to_b
    assert Transaction.objects.filter(kind="transfer").count() == succeeded
    assert ledger_reconcile().clean


def test_opposite_cross_currency_transfers_at_once_never_deadlock(make_wallet):
    from wallets.services import exchange_rates_store

    for (base, quote), rate in TEST_RATES.items():
        exchange_rates_store(base=base, rates={quote: rate}, source="test")
    a = make_wallet(currency="KZT", balance="5000.00")
    b = make_wallet(currency="USD", balance="10.00")

    outcomes = opposite_transfers(a, b)

    assert {(status, code) for _, status, code, _ in outcomes} <= {
        (201, ""),
        (400, "insufficient_funds"),
        (400, "invalid_amount"),  # too small to convert to USD
    }
    done = [body for _, status, _, body in outcomes if status == 201]
    assert done
    a_change = sum(
        (
            -Decimal(x["amount"])
            if x["currency"] == "KZT"
            else Decimal(x["credited_amount"])
            for x in done
        ),
        Decimal(0),
    )
    b_change = sum(
        (
            -Decimal(x["amount"])
            if x["currency"] == "USD"
            else Decimal(x["credited_amount"])
            for x in done
        ),
        Decimal(0),
    )
    a.refresh_from_db()
    b.refresh_from_db()
    assert a.balance.amount == Decimal("5000.00") + a_change
    assert b.balance.amount == Decimal("10.00") + b_change
    assert Transaction.objects.filter(kind="transfer").count() == len(done)
    assert ledger_reconcile().clean


def test_identical_transfer_requests_in_flight_at_once_move_money_once(make_wallet):
    a = make_wallet(currency="KZT", balance="100.00")
    b = make_wallet(currency="KZT")
    body = {"from_wallet": str(a.id), "to_wallet_number": b.number, "amount": "30.00"}

    def work(i: int):
        response = client_for(a.owner).post(
            "/api/v1/transfers/", body, format="json", HTTP_IDEMPOTENCY_KEY="once"
        )
        return response.status_code, response.json()

    results = run_in_threads(12, work)
    assert {status for status, _ in results} == {201}
    assert len({body["transaction_id"] for _, body in results}) == 1
    a.refresh_from_db()
    b.refresh_from_db()
    assert (a.balance.amount, b.balance.amount) == (Decimal("70.00"), Decimal("30.00"))
    assert Transaction.objects.filter(kind="transfer").count() == 1
