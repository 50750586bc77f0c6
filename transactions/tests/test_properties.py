"""Any sequence of operations keeps every ledger invariant."""

from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from transactions import ledger
from transactions.ledger import (
    InsufficientFunds,
    WalletBlocked,
    wallet_block,
    wallet_unblock,
)
from transactions.models import Entry
from transactions.selectors import ledger_reconcile

amounts = st.decimals(
    min_value=Decimal("0.01"), max_value=Decimal("1000"), places=2, allow_nan=False
)
operations = st.lists(
    st.tuples(
        st.sampled_from(["deposit", "withdraw", "block", "unblock"]),
        st.integers(min_value=0, max_value=2),
        amounts,
    ),
    max_size=30,
)


@pytest.mark.django_db
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(ops=operations)
def test_any_sequence_of_operations_keeps_the_ledger_consistent(make_wallet, ops):
    wallets = [make_wallet(currency=c) for c in ("KZT", "USD", "EUR")]
    expected = [Decimal(0)] * 3
    blocked = [False] * 3
    for op, index, amount in ops:
        wallet = wallets[index]
        if op == "deposit":
            ledger.wallet_deposit(wallet=wallet, amount=amount)
            expected[index] += amount
        elif op == "withdraw":
            try:
                ledger.wallet_withdraw(wallet=wallet, amount=amount)
                expected[index] -= amount
            except InsufficientFunds:
                assert expected[index] < amount
            except WalletBlocked:
                assert blocked[index]
        elif op == "block":
            wallet_block(wallet=wallet, reason="property test")
            blocked[index] = True
        else:
            wallet_unblock(wallet=wallet)
            blocked[index] = False

    for wallet, balance in zip(wallets, expected, strict=True):
        wallet.refresh_from_db()
        assert wallet.balance.amount == balance >= 0
        last = Entry.objects.filter(wallet=wallet).order_by("-id").first()
        assert (last.balance_after if last else Decimal(0)) == balance
    assert ledger_reconcile().clean
