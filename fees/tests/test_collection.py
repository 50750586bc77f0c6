"""Every kind of credit to a blocked wallet collects its fee debt in the same
DB transaction: deposit, transfer in, exchange in, paid top-up."""

from decimal import Decimal

import pytest
from django.utils import timezone

from fees.models import FeeCharge
from fees.selectors import fee_debt_total
from fees.services import FEE_BLOCK_REASON, fee_charge_due
from transactions import ledger
from transactions.ledger import WalletBlocked
from transactions.models import Transaction
from transactions.selectors import ledger_reconcile
from wallets.models import Wallet

pytestmark = pytest.mark.django_db


@pytest.fixture
def blocked(user, make_wallet) -> Wallet:
    """The user's KZT wallet: 50.00 on it, 200.00 of fee debt, blocked."""
    wallet = make_wallet(owner=user, balance="50.00")
    Wallet.objects.filter(pk=wallet.pk).update(next_fee_at=timezone.now())
    fee_charge_due(as_of=timezone.now(), batch_size=10)
    wallet.refresh_from_db()
    assert wallet.status == Wallet.Status.BLOCKED
    assert wallet.blocked_reason == FEE_BLOCK_REASON
    return wallet


def assert_collected(wallet: Wallet, balance: str, credit: Transaction) -> None:
    wallet.refresh_from_db()
    charge = FeeCharge.objects.get(wallet=wallet)
    assert charge.status == FeeCharge.Status.PAID
    assert charge.transaction.kind == Transaction.Kind.FEE
    assert charge.transaction.created_at >= credit.created_at
    assert wallet.balance.amount == Decimal(balance)
    assert wallet.status == Wallet.Status.ACTIVE
    assert wallet.blocked_reason == ""
    assert fee_debt_total(wallet=wallet) == Decimal("0.00")
    assert ledger_reconcile().clean


def test_a_transfer_in_collects_the_debt(blocked, make_wallet):
    sender = make_wallet(balance="1000.00")

    posting = ledger.transfer_create(
        source=sender, destination_number=blocked.number, amount=Decimal("300.00")
    )

    assert posting.transaction.kind == Transaction.Kind.TRANSFER
    assert_collected(blocked, "150.00", posting.transaction)  # 50 + 300 - 200


def test_a_transfer_in_too_small_to_cover_leaves_the_wallet_blocked(
    blocked, make_wallet
):
    sender = make_wallet(balance="1000.00")

    ledger.transfer_create(
        source=sender, destination_number=blocked.number, amount=Decimal("100.00")
    )

    blocked.refresh_from_db()
    assert blocked.balance.amount == Decimal("150.00")
    assert blocked.status == Wallet.Status.BLOCKED
    assert fee_debt_total(wallet=blocked) == Decimal("200.00")
    with pytest.raises(WalletBlocked):  # and it still cannot send
        ledger.transfer_create(
            source=blocked, destination_number=sender.number, amount=Decimal("1.00")
        )


def test_an_exchange_in_from_the_owners_other_wallet_collects_the_debt(
    blocked, user, make_wallet, rates
):
    usd = make_wallet(owner=user, currency="USD", balance="10.00")

    posting = ledger.transfer_create(
        source=usd, destination_number=blocked.number, amount=Decimal("1.00")
    )

    assert posting.transaction.kind == Transaction.Kind.EXCHANGE
    # 50 + (500 less the 0.5% spread) - 200
    assert_collected(blocked, "347.50", posting.transaction)


def test_a_paid_topup_collects_the_debt(blocked):
    topup = ledger.topup_create(wallet=blocked, amount=Decimal("200.00"))

    decided = ledger.topup_decide(topup_id=topup.id, status="paid", decided_by=None)

    assert_collected(blocked, "50.00", decided.transaction)


def test_a_rejected_topup_collects_nothing(blocked):
    topup = ledger.topup_create(wallet=blocked, amount=Decimal("500.00"))

    ledger.topup_decide(topup_id=topup.id, status="rejected", decided_by=None)

    blocked.refresh_from_db()
    assert blocked.status == Wallet.Status.BLOCKED
    assert FeeCharge.objects.get(wallet=blocked).status == FeeCharge.Status.DEBT
