"""Conversions round toward zero and keep the house's spread: no cycle of
exchanges can create money (issue 16: 7.50 KZT -> 0.02 USD -> 10.00 KZT)."""

from decimal import Decimal
from itertools import pairwise

import pytest
from django.db.models import Sum
from hypothesis import HealthCheck, event, given, settings, target
from hypothesis import strategies as st

from accounts.tests.factories import UserFactory
from transactions import ledger
from transactions.ledger import InvalidAmount
from transactions.models import Entry, Transaction
from transactions.selectors import ledger_reconcile
from wallets.models import Wallet
from wallets.selectors import conversion_quote, system_wallet
from wallets.services import exchange_rates_store, wallet_create

pytestmark = pytest.mark.django_db

URL = "/api/v1/transfers/"

# The probe's stub rates: exact inverses of each other.
PROBE_RATES = {
    "KZT": {"USD": Decimal("0.0020000000"), "EUR": Decimal("0.0018518519")},
    "USD": {"KZT": Decimal("500.0000000000"), "EUR": Decimal("0.9259259259")},
    "EUR": {"KZT": Decimal("540.0000000000"), "USD": Decimal("1.0800000000")},
}
# A provider's rates as they arrive, each rounded to 10 places on its own: some
# round trips are worth a hair more than 1 (KZT->EUR x EUR->KZT = 1.000000026).
PROVIDER_RATES = {
    "KZT": {"USD": Decimal("0.0019646365"), "EUR": Decimal("0.0017953321")},
    "USD": {"KZT": Decimal("509.0000000000"), "EUR": Decimal("0.9138240000")},
    "EUR": {"KZT": Decimal("557.0000000000"), "USD": Decimal("1.0943031536")},
}


def store(rates: dict[str, dict[str, Decimal]]) -> None:
    for base, quotes in rates.items():
        exchange_rates_store(base=base, rates=quotes, source="test")


def house(currency: str) -> Decimal:
    """The house's FX position in `currency`: its fx and fees system wallets."""
    wallets = [
        system_wallet(currency, Wallet.SystemCode.FX),
        system_wallet(currency, Wallet.SystemCode.FEES),
    ]
    total = Entry.objects.filter(wallet__in=wallets).aggregate(total=Sum("amount"))
    return total["total"] or Decimal(0)


def balance(wallet: Wallet) -> Decimal:
    wallet.refresh_from_db()
    return wallet.balance.amount


def exchange(client, source: Wallet, destination: Wallet, amount: str):
    return client.post(
        URL,
        {
            "from_wallet": str(source.id),
            "to_wallet_number": destination.number,
            "amount": amount,
        },
        format="json",
    )


@pytest.mark.parametrize("spread_bps", [0, 50])
@pytest.mark.parametrize(
    ("other", "amount"), [("USD", "7.50"), ("EUR", "2.70")], ids=["usd", "eur"]
)
def test_round_trips_through_the_api_never_create_money(
    settings, user, make_wallet, client_of, spread_bps, other, amount
):
    """The probe: ten round trips of a tiny amount between one's own wallets.
    Half-even rounding made +25.00 KZT from nothing; now the user only loses."""
    settings.FX_SPREAD_BPS = spread_bps
    store(PROBE_RATES)
    kzt = make_wallet(owner=user, currency="KZT", balance="1479.00")
    foreign = make_wallet(owner=user, currency=other)
    client = client_of(user)
    before = (house("KZT"), house(other))
    round_trips = 0
    for _ in range(10):
        there = exchange(client, kzt, foreign, amount)
        if there.status_code == 400:
            # Too small to convert once rounded toward zero: nothing moves.
            assert there.json()["code"] == "invalid_amount"
            assert "too small to convert" in there.json()["detail"]
            continue
        assert there.status_code == 201, there.json()
        back = exchange(client, foreign, kzt, there.json()["credited_amount"])
        assert back.status_code == 201, back.json()
        assert Decimal(back.json()["credited_amount"]) < Decimal(amount)
        round_trips += 1
    if round_trips:
        assert balance(kzt) < Decimal("1479.00")
    else:  # every attempt was refused (2.70 KZT is 0.00 EUR rounded toward zero)
        assert balance(kzt) == Decimal("1479.00")
    assert balance(foreign) == 0
    assert house("KZT") - before[0] == Decimal("1479.00") - balance(kzt)
    assert house(other) == before[1]
    assert ledger_reconcile().clean


def test_the_probe_amount_rounds_toward_zero(settings):
    """7.50 KZT x 0.002 = 0.015 USD is 0.01 USD (half-even said 0.02)."""
    settings.FX_SPREAD_BPS = 0
    store(PROBE_RATES)
    quote = conversion_quote(
        source_currency="KZT", target_currency="USD", amount=Decimal("7.50")
    )
    assert (quote.gross, quote.amount_out, quote.spread) == (
        Decimal("0.01"),
        Decimal("0.01"),
        Decimal("0.00"),
    )


def test_an_exchange_books_the_spread_to_the_fees_wallet(user, make_wallet, auth_api):
    """100 USD at 500 is 50000.00 KZT; 0.5% of it (250.00) is the house's, a leg
    of its own on the KZT fees wallet, shown in the response and the metadata."""
    store(PROBE_RATES)
    usd = make_wallet(owner=user, currency="USD", balance="100.00")
    kzt = make_wallet(owner=user, currency="KZT")
    response = exchange(auth_api, usd, kzt, "100.00")
    assert response.status_code == 201
    body = response.json()
    assert body == {
        "transaction_id": body["transaction_id"],
        "kind": "exchange",
        "amount": "100.00",
        "currency": "USD",
        "credited_amount": "49750.00",
        "credited_currency": "KZT",
        "rate": "500.0000000000",
        "spread_bps": 50,
        "spread": "250.00",
    }
    txn = Transaction.objects.get(pk=body["transaction_id"])
    legs = sorted(
        (e.wallet.system_code or "user", e.currency, e.amount.amount)
        for e in txn.entries.select_related("wallet")
    )
    assert legs == [
        ("fees", "KZT", Decimal("250.00")),
        ("fx", "KZT", Decimal("-50000.00")),
        ("fx", "USD", Decimal("100.00")),
        ("user", "KZT", Decimal("49750.00")),
        ("user", "USD", Decimal("-100.00")),
    ]
    assert txn.metadata["spread_bps"] == 50
    assert txn.metadata["spread"] == "250.00"
    assert txn.metadata["rounding"] == "ROUND_DOWN"
    assert balance(kzt) == Decimal("49750.00")
    assert ledger_reconcile().clean


def test_the_quote_shows_the_spread(auth_api):
    store(PROBE_RATES)
    response = auth_api.get("/api/v1/rates/quote/?from=USD&to=KZT&amount=100")
    assert response.status_code == 200
    body = response.json()
    assert body == {
        "from": "USD",
        "to": "KZT",
        "amount": "100.00",
        "rate": "500.0000000000",
        "spread_bps": 50,
        "spread": "250.00",
        "amount_out": "49750.00",
        "as_of": body["as_of"],
    }


def test_the_largest_conversion_is_exact_to_the_last_minor_unit(settings):
    """The product of a 12-digit amount and a 10-place rate has more digits than
    Decimal's default 28: it must not be rounded (half-even) before ours."""
    settings.FX_SPREAD_BPS = 0
    exchange_rates_store(
        base="USD", rates={"KZT": Decimal("100000010.0000000001")}, source="test"
    )
    amount = Decimal("999999999.99")
    quote = conversion_quote(
        source_currency="USD", target_currency="KZT", amount=amount
    )
    # = 100000009998999999.999999999999 exactly; at 28 digits it would be
    # 100000009999000000.00000000000, one whole tiyn more than the rule gives.
    assert quote.amount_out == Decimal("100000009998999999.99")


def test_the_fee_conversion_stays_half_even(settings):
    from fees.services import fee_quote

    settings.FEE_AMOUNT = Decimal("200.00")
    exchange_rates_store(base="KZT", rates={"USD": Decimal("0.0020125")}, source="t")
    # 200 x 0.0020125 = 0.4025 -> 0.40 either way; 0.0020375 -> 0.4075 -> 0.41
    assert fee_quote(currency="USD").amount == Decimal("0.40")
    exchange_rates_store(base="KZT", rates={"USD": Decimal("0.0020375")}, source="t")
    assert fee_quote(currency="USD").amount == Decimal("0.41")  # no spread, not down


# --- The property: no cycle through the stored rates returns more ------------------------

CURRENCIES = ("KZT", "USD", "EUR")
cycles = st.one_of(
    st.permutations(CURRENCIES).map(lambda p: [*p, p[0]]),  # three currencies
    st.permutations(CURRENCIES).map(lambda p: [p[0], p[1], p[0]]),  # two
)
start_amounts = st.decimals(
    min_value=Decimal("1.00"), max_value=Decimal("1000000.00"), places=2
)


@pytest.fixture
def cycle_wallets(db) -> dict[str, Wallet]:
    owner = UserFactory()
    return {c: wallet_create(owner=owner, currency=c) for c in CURRENCIES}


@pytest.mark.parametrize("rates", [PROBE_RATES, PROVIDER_RATES], ids=["probe", "live"])
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    cycle=cycles,
    amount=start_amounts,
    spread_bps=st.one_of(st.just(50), st.integers(1, 300)),
)
def test_no_cycle_of_conversions_returns_more_than_it_started_with(
    settings, cycle_wallets, rates, cycle, amount, spread_bps
):
    """Whatever the amount, the cycle (2 or 3 currencies) and the spread, the user
    ends with less than they started with (or the same), and the house's
    position never goes negative in any currency."""
    settings.FX_SPREAD_BPS = spread_bps
    store(rates)
    start = cycle_wallets[cycle[0]]
    ledger.wallet_deposit(wallet=start, amount=amount)
    before_user = balance(start)
    before_house = {c: house(c) for c in CURRENCIES}
    moving = amount
    for source, to in pairwise(cycle):
        try:
            posting = ledger.transfer_create(
                source=cycle_wallets[source],
                destination_number=cycle_wallets[to].number,
                amount=moving,
            )
        except InvalidAmount:
            event("a step rounded to nothing")
            return
        moving = Decimal(posting.transaction.metadata["credited_amount"])
    event(f"{len(cycle) - 1} conversions")
    after_user = balance(start)
    target(float(after_user - before_user), label="user's gain (must stay <= 0)")
    assert after_user - before_user == moving - amount <= 0
    for currency in CURRENCIES:
        assert house(currency) - before_house[currency] >= 0, currency
    # What the user lost is exactly what the house gained, in the start currency.
    assert house(cycle[0]) - before_house[cycle[0]] == amount - moving
    if after_user:  # leave the start wallet empty for the next example
        ledger.wallet_withdraw(wallet=start, amount=after_user)
