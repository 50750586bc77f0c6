"""Reversals in the back-office: one operator requests (a reason, all or an
amount), a different one confirms on the review page; support may only look."""

from decimal import Decimal

import pytest
from django.contrib.admin.models import LogEntry
from django.urls import reverse

from accounts.tests.operators import FINANCE, SUPPORT, admin_client, operator
from transactions import ledger
from transactions.models import Transaction
from transactions.selectors import ledger_reconcile

D = Decimal


def change_url(txn) -> str:
    return reverse("admin:transactions_transaction_change", args=[txn.pk])


def reverse_url(txn) -> str:
    return reverse("admin:transactions_transaction_reverse", args=[txn.pk])


def review_url(txn) -> str:
    return reverse("admin:transactions_transaction_review", args=[txn.pk])


@pytest.fixture
def alice(db):
    return admin_client(operator(FINANCE, email="alice@ops.example"))


@pytest.fixture
def bob(db):
    return admin_client(operator(FINANCE, email="bob@ops.example"))


@pytest.fixture
def deposit(wallet):
    return ledger.wallet_deposit(wallet=wallet, amount=D("300.00")).transaction


@pytest.mark.django_db
def test_requested_by_one_confirmed_by_another(alice, bob, wallet, deposit):
    page = alice.get(change_url(deposit)).content.decode()
    assert reverse_url(deposit) in page
    form = alice.get(reverse_url(deposit)).content.decode()
    assert "300.00 KZT" in form  # what is left to reverse
    response = alice.post(
        reverse_url(deposit), {"amount": "120.00", "reason": "card dispute"}
    )
    pending = Transaction.objects.get(kind="reversal")
    assert response.status_code == 302 and response["Location"] == review_url(pending)
    assert pending.status == "pending" and pending.reverses_id == deposit.id

    own = alice.get(review_url(pending)).content.decode()
    assert 'id="own-request"' in own and 'id="approve-button"' not in own
    alice.post(review_url(pending), {"decision": "approve"})  # refused: same person
    pending.refresh_from_db()
    assert pending.status == "pending"

    review = bob.get(review_url(pending)).content.decode()
    assert "120.00 KZT" in review and "card dispute" in review
    assert "-120.00 KZT" in review  # the wallet's leg
    bob.post(review_url(pending), {"decision": "approve"})
    pending.refresh_from_db()
    wallet.refresh_from_db()
    assert pending.status == "posted"
    assert wallet.balance.amount == D("1180.00")
    assert pending.metadata["approved_by_email"] == "bob@ops.example"
    logged = LogEntry.objects.filter(object_id=str(deposit.pk)).values_list(
        "change_message", flat=True
    )
    assert any("Approved reversal of 120.00 KZT" in m for m in logged)
    detail = bob.get(change_url(deposit)).content.decode()
    assert str(pending.pk) in detail  # reversed by
    assert ledger_reconcile().clean


@pytest.mark.django_db
def test_bad_requests_say_why_and_change_nothing(alice, deposit):
    for data, says in [
        ({"amount": "", "reason": ""}, "A reason is required."),
        ({"amount": "abc", "reason": "x"}, "Write the amount as digits"),
        ({"amount": "300.01", "reason": "x"}, "more than is left to reverse"),
        ({"amount": "1.001", "reason": "x"}, "at most 2 decimal places"),
    ]:
        page = alice.post(reverse_url(deposit), data).content.decode()
        assert says in page, data
    assert not Transaction.objects.filter(kind="reversal").exists()


@pytest.mark.django_db
def test_a_reversal_offers_no_reversal_and_support_only_looks(alice, bob, deposit):
    pending = ledger.reversal_request(
        original=deposit,
        reason="x",
        requested_by=operator(FINANCE, email="carol@ops.example"),
    )
    posted = ledger.reversal_approve(
        transaction=pending, approved_by=operator(FINANCE)
    ).transaction
    assert reverse_url(posted) not in alice.get(change_url(posted)).content.decode()
    refused = alice.get(reverse_url(posted), follow=True).content.decode()
    assert "Only a posted transaction" in refused
    support = admin_client(operator(SUPPORT))
    assert support.get(reverse_url(deposit)).status_code == 403
    assert reverse_url(deposit) not in support.get(change_url(deposit)).content.decode()


@pytest.mark.django_db
def test_a_paid_fee_links_to_its_refund_and_a_debt_says_waive(alice, make_wallet):
    from django.utils import timezone

    from fees.models import FeeCharge
    from fees.services import fee_charge_due
    from wallets.models import Wallet

    payer, debtor = make_wallet(balance="500.00"), make_wallet()
    Wallet.objects.filter(pk__in=[payer.pk, debtor.pk]).update(
        next_fee_at=timezone.now()
    )
    fee_charge_due(as_of=timezone.now())
    paid = FeeCharge.objects.get(wallet=payer)
    page = alice.get(
        reverse("admin:fees_feecharge_change", args=[paid.pk])
    ).content.decode()
    assert reverse_url(paid.transaction) in page
    debt = FeeCharge.objects.get(wallet=debtor)
    page = alice.get(
        reverse("admin:fees_feecharge_change", args=[debt.pk])
    ).content.decode()
    assert "A debt is not refunded: waive it." in page
