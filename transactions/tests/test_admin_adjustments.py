"""Two-person adjustments at the service level: requested by one operator,
posted only when a different one approves, the pending row itself becoming
the posted transaction."""

import threading
from decimal import Decimal

import pytest
from django.db import connection

from accounts.tests.operators import FINANCE, operator
from transactions import ledger
from transactions.ledger import InsufficientFunds, InvalidAmount, wallet_block
from transactions.models import Entry, Transaction
from transactions.selectors import ledger_reconcile
from wallets.errors import WalletNotFound
from wallets.models import Wallet
from wallets.selectors import system_wallet


@pytest.fixture
def alice(db):
    return operator(FINANCE, email="alice@ops.example")


@pytest.fixture
def bob(db):
    return operator(FINANCE, email="bob@ops.example")


@pytest.mark.django_db
class TestRequest:
    def test_a_request_is_pending_with_no_entries_and_moves_nothing(
        self, wallet, alice
    ):
        txn = ledger.adjustment_request(
            wallet=wallet,
            amount=Decimal("25.50"),
            reason="refund of a failed card payment",
            requested_by=alice,
        )
        wallet.refresh_from_db()
        assert txn.kind == Transaction.Kind.ADJUSTMENT
        assert txn.status == Transaction.Status.PENDING
        assert txn.posted_at is None
        assert not Entry.objects.filter(transaction=txn).exists()
        assert wallet.balance.amount == Decimal("1000.00")
        assert txn.metadata["wallet_id"] == str(wallet.pk)
        assert txn.metadata["amount"] == "25.50"
        assert txn.metadata["reason"] == "refund of a failed card payment"
        assert txn.metadata["requested_by"] == str(alice.pk)

    @pytest.mark.parametrize("amount", ["0", "0.001", "NaN", "1000000000000"])
    def test_bad_amounts_are_refused(self, wallet, alice, amount):
        with pytest.raises(InvalidAmount):
            ledger.adjustment_request(
                wallet=wallet, amount=Decimal(amount), reason="x", requested_by=alice
            )
        assert not Transaction.objects.filter(kind="adjustment").exists()

    def test_a_reason_is_mandatory(self, wallet, alice):
        """Its own code, not a neighbour's (it used to say invalid_amount)."""
        with pytest.raises(ledger.ReasonRequired) as error:
            ledger.adjustment_request(
                wallet=wallet, amount=Decimal("1"), reason="   ", requested_by=alice
            )
        assert (error.value.code, error.value.detail) == (
            "reason_required",
            "A reason is required.",
        )

    def test_a_debit_larger_than_the_balance_is_refused_up_front(self, wallet, alice):
        with pytest.raises(InsufficientFunds):
            ledger.adjustment_request(
                wallet=wallet,
                amount=Decimal("-1000.01"),
                reason="x",
                requested_by=alice,
            )

    def test_system_wallets_cannot_be_adjusted(self, alice):
        external = system_wallet("KZT", Wallet.SystemCode.EXTERNAL)
        with pytest.raises(WalletNotFound):
            ledger.adjustment_request(
                wallet=external, amount=Decimal("1"), reason="x", requested_by=alice
            )


@pytest.mark.django_db
class TestDecision:
    def test_a_different_operator_posts_it_as_the_same_transaction(
        self, wallet, alice, bob
    ):
        txn = ledger.adjustment_request(
            wallet=wallet,
            amount=Decimal("-100.00"),
            reason="chargeback",
            requested_by=alice,
        )
        posting = ledger.adjustment_approve(transaction=txn, approved_by=bob)
        assert posting.transaction.pk == txn.pk
        txn.refresh_from_db()
        wallet.refresh_from_db()
        assert txn.status == Transaction.Status.POSTED
        assert txn.posted_at is not None
        assert txn.initiator == alice
        assert txn.metadata["approved_by"] == str(bob.pk)
        assert wallet.balance.amount == Decimal("900.00")
        legs = {e.wallet_id: e.amount.amount for e in txn.entries.all()}
        external = system_wallet("KZT", Wallet.SystemCode.EXTERNAL)
        assert legs == {wallet.pk: Decimal("-100.00"), external.pk: Decimal("100.00")}
        assert Transaction.objects.filter(kind="adjustment").count() == 1
        assert ledger_reconcile().clean

    def test_the_requester_cannot_approve_their_own_request(self, wallet, alice):
        txn = ledger.adjustment_request(
            wallet=wallet, amount=Decimal("5"), reason="x", requested_by=alice
        )
        with pytest.raises(ledger.AdjustmentSameOperator):
            ledger.adjustment_approve(transaction=txn, approved_by=alice)
        txn.refresh_from_db()
        wallet.refresh_from_db()
        assert txn.status == Transaction.Status.PENDING
        assert wallet.balance.amount == Decimal("1000.00")

    def test_a_decided_adjustment_cannot_be_decided_again(self, wallet, alice, bob):
        txn = ledger.adjustment_request(
            wallet=wallet, amount=Decimal("5"), reason="x", requested_by=alice
        )
        ledger.adjustment_approve(transaction=txn, approved_by=bob)
        with pytest.raises(ledger.TransactionNotPending):
            ledger.adjustment_approve(
                transaction=Transaction.objects.get(pk=txn.pk), approved_by=bob
            )
        with pytest.raises(ledger.TransactionNotPending):
            ledger.adjustment_reject(transaction=txn, rejected_by=bob)
        wallet.refresh_from_db()
        assert wallet.balance.amount == Decimal("1005.00"), "posted once"

    def test_a_rejected_adjustment_moves_nothing_and_cannot_be_approved(
        self, wallet, alice, bob
    ):
        txn = ledger.adjustment_request(
            wallet=wallet, amount=Decimal("5"), reason="x", requested_by=alice
        )
        ledger.adjustment_reject(transaction=txn, rejected_by=bob, note="no ticket")
        assert txn.status == Transaction.Status.REJECTED
        assert txn.metadata["rejection_note"] == "no ticket"
        with pytest.raises(ledger.TransactionNotPending):
            ledger.adjustment_approve(transaction=txn, approved_by=bob)
        wallet.refresh_from_db()
        assert wallet.balance.amount == Decimal("1000.00")
        assert not txn.entries.exists()

    def test_a_debit_that_no_longer_fits_fails_and_stays_pending(
        self, make_wallet, alice, bob
    ):
        wallet = make_wallet(balance="50.00")
        txn = ledger.adjustment_request(
            wallet=wallet, amount=Decimal("-40"), reason="x", requested_by=alice
        )
        ledger.wallet_withdraw(wallet=wallet, amount=Decimal("20"))
        with pytest.raises(InsufficientFunds):
            ledger.adjustment_approve(transaction=txn, approved_by=bob)
        txn.refresh_from_db()
        assert txn.status == Transaction.Status.PENDING
        assert not txn.entries.exists()

    def test_a_blocked_wallet_can_be_adjusted_both_ways(self, wallet, alice, bob):
        wallet_block(wallet=wallet, reason="fraud review")
        for amount in ("-10.00", "3.00"):
            txn = ledger.adjustment_request(
                wallet=wallet, amount=Decimal(amount), reason="x", requested_by=alice
            )
            ledger.adjustment_approve(transaction=txn, approved_by=bob)
        wallet.refresh_from_db()
        assert wallet.balance.amount == Decimal("993.00")
        assert wallet.is_blocked


@pytest.mark.django_db(transaction=True)
def test_two_operators_confirming_at_once_post_it_once(make_wallet):
    """Two approvals racing: the conditional UPDATE lets exactly one post."""
    wallet = make_wallet(balance="100.00")
    alice = operator(FINANCE)
    approvers = [operator(FINANCE), operator(FINANCE)]
    txn = ledger.adjustment_request(
        wallet=wallet, amount=Decimal("7.00"), reason="x", requested_by=alice
    )
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def approve(user):
        try:
            barrier.wait()
            ledger.adjustment_approve(
                transaction=Transaction.objects.get(pk=txn.pk), approved_by=user
            )
            outcomes.append("posted")
        except ledger.TransactionNotPending:
            outcomes.append("already decided")
        finally:
            connection.close()

    threads = [threading.Thread(target=approve, args=(user,)) for user in approvers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["already decided", "posted"]
    wallet.refresh_from_db()
    assert wallet.balance.amount == Decimal("107.00")
    assert Entry.objects.filter(transaction_id=txn.pk).count() == 2
    assert ledger_reconcile().clean
