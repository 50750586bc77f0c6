"""Any sequence of transfers and exchanges between random wallets conserves
money in every currency (system wallets included) and keeps reconcile clean."""

from collections import defaultdict
from decimal import Decimal

import pytest
from django.db.models import Sum
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accounts.tests.factories import UserFactory
from transactions import ledger
from transactions.ledger import (
    InsufficientFunds,
    InvalidAmount,
    SameWallet,
    WalletBlocked,
    wallet_block,
    wallet_unblock,
)
from transactions.models import Entry
from transactions.selectors import ledger_reconcile
from wallets.models import Wallet
from wallets.selectors import conversion_quote
from wallets.services import wallet_create

CURRENCIES = ("KZT", "USD", "EUR")
# Two owners with a wallet in each currency: transfers to the other owner, and
# exchanges between one owner's own wallets.
WALLETS = [(owner, currency) for owner in (0, 1) for currency in CURRENCIES]

amounts = st.decimals(
    min_value=Decimal("0.01"), max_value=Decimal("3000"), places=2, allow_nan=False
)
operations = st.lists(
    st.one_of(
        st.tuples(
            st.just("transfer"),
            st.integers(0, len(WALLETS) - 1),
            st.integers(0, len(WALLETS) - 1),
            amounts,
        ),
        st.tuples(
            st.sampled_from(["block", "unblock"]),
            st.integers(0, len(WALLETS) - 1),
            st.just(0),
            st.just(Decimal(0)),
        ),
    ),
    max_size=25,
)


def system_totals() -> dict[tuple[str, str], Decimal]:
    rows = (
        Entry.objects.filter(wallet__kind=Wallet.Kind.SYSTEM)
        .values_list("wallet__system_code", "currency")
        .annotate(total=Sum("amount"))
    )
    return {(code, currency): total for code, currency, total in rows}


@pytest.fixture
def six_wallets(rates) -> list[Wallet]:
    """Created once per test run; hypothesis' examples share them (each example
    starts from whatever balances the previous one left)."""
    owners = [UserFactory(), UserFactory()]
    return [wallet_create(owner=owners[o], currency=c) for o, c in WALLETS]


@pytest.mark.django_db
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(ops=operations)
def test_transfers_and_exchanges_conserve_money_per_currency(six_wallets, ops):
    wallets = six_wallets
    before = system_totals()
    expected = []
    for wallet in wallets:
        wallet_unblock(wallet=wallet)
        start = Decimal("2000.00") if wallet.currency == "KZT" else Decimal("20.00")
        posting = ledger.wallet_deposit(wallet=wallet, amount=start)
        expected.append(posting.balances[wallet.id])
    blocked = [False] * len(wallets)
    fx_expected: dict[str, Decimal] = defaultdict(Decimal)
    spread_expected: dict[str, Decimal] = defaultdict(Decimal)

    for op, i, j, amount in ops:
        if op == "block":
            wallet_block(wallet=wallets[i], reason="property test")
            blocked[i] = True
            continue
        if op == "unblock":
            wallet_unblock(wallet=wallets[i])
            blocked[i] = False
            continue
        source, destination = wallets[i], wallets[j]
        quote = conversion_quote(
            source_currency=source.currency,
            target_currency=destination.currency,
            amount=amount,
        )
        try:
            posting = ledger.transfer_create(
                source=source, destination_number=destination.number, amount=amount
            )
        except SameWallet:
            assert i == j
            continue
        except InvalidAmount:
            assert quote.amount_out == 0
            continue
        except WalletBlocked:
            assert blocked[i]
            continue
        except InsufficientFunds:
            assert not blocked[i]
            assert expected[i] < amount
            continue
        assert i != j and quote.amount_out > 0 and not blocked[i]
        assert expected[i] >= amount
        expected[i] -= amount
        expected[j] += quote.amount_out
        if source.currency != destination.currency:
            fx_expected[source.currency] += amount
            fx_expected[destination.currency] -= quote.gross
            spread_expected[destination.currency] += quote.spread
        same_owner = WALLETS[i][0] == WALLETS[j][0]
        assert posting.transaction.kind == ("exchange" if same_owner else "transfer")

    for wallet, balance in zip(wallets, expected, strict=True):
        wallet.refresh_from_db()
        assert wallet.balance.amount == balance >= 0
    after = system_totals()
    moved = {
        key: after.get(key, Decimal(0)) - before.get(key, Decimal(0))
        for key in after.keys() | before.keys()
    }
    for currency in CURRENCIES:
        # what the fx wallet took in and paid out, and the spreads kept, exactly
        assert moved.get(("fx", currency), Decimal(0)) == fx_expected[currency]
        assert moved.get(("fees", currency), Decimal(0)) == spread_expected[currency]
    # Conservation: in every currency all wallets, users' and system, sum to zero:
    # the users' balances are exactly what the system wallets paid out.
    for currency in CURRENCIES:
        users = Wallet.objects.filter(
            kind=Wallet.Kind.USER, currency=currency
        ).aggregate(total=Sum("balance"))["total"]
        systems = sum((t for (_, c), t in after.items() if c == currency), Decimal(0))
        assert users + systems == 0, currency
    assert ledger_reconcile().clean
