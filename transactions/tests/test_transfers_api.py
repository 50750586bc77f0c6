"""POST /api/v1/transfers/: transfers by wallet number and exchanges."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from transactions.ledger import wallet_block
from transactions.models import Entry, Transaction
from transactions.selectors import ledger_reconcile
from wallets.models import ExchangeRate, Wallet
from wallets.selectors import system_wallet
from wallets.services import exchange_rate_set

pytestmark = pytest.mark.django_db

URL = "/api/v1/transfers/"


def transfer(client, source, destination, amount, **extra):
    body = {
        "from_wallet": str(source.id),
        "to_wallet_number": destination.number,
        "amount": amount,
        **extra,
    }
    return client.post(URL, body, format="json")


def balance(wallet: Wallet) -> Decimal:
    wallet.refresh_from_db()
    return wallet.balance.amount


def fx_total(currency: str) -> Decimal:
    fx = system_wallet(currency, Wallet.SystemCode.FX)
    return sum((e.amount.amount for e in Entry.objects.filter(wallet=fx)), Decimal(0))


def test_same_currency_transfer_to_someone_else(auth_api, wallet, make_wallet):
    receiver = make_wallet(currency="KZT")
    response = transfer(auth_api, wallet, receiver, "250.50", description="Rent")
    assert response.status_code == 201
    body = response.json()
    assert body == {
        "transaction_id": body["transaction_id"],
        "kind": "transfer",
        "amount": "250.50",
        "currency": "KZT",
        "credited_amount": "250.50",
        "credited_currency": "KZT",
        "rate": "1.0000000000",
        "spread_bps": 0,
        "spread": "0.00",
    }
    assert balance(wallet) == Decimal("749.50")
    assert balance(receiver) == Decimal("250.50")
    txn = Transaction.objects.get(pk=body["transaction_id"])
    assert (txn.kind, txn.description, txn.initiator_id) == (
        "transfer",
        "Rent",
        wallet.owner_id,
    )
    assert txn.metadata["from_wallet"] == wallet.number
    assert txn.metadata["to_wallet"] == receiver.number
    legs = {(e.wallet_id, e.amount.amount) for e in txn.entries.all()}
    assert legs == {(wallet.id, Decimal("-250.50")), (receiver.id, Decimal("250.50"))}
    assert ledger_reconcile().clean


def test_cross_currency_transfer_goes_through_the_fx_wallets(
    auth_api, wallet, make_wallet, rates
):
    receiver = make_wallet(currency="USD")
    response = transfer(auth_api, wallet, receiver, "1000.00")
    assert response.status_code == 201
    body = response.json()
    # 1000 KZT x 0.002 = 2.00 USD, less 0.5% = 1.99 USD; someone else's wallet:
    # a transfer
    assert (body["kind"], body["credited_amount"], body["credited_currency"]) == (
        "transfer",
        "1.99",
        "USD",
    )
    assert (body["rate"], body["spread_bps"], body["spread"]) == (
        "0.0020000000",
        50,
        "0.01",
    )
    assert balance(wallet) == Decimal("0.00")
    assert balance(receiver) == Decimal("1.99")
    txn = Transaction.objects.get(pk=body["transaction_id"])
    legs = sorted(
        (e.wallet.kind, e.wallet.system_code, e.currency, e.amount.amount)
        for e in txn.entries.select_related("wallet")
    )
    assert legs == sorted(
        [
            ("user", "", "KZT", Decimal("-1000.00")),
            ("system", "fx", "KZT", Decimal("1000.00")),
            ("system", "fx", "USD", Decimal("-2.00")),
            ("system", "fees", "USD", Decimal("0.01")),
            ("user", "", "USD", Decimal("1.99")),
        ]
    )
    assert fx_total("KZT") == Decimal("1000.00")
    assert fx_total("USD") == Decimal("-2.00")
    assert ledger_reconcile().clean


def test_between_my_own_wallets_in_two_currencies_it_is_an_exchange(
    user, auth_api, make_wallet, rates
):
    usd = make_wallet(owner=user, currency="USD", balance="100.00")
    kzt = make_wallet(owner=user, currency="KZT")
    response = transfer(auth_api, usd, kzt, "100.00")
    assert response.status_code == 201
    body = response.json()
    assert body["kind"] == "exchange"
    assert (body["amount"], body["currency"]) == ("100.00", "USD")
    assert (body["credited_amount"], body["credited_currency"]) == ("49750.00", "KZT")
    assert body["rate"] == "500.0000000000"
    assert balance(usd) == Decimal("0.00")
    assert balance(kzt) == Decimal("49750.00")
    txn = Transaction.objects.get(pk=body["transaction_id"])
    rate = ExchangeRate.objects.get(base="USD", quote="KZT")
    assert txn.metadata == {
        "from_wallet": usd.number,
        "to_wallet": kzt.number,
        "amount": "100.00",
        "currency": "USD",
        "credited_amount": "49750.00",
        "credited_currency": "KZT",
        "rate": "500.0000000000",
        "spread_bps": 50,
        "spread": "250.00",
        "rate_as_of": rate.fetched_at.isoformat(),
        "rounding": "ROUND_DOWN",
    }


def test_conversion_rounds_toward_zero(settings, user, auth_api, make_wallet):
    settings.FX_SPREAD_BPS = 0
    exchange_rate_set(base="KZT", quote="USD", rate=Decimal("0.0025"))
    kzt = make_wallet(owner=user, currency="KZT", balance="100.00")
    usd = make_wallet(owner=user, currency="USD")
    # 1.00 x 0.0025 = 0.0025 -> 0.00: nothing to credit, so nothing moves
    too_small = transfer(auth_api, kzt, usd, "1.00")
    assert too_small.status_code == 400
    assert too_small.json()["code"] == "invalid_amount"
    assert "too small to convert" in too_small.json()["detail"]
    # 3.00 x 0.0025 = 0.0075 -> 0.00 (refused too); 5.00 -> 0.0125 -> 0.01;
    # 7.00 -> 0.0175 -> 0.01 (toward zero, never up)
    assert transfer(auth_api, kzt, usd, "3.00").status_code == 400
    assert transfer(auth_api, kzt, usd, "5.00").json()["credited_amount"] == "0.01"
    assert transfer(auth_api, kzt, usd, "7.00").json()["credited_amount"] == "0.01"
    assert balance(kzt) == Decimal("88.00")
    assert balance(usd) == Decimal("0.02")
    assert ledger_reconcile().clean


def test_the_destination_number_may_be_given_with_surrounding_spaces(
    auth_api, wallet, make_wallet
):
    receiver = make_wallet()
    body = {
        "from_wallet": wallet.number,  # the source may be named by number too
        "to_wallet_number": f"  {receiver.number} ",
        "amount": "1.00",
    }
    assert auth_api.post(URL, body, format="json").status_code == 201
    assert balance(receiver) == Decimal("1.00")


def test_to_the_same_wallet_is_400(auth_api, wallet):
    response = transfer(auth_api, wallet, wallet, "1.00")
    assert response.status_code == 400
    assert response.json()["code"] == "same_wallet"
    assert balance(wallet) == Decimal("1000.00")


@pytest.mark.parametrize("number", ["4000000000000002", "1234", "not-a-number"])
def test_unknown_destination_number_is_404(auth_api, wallet, number):
    response = auth_api.post(
        URL,
        {"from_wallet": str(wallet.id), "to_wallet_number": number, "amount": "1"},
        format="json",
    )
    assert response.status_code == 404
    assert response.json()["code"] == "wallet_not_found"
    assert balance(wallet) == Decimal("1000.00")


def test_a_system_wallet_number_is_not_a_destination(auth_api, wallet):
    fx = system_wallet("KZT", Wallet.SystemCode.FX)
    response = transfer(auth_api, wallet, fx, "1.00")
    assert response.status_code == 404
    assert response.json()["code"] == "wallet_not_found"


def test_a_source_that_is_not_mine_is_404_and_nothing_moves(
    auth_api, make_wallet, other_user
):
    theirs = make_wallet(owner=other_user, balance="100.00")
    receiver = make_wallet()
    for reference in (str(theirs.id), theirs.number):
        response = auth_api.post(
            URL,
            {
                "from_wallet": reference,
                "to_wallet_number": receiver.number,
                "amount": "1",
            },
            format="json",
        )
        assert response.status_code == 404
        assert response.json()["code"] == "wallet_not_found"
    assert balance(theirs) == Decimal("100.00")
    assert balance(receiver) == Decimal("0.00")


def test_insufficient_funds_is_400_and_nothing_moves(auth_api, wallet, make_wallet):
    receiver = make_wallet()
    response = transfer(auth_api, wallet, receiver, "1000.01")
    assert response.status_code == 400
    assert response.json()["code"] == "insufficient_funds"
    assert balance(wallet) == Decimal("1000.00")
    assert balance(receiver) == Decimal("0.00")
    assert not Transaction.objects.filter(kind="transfer").exists()


def test_insufficient_funds_across_currencies_leaves_the_fx_wallets_alone(
    auth_api, wallet, make_wallet, rates
):
    receiver = make_wallet(currency="EUR")
    response = transfer(auth_api, wallet, receiver, "5000.00")
    assert response.status_code == 400
    assert response.json()["code"] == "insufficient_funds"
    assert fx_total("KZT") == fx_total("EUR") == Decimal(0)


def test_a_blocked_source_is_409(auth_api, wallet, make_wallet):
    receiver = make_wallet()
    wallet_block(wallet=wallet, reason="fee debt")
    response = transfer(auth_api, wallet, receiver, "1.00")
    assert response.status_code == 409
    assert response.json()["code"] == "wallet_blocked"
    assert balance(wallet) == Decimal("1000.00")
    assert balance(receiver) == Decimal("0.00")


def test_a_blocked_destination_receives_normally(auth_api, wallet, make_wallet):
    receiver = make_wallet(balance="5.00")
    wallet_block(wallet=receiver, reason="compliance check")
    response = transfer(auth_api, wallet, receiver, "10.00")
    assert response.status_code == 201
    assert balance(receiver) == Decimal("15.00")
    assert balance(wallet) == Decimal("990.00")


def test_no_rate_is_503_rate_unavailable_and_nothing_moves(
    auth_api, wallet, make_wallet
):
    receiver = make_wallet(currency="USD")
    response = transfer(auth_api, wallet, receiver, "10.00")
    assert response.status_code == 503
    assert response.json()["code"] == "rate_unavailable"
    assert balance(wallet) == Decimal("1000.00")
    assert not Transaction.objects.filter(kind="transfer").exists()


def test_a_stale_rate_is_503(auth_api, wallet, make_wallet, rates):
    ExchangeRate.objects.update(fetched_at=timezone.now() - timedelta(hours=25))
    receiver = make_wallet(currency="USD")
    response = transfer(auth_api, wallet, receiver, "10.00")
    assert response.status_code == 503
    assert response.json()["code"] == "rate_unavailable"


MISSING = object()


@pytest.mark.parametrize(
    "override",
    [
        {"from_wallet": MISSING},
        {"to_wallet_number": MISSING},
        {"amount": MISSING},
        {"amount": "0"},
        {"amount": "-5"},
        {"amount": "1.001"},
        {"amount": "NaN"},
        {"amount": "Infinity"},
        {"amount": "1e400"},
        {"amount": True},
        {"amount": [1]},
        {"amount": "10000000000000"},
        {"description": "x" * 256},
    ],
)
def test_bad_input_is_400_and_nothing_moves(auth_api, wallet, make_wallet, override):
    receiver = make_wallet()
    body = {
        "from_wallet": str(wallet.id),
        "to_wallet_number": receiver.number,
        "amount": "1.00",
        **override,
    }
    body = {key: value for key, value in body.items() if value is not MISSING}
    response = auth_api.post(URL, body, format="json")
    assert response.status_code == 400
    assert balance(wallet) == Decimal("1000.00")
    assert balance(receiver) == Decimal("0.00")


def test_a_malformed_source_id_is_404(auth_api, make_wallet):
    receiver = make_wallet()
    response = auth_api.post(
        URL,
        {"from_wallet": "not-a-uuid", "to_wallet_number": receiver.number, "amount": 1},
        format="json",
    )
    assert response.status_code == 404


def test_idempotency_key_replays_the_transfer_once(auth_api, wallet, make_wallet):
    receiver = make_wallet()
    body = {
        "from_wallet": str(wallet.id),
        "to_wallet_number": receiver.number,
        "amount": "40.00",
    }
    first = auth_api.post(URL, body, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    again = auth_api.post(URL, body, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    assert balance(wallet) == Decimal("960.00")
    assert balance(receiver) == Decimal("40.00")
    other = auth_api.post(
        URL, {**body, "amount": "41.00"}, format="json", HTTP_IDEMPOTENCY_KEY="k-1"
    )
    assert other.status_code == 422
    assert other.json()["code"] == "idempotency_key_reused"
    assert balance(wallet) == Decimal("960.00")


def test_a_failed_transfer_leaves_its_key_free_for_a_retry(
    auth_api, wallet, make_wallet
):
    receiver = make_wallet(currency="USD")
    body = {
        "from_wallet": str(wallet.id),
        "to_wallet_number": receiver.number,
        "amount": "500.00",
    }
    failed = auth_api.post(URL, body, format="json", HTTP_IDEMPOTENCY_KEY="retry")
    assert failed.status_code == 503
    exchange_rate_set(base="KZT", quote="USD", rate=Decimal("0.002"))
    retried = auth_api.post(URL, body, format="json", HTTP_IDEMPOTENCY_KEY="retry")
    assert retried.status_code == 201
    assert retried.json()["credited_amount"] == "0.99"  # 1.00 less the spread


def test_without_a_token_it_is_401(api, wallet, make_wallet):
    response = transfer(api, wallet, make_wallet(), "1.00")
    assert response.status_code == 401


def test_history_shows_each_side_its_own_leg_and_the_counterparty(
    user, client_of, other_user, make_wallet, rates
):
    sender = make_wallet(owner=user, currency="USD", balance="10.00")
    receiver = make_wallet(owner=other_user, currency="KZT")
    response = transfer(client_of(user), sender, receiver, "3.00")
    assert response.status_code == 201
    txn_id = response.json()["transaction_id"]

    mine = client_of(user).get(f"/api/v1/wallets/{sender.id}/transactions/").json()
    leg = next(e for e in mine["results"] if e["transaction_id"] == txn_id)
    assert (leg["amount"], leg["currency"], leg["kind"]) == ("-3.00", "USD", "transfer")
    assert leg["balance_after"] == "7.00"
    assert leg["counterparty"] == receiver.number

    theirs = client_of(other_user).get("/api/v1/transactions/").json()
    legs = [e for e in theirs["results"] if e["transaction_id"] == txn_id]
    assert len(legs) == 1
    # 3 USD x 500 = 1500.00 KZT, less the 0.5% spread
    assert (legs[0]["amount"], legs[0]["currency"]) == ("1492.50", "KZT")
    assert legs[0]["balance_after"] == "1492.50"
    assert legs[0]["counterparty"] == sender.number

    # the receiver sees the transaction with its own leg only
    detail = client_of(other_user).get(f"/api/v1/transactions/{txn_id}/").json()
    assert [e["wallet_number"] for e in detail["entries"]] == [receiver.number]


def test_an_exchange_shows_both_of_my_legs_in_my_history(
    user, auth_api, make_wallet, rates
):
    usd = make_wallet(owner=user, currency="USD", balance="10.00")
    eur = make_wallet(owner=user, currency="EUR")
    txn_id = transfer(auth_api, usd, eur, "10.00").json()["transaction_id"]
    legs = [
        e
        for e in auth_api.get("/api/v1/transactions/").json()["results"]
        if e["transaction_id"] == txn_id
    ]
    assert sorted((e["amount"], e["currency"], e["counterparty"]) for e in legs) == [
        ("-10.00", "USD", eur.number),
        ("8.95", "EUR", usd.number),  # 10 x 0.9 less 0.5%
    ]
    assert {e["kind"] for e in legs} == {"exchange"}


@pytest.mark.parametrize("description", [42, 4.5, True, ["rent"]])
def test_a_description_that_is_not_a_string_is_400(
    auth_api, wallet, make_wallet, description
):
    """The schema says string: a number is not quietly stored as its text."""
    receiver = make_wallet()
    response = transfer(auth_api, wallet, receiver, "1.00", description=description)
    assert response.status_code == 400
    assert response.json() == {"description": ["Not a valid string."]}
    assert balance(wallet) == Decimal("1000.00")
