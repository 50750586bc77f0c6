"""Reversals: a posted transaction undone by a new `reversal` that mirrors its
legs, in full or in proportion, never above the original (also when two race),
linked both ways, refused when the wallet cannot give the money back."""

from __future__ import annotations

import uuid
from collections import defaultdict
from decimal import Decimal

import pytest

from accounts.tests.factories import UserFactory
from conftest import client_for, run_in_threads
from transactions import ledger
from transactions.ledger import (
    AdjustmentSameOperator,
    ReversalExceedsOriginal,
    ReversalInsufficientFunds,
    ReversalNotAllowed,
)
from transactions.models import Entry, Transaction
from transactions.selectors import ledger_reconcile

D = Decimal


def legs(txn: Transaction) -> list[tuple[str, Decimal]]:
    return [
        (e.wallet.number, e.amount.amount)
        for e in Entry.objects.filter(transaction=txn)
        .select_related("wallet")
        .order_by("id")
    ]


def net_per_wallet(*txns: Transaction) -> dict[str, Decimal]:
    net: dict[str, Decimal] = defaultdict(Decimal)
    for txn in txns:
        for number, amount in legs(txn):
            net[number] += amount
    return net


def balance(wallet) -> Decimal:
    wallet.refresh_from_db()
    return wallet.balance.amount


@pytest.fixture
def operators(db):
    return UserFactory(is_staff=True), UserFactory(is_staff=True)


def paid_topup(wallet, service_account, amount="100.00", commission="2.00"):
    topup = ledger.topup_create(wallet=wallet, amount=D(amount))
    return ledger.topup_decide(
        topup_id=topup.id,
        status="paid",
        decided_by=service_account,
        commission=D(commission),
    )


@pytest.mark.django_db
def test_a_full_reversal_of_a_deposit_mirrors_it_and_links_both_ways(
    wallet, user, operators
):
    deposit = ledger.wallet_deposit(wallet=wallet, amount=D("250.00")).transaction
    requester, approver = operators
    pending = ledger.reversal_request(
        original=deposit, reason="deposited twice", requested_by=requester
    )
    assert balance(wallet) == D("1250.00")  # nothing moves before the approval
    reversal = ledger.reversal_approve(
        transaction=pending, approved_by=approver
    ).transaction
    assert balance(wallet) == D("1000.00")
    assert reversal.kind == "reversal" and reversal.reverses_id == deposit.id
    assert reversal.metadata["reverses"] == str(deposit.id)
    assert all(amount == 0 for amount in net_per_wallet(deposit, reversal).values())

    client = client_for(user)
    detail = client.get(f"/api/v1/transactions/{deposit.id}/").json()
    assert detail["reversed_by"] == [str(reversal.id)]
    assert client.get(f"/api/v1/transactions/{reversal.id}/").json()["reverses"] == (
        str(deposit.id)
    )
    newest = client.get(f"/api/v1/wallets/{wallet.id}/transactions/").json()
    entry = newest["results"][0]
    assert (entry["kind"], entry["reverses"], entry["amount"]) == (
        "reversal",
        str(deposit.id),
        "-250.00",
    )
    assert ledger_reconcile().clean


@pytest.mark.django_db
def test_partial_reversals_of_a_conversion_add_up_to_the_original_exactly(
    rates, make_wallet
):
    """A KZT -> USD transfer (with the spread to the fees wallet) reversed in
    three parts: each in proportion at the recorded amounts, half-even, each
    currency balanced; the last part takes exactly what is left."""
    source = make_wallet(currency="KZT", balance="10000.00")
    target = make_wallet(currency="USD")
    original = ledger.transfer_create(
        source=source, destination_number=target.number, amount=D("1000.00")
    ).transaction
    staff, other = UserFactory(is_staff=True), UserFactory(is_staff=True)

    def reverse(amount):
        pending = ledger.reversal_request(
            original=original, reason="dispute", requested_by=staff, amount=amount
        )
        return ledger.reversal_approve(
            transaction=pending, approved_by=other
        ).transaction

    parts = [reverse(D("333.33")), reverse(D("333.33"))]
    for part in parts:
        by_currency: dict[str, Decimal] = defaultdict(Decimal)
        for e in Entry.objects.filter(transaction=part):
            by_currency[e.currency] += e.amount.amount
        assert set(by_currency.values()) == {D(0)}
    first_legs = dict(legs(parts[0]))
    assert first_legs[source.number] == D("333.33")
    proportional = -dict(legs(original))[target.number] * D("333.33") / D("1000")
    # Half-even, and the last USD leg takes the currency's remainder: within a cent.
    assert abs(first_legs[target.number] - proportional) <= D("0.01")
    with pytest.raises(ReversalExceedsOriginal):
        reverse(D("333.35"))
    parts.append(reverse(None))  # the rest: 333.34
    assert parts[-1].metadata["reversed_amount"] == "333.34"
    assert all(amount == 0 for amount in net_per_wallet(original, *parts).values())
    assert balance(source) == D("10000.00") and balance(target) == 0
    with pytest.raises(ReversalExceedsOriginal):
        reverse(None)  # nothing left
    assert ledger_reconcile().clean


@pytest.mark.django_db
def test_a_reversal_is_not_reversed_and_the_requester_does_not_approve(
    wallet, operators
):
    requester, approver = operators
    deposit = ledger.wallet_deposit(wallet=wallet, amount=D("10.00")).transaction
    pending = ledger.reversal_request(
        original=deposit, reason="mistake", requested_by=requester
    )
    with pytest.raises(AdjustmentSameOperator):
        ledger.reversal_approve(transaction=pending, approved_by=requester)
    with pytest.raises(ReversalNotAllowed):  # a pending reversal is not posted
        ledger.reversal_request(original=pending, reason="x", requested_by=approver)
    reversal = ledger.reversal_approve(transaction=pending, approved_by=approver)
    with pytest.raises(ReversalNotAllowed):
        ledger.reversal_request(
            original=reversal.transaction, reason="undo", requested_by=approver
        )
    rejected = ledger.reversal_request(
        original=ledger.wallet_deposit(wallet=wallet, amount=D("5.00")).transaction,
        reason="no",
        requested_by=requester,
    )
    ledger.reversal_reject(transaction=rejected, rejected_by=approver, note="fine")
    rejected.refresh_from_db()
    assert rejected.status == "rejected"


@pytest.mark.django_db
def test_a_wallet_that_spent_the_money_refuses_the_reversal_with_409(wallet, operators):
    requester, approver = operators
    deposit = ledger.wallet_deposit(wallet=wallet, amount=D("500.00")).transaction
    ledger.wallet_withdraw(wallet=wallet, amount=D("1400.00"))
    pending = ledger.reversal_request(
        original=deposit, reason="fraud", requested_by=requester
    )
    with pytest.raises(ReversalInsufficientFunds) as refused:
        ledger.reversal_approve(transaction=pending, approved_by=approver)
    assert (refused.value.status_code, refused.value.code) == (
        409,
        "insufficient_funds",
    )
    assert balance(wallet) == D("100.00")
    pending.refresh_from_db()
    assert pending.status == "pending"  # may be approved once the money is there


@pytest.mark.django_db
def test_a_blocked_wallet_still_gives_the_money_back(wallet, operators):
    requester, approver = operators
    deposit = ledger.wallet_deposit(wallet=wallet, amount=D("50.00")).transaction
    ledger.wallet_block(wallet=wallet, reason="fraud review")
    pending = ledger.reversal_request(
        original=deposit, reason="fraud", requested_by=requester
    )
    ledger.reversal_approve(transaction=pending, approved_by=approver)
    assert balance(wallet) == D("1000.00")


@pytest.mark.django_db
def test_a_fee_reversal_refunds_the_fee(make_wallet, operators):
    from django.conf import settings
    from django.utils import timezone

    from fees.models import FeeCharge
    from fees.services import fee_charge_due
    from wallets.models import Wallet

    payer = make_wallet(balance="500.00")
    Wallet.objects.filter(pk=payer.pk).update(next_fee_at=timezone.now())
    fee_charge_due(as_of=timezone.now())
    charge = FeeCharge.objects.get(wallet=payer)
    assert balance(payer) == D("500.00") - settings.FEE_AMOUNT
    requester, approver = operators
    pending = ledger.reversal_request(
        original=charge.transaction, reason="goodwill", requested_by=requester
    )
    ledger.reversal_approve(transaction=pending, approved_by=approver)
    assert balance(payer) == D("500.00")
    assert ledger_reconcile().clean


# --- The provider's chargeback --------------------------------------------------------


@pytest.mark.django_db
def test_a_chargeback_reverses_a_paid_topup_in_part_idempotently(
    wallet, service_account, service_api
):
    topup = paid_topup(wallet, service_account)
    assert balance(wallet) == D("1098.00")
    url = f"/api/v1/service/topups/{topup.id}/reversal/"
    key = str(uuid.uuid4())
    body = {"amount": "50.00", "reason": "cardholder dispute"}
    first = service_api.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY=key)
    again = service_api.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY=key)
    assert first.status_code == again.status_code == 201
    assert first.content == again.content
    answer = first.json()
    assert (answer["reverses"], answer["amount"], answer["currency"]) == (
        str(topup.transaction_id),
        "50.00",
        "KZT",
    )
    # Half the credit back, and half the commission refunded with it.
    assert balance(wallet) == D("1098.00") - D("50.00") + D("1.00")
    rest = service_api.post(url, {"reason": "the rest"}, format="json")
    assert rest.status_code == 201 and rest.json()["amount"] == "50.00"
    assert balance(wallet) == D("1000.00")
    over = service_api.post(url, {"amount": "0.01", "reason": "more"}, format="json")
    assert (over.status_code, over.json()["code"]) == (409, "reversal_exceeds_original")
    assert ledger_reconcile().clean


@pytest.mark.django_db
def test_chargeback_refusals(wallet, service_account, service_api, auth_api):
    pending = ledger.topup_create(wallet=wallet, amount=D("10.00"))
    url = f"/api/v1/service/topups/{pending.id}/reversal/"
    not_paid = service_api.post(url, {"reason": "x"}, format="json")
    assert (not_paid.status_code, not_paid.json()["code"]) == (
        400,
        "reversal_not_allowed",
    )
    missing = service_api.post(
        f"/api/v1/service/topups/{uuid.uuid4()}/reversal/",
        {"reason": "x"},
        format="json",
    )
    assert (missing.status_code, missing.json()["code"]) == (404, "topup_not_found")
    paid = paid_topup(wallet, service_account)
    url = f"/api/v1/service/topups/{paid.id}/reversal/"
    assert auth_api.post(url, {"reason": "x"}, format="json").status_code == 404
    no_reason = service_api.post(url, {"amount": "1.00"}, format="json")
    assert no_reason.status_code == 400 and "reason" in no_reason.json()
    bad = service_api.post(url, {"amount": "1.001", "reason": "x"}, format="json")
    assert bad.status_code == 400
    ledger.wallet_withdraw(wallet=wallet, amount=D("1098.00"))
    poor = service_api.post(url, {"reason": "dispute"}, format="json")
    assert (poor.status_code, poor.json()["code"]) == (409, "insufficient_funds")
    assert Transaction.objects.filter(kind="reversal").count() == 0


@pytest.mark.django_db(transaction=True)
def test_racing_reversals_never_give_back_more_than_the_original(
    make_wallet, service_account
):
    """Eight full chargebacks of one top-up at once: one posts, the others are
    409s (they see what the first left: nothing)."""
    wallet = make_wallet(balance="1000.00")
    topup = paid_topup(wallet, service_account)
    client = client_for(service_account)

    def chargeback(i: int):
        response = client.post(
            f"/api/v1/service/topups/{topup.id}/reversal/",
            {"reason": f"dispute {i}"},
            format="json",
        )
        return response.status_code, response.json().get("code")

    results = run_in_threads(8, chargeback)
    assert sorted(results, key=str) == sorted(
        [(201, None)] + [(409, "reversal_exceeds_original")] * 7, key=str
    )
    assert balance(wallet) == D("1000.00")
    assert Transaction.objects.filter(kind="reversal").count() == 1
    assert ledger_reconcile().clean
