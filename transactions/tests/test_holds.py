"""Holds and payouts through the ledger's services: the money held is out of
every debit's reach, each hold resolves exactly once, expiry is never early,
and reconcile checks held == the sum of active holds."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from fees.services import fee_charge_due
from transactions import ledger
from transactions.ledger import (
    HoldExpired,
    HoldNotActive,
    HoldOfPayout,
    InsufficientFunds,
    InvalidAmount,
    PayoutAlreadyDecided,
    PayoutExpired,
    PayoutNotFound,
    WalletBlocked,
    wallet_block,
)
from transactions.models import Entry, Hold, Payout, Transaction
from transactions.selectors import ledger_reconcile
from wallets.models import Wallet
from wallets.selectors import system_wallet

pytestmark = pytest.mark.django_db

D = Decimal
LATER = timedelta(hours=1)


def held_and_balance(wallet: Wallet) -> tuple[Decimal, Decimal]:
    wallet.refresh_from_db()
    return wallet.held, wallet.balance.amount


def hold(wallet: Wallet, amount: str, *, expires_in: timedelta = LATER) -> Hold:
    return ledger.hold_create(
        wallet=wallet, amount=D(amount), expires_at=timezone.now() + expires_in
    )


def provider(currency: str = "KZT") -> Wallet:
    return system_wallet(currency, Wallet.SystemCode.PROVIDER)


def provider_total(currency: str = "KZT") -> Decimal:
    return sum(
        (e.amount.amount for e in Entry.objects.filter(wallet=provider(currency))),
        D(0),
    )


# --- The money held is out of every debit's reach ---------------------------------------


def test_a_hold_reserves_money_without_moving_it(wallet):
    hold(wallet, "300.00")
    assert held_and_balance(wallet) == (D("300.00"), D("1000.00"))
    assert wallet.available_balance == D("700.00")
    assert not Transaction.objects.filter(kind=Transaction.Kind.PAYOUT).exists()
    assert ledger_reconcile().clean


def test_every_debit_needs_the_available_balance(wallet, make_wallet, user):
    hold(wallet, "900.00")
    with pytest.raises(InsufficientFunds):
        ledger.wallet_withdraw(wallet=wallet, amount=D("100.01"))
    with pytest.raises(InsufficientFunds):
        hold(wallet, "100.01")
    other = make_wallet(currency="KZT")
    with pytest.raises(InsufficientFunds):
        ledger.transfer_create(
            source=wallet,
            destination_number=other.number,
            amount=D("100.01"),
            initiator=user,
        )
    ledger.wallet_withdraw(wallet=wallet, amount=D("100.00"))  # exactly what is free
    assert held_and_balance(wallet) == (D("900.00"), D("900.00"))
    assert ledger_reconcile().clean


def test_the_database_refuses_a_balance_below_the_money_held(wallet):
    hold(wallet, "600.00")
    with pytest.raises(IntegrityError), transaction.atomic():
        Wallet.objects.filter(pk=wallet.pk).update(balance=D("599.99"))


def test_a_blocked_wallet_cannot_hold_but_keeps_its_holds(wallet, make_wallet):
    kept = hold(wallet, "100.00")
    wallet_block(wallet=wallet, reason="fraud check")
    wallet.refresh_from_db()
    with pytest.raises(WalletBlocked):
        hold(wallet, "1.00")
    posting = ledger.hold_capture(
        hold_id=kept.id, counterpart=provider(), kind=Transaction.Kind.PAYOUT
    )
    assert posting.balances[wallet.id] == D("900.00")
    assert held_and_balance(wallet) == (D("0.00"), D("900.00"))


# --- Capture, void, expiry: each exactly once -------------------------------------------


def test_a_partial_capture_posts_that_much_and_releases_the_rest(wallet):
    reserved = hold(wallet, "300.00")
    posting = ledger.hold_capture(
        hold_id=reserved.id,
        counterpart=provider(),
        kind=Transaction.Kind.PAYOUT,
        amount=D("120.50"),
    )
    assert held_and_balance(wallet) == (D("0.00"), D("879.50"))
    legs = {e.wallet_id: e.amount.amount for e in posting.transaction.entries.all()}
    assert legs == {wallet.id: D("-120.50"), provider().id: D("120.50")}
    reserved.refresh_from_db()
    assert (reserved.status, reserved.captured_amount) == ("captured", D("120.50"))
    assert reserved.transaction_id == posting.transaction.id
    assert ledger_reconcile().clean


def test_more_than_the_hold_cannot_be_captured(wallet):
    reserved = hold(wallet, "300.00")
    with pytest.raises(InvalidAmount):
        ledger.hold_capture(
            hold_id=reserved.id,
            counterpart=provider(),
            kind=Transaction.Kind.PAYOUT,
            amount=D("300.01"),
        )
    assert held_and_balance(wallet) == (D("300.00"), D("1000.00"))


def test_a_resolved_hold_cannot_be_resolved_again(wallet):
    voided = hold(wallet, "100.00")
    ledger.hold_void(hold_id=voided.id, reason="customer asked")
    with pytest.raises(HoldNotActive):
        ledger.hold_void(hold_id=voided.id, reason="twice")
    with pytest.raises(HoldNotActive):
        ledger.hold_capture(
            hold_id=voided.id, counterpart=provider(), kind=Transaction.Kind.PAYOUT
        )
    captured = hold(wallet, "100.00")
    ledger.hold_capture(
        hold_id=captured.id, counterpart=provider(), kind=Transaction.Kind.PAYOUT
    )
    with pytest.raises(HoldNotActive):
        ledger.hold_void(hold_id=captured.id, reason="too late")
    assert held_and_balance(wallet) == (D("0.00"), D("900.00"))
    assert ledger_reconcile().clean


def test_expiry_is_never_early_and_an_expired_hold_cannot_be_captured(wallet):
    soon = hold(wallet, "100.00", expires_in=timedelta(minutes=5))
    late = hold(wallet, "50.00", expires_in=timedelta(minutes=10))
    assert ledger.hold_expire_due(now=timezone.now()) == 0
    assert ledger.hold_expire_due(now=soon.expires_at - timedelta(microseconds=1)) == 0
    assert ledger.hold_expire_due(now=soon.expires_at) == 1
    assert held_and_balance(wallet) == (D("50.00"), D("1000.00"))
    soon.refresh_from_db()
    assert soon.status == "expired"
    with pytest.raises(HoldNotActive):
        ledger.hold_capture(
            hold_id=soon.id, counterpart=provider(), kind=Transaction.Kind.PAYOUT
        )
    # Past its expiry but not yet swept: a capture expires it instead.
    Hold.objects.filter(pk=late.pk).update(expires_at=timezone.now())
    with pytest.raises(HoldExpired):
        ledger.hold_capture(
            hold_id=late.id, counterpart=provider(), kind=Transaction.Kind.PAYOUT
        )
    late.refresh_from_db()
    assert late.status == "expired"
    assert held_and_balance(wallet) == (D("0.00"), D("1000.00"))
    assert ledger_reconcile().clean


def test_reconcile_reports_held_that_is_not_the_sum_of_active_holds(wallet):
    hold(wallet, "100.00")
    with connection.cursor() as cursor:
        cursor.execute("UPDATE wallets_wallet SET held = 90 WHERE id = %s", [wallet.pk])
    report = ledger_reconcile()
    assert not report.clean
    assert report.held_mismatches == [
        f"wallet {wallet.number} (user, KZT): held 90.00, active holds sum to "
        "100.00, balance 1000.00"
    ]


# --- Payouts -----------------------------------------------------------------------------


def payout(wallet: Wallet, amount: str = "250.00") -> Payout:
    return ledger.payout_create(
        wallet=wallet, amount=D(amount), destination="card_4242", initiator=wallet.owner
    )


def test_a_paid_payout_is_one_payout_transaction_to_the_provider(wallet):
    before = provider_total()
    created = payout(wallet)
    assert created.status == "pending"
    assert held_and_balance(wallet) == (D("250.00"), D("1000.00"))
    paid = ledger.payout_decide(
        payout_id=created.id, status="paid", decided_by=None, provider_reference="p-1"
    )
    assert paid.status == "paid"
    txn = paid.transaction
    assert txn.kind == "payout" and txn.status == "posted"
    assert txn.metadata["payout_id"] == str(created.id)
    assert held_and_balance(wallet) == (D("0.00"), D("750.00"))
    assert provider_total() - before == D("250.00")
    # The same decision again: 200, nothing moves; the other: 409.
    again = ledger.payout_decide(payout_id=created.id, status="paid", decided_by=None)
    assert again.transaction_id == txn.id
    with pytest.raises(PayoutAlreadyDecided):
        ledger.payout_decide(payout_id=created.id, status="failed", decided_by=None)
    assert Transaction.objects.filter(kind="payout").count() == 1
    assert ledger_reconcile().clean


def test_a_failed_or_canceled_payout_releases_its_hold(wallet, other_user):
    failed = payout(wallet)
    ledger.payout_decide(
        payout_id=failed.id, status="failed", decided_by=None, reason="card closed"
    )
    failed.refresh_from_db()
    assert (failed.status, failed.failure_reason) == ("failed", "card closed")
    canceled = payout(wallet)
    with pytest.raises(PayoutNotFound):
        ledger.payout_cancel(payout_id=canceled.id, owner=other_user)
    ledger.payout_cancel(payout_id=canceled.id, owner=wallet.owner)
    assert ledger.payout_cancel(payout_id=canceled.id, owner=wallet.owner).status == (
        "canceled"
    )
    with pytest.raises(PayoutAlreadyDecided):
        ledger.payout_decide(payout_id=canceled.id, status="paid", decided_by=None)
    assert held_and_balance(wallet) == (D("0.00"), D("1000.00"))
    assert not Transaction.objects.filter(kind="payout").exists()
    with pytest.raises(HoldOfPayout):
        ledger.hold_void(hold_id=canceled.hold_id, reason="not this way")


def test_a_payout_expires_after_its_ttl_and_cannot_be_decided(wallet):
    created = payout(wallet)
    assert (
        ledger.payout_expire_stale(now=created.expires_at - timedelta(seconds=1)) == 0
    )
    assert ledger.payout_expire_stale(now=created.expires_at) == 1
    with pytest.raises(PayoutExpired):
        ledger.payout_decide(payout_id=created.id, status="paid", decided_by=None)
    late = payout(wallet)
    Payout.objects.filter(pk=late.pk).update(expires_at=timezone.now())
    with pytest.raises(PayoutExpired):
        ledger.payout_decide(payout_id=late.id, status="paid", decided_by=None)
    late.refresh_from_db()
    assert late.status == "expired" and late.hold.status == "expired"
    assert held_and_balance(wallet) == (D("0.00"), D("1000.00"))
    assert ledger_reconcile().clean


def test_the_fee_sees_only_the_available_balance(settings, user, make_wallet):
    wallet = make_wallet(owner=user, balance="300.00")
    payout(wallet, "150.00")  # 150 available: less than the 200 fee
    Wallet.objects.filter(pk=wallet.pk).update(next_fee_at=timezone.now())
    fee_charge_due(as_of=timezone.now(), batch_size=10)
    wallet.refresh_from_db()
    assert wallet.status == "blocked"
    assert (wallet.held, wallet.balance.amount) == (D("150.00"), D("300.00"))
    # Its pending payout keeps its reservation and can still be paid; no new one.
    pending = Payout.objects.get(wallet=wallet)
    ledger.payout_decide(payout_id=pending.id, status="paid", decided_by=None)
    with pytest.raises(WalletBlocked):
        payout(wallet, "1.00")
    assert held_and_balance(wallet) == (D("0.00"), D("150.00"))
    assert ledger_reconcile().clean
