from decimal import Decimal

import pytest

from transactions import ledger

pytestmark = pytest.mark.django_db


def test_history_is_newest_first_with_signed_amounts_and_balances(auth_api, wallet):
    ledger.wallet_withdraw(wallet=wallet, amount=Decimal("100.00"))
    ledger.wallet_deposit(wallet=wallet, amount=Decimal("0.50"))
    rows = auth_api.get(f"/api/v1/wallets/{wallet.id}/transactions/").json()["results"]
    assert [(r["kind"], r["amount"], r["balance_after"]) for r in rows] == [
        ("deposit", "0.50", "900.50"),
        ("withdrawal", "-100.00", "900.00"),
        ("deposit", "1000.00", "1000.00"),
    ]
    assert set(rows[0]) >= {
        "id",
        "transaction_id",
        "currency",
        "description",
        "created_at",
    }


def test_history_pages_with_a_cursor_without_gaps_or_repeats(auth_api, wallet):
    for _ in range(24):
        ledger.wallet_deposit(wallet=wallet, amount=Decimal("1.00"))
    seen, url = [], f"/api/v1/wallets/{wallet.id}/transactions/?limit=10"
    while url:
        page = auth_api.get(url).json()
        seen += [row["id"] for row in page["results"]]
        url = page["next"]
    assert len(seen) == 25 == len(set(seen))
    assert seen == sorted(seen, reverse=True)


def test_history_filters_by_kind_and_rejects_bad_dates(auth_api, wallet):
    ledger.wallet_withdraw(wallet=wallet, amount=Decimal("1.00"))
    url = f"/api/v1/wallets/{wallet.id}/transactions/"
    rows = auth_api.get(url, {"kind": "withdrawal"}).json()["results"]
    assert [r["kind"] for r in rows] == ["withdrawal"]
    assert auth_api.get(url, {"from": "2999-01-01T00:00:00Z"}).json()["results"] == []
    assert len(auth_api.get(url, {"to": "2999-01-01T00:00:00Z"}).json()["results"]) == 2
    assert auth_api.get(url, {"from": "yesterday"}).status_code == 400
    assert auth_api.get(url, {"kind": "bogus"}).status_code == 400


OFFSET_MESSAGE = "The time zone offset must be between -15:59 and +15:59."
RANGE_MESSAGE = "The time must be between 0001-01-01 and 9999-12-31 in UTC."


@pytest.fixture(params=["wallet", "all", "wallet-drf-path"])
def history_get(request, auth_api, wallet):
    """GET one of the history lists: a wallet's (its lean path, and DRF's) or all."""
    url = (
        "/api/v1/transactions/"
        if request.param == "all"
        else f"/api/v1/wallets/{wallet.id}/transactions/"
    )
    extra = (
        {"HTTP_ACCEPT": "application/json; indent=0"}
        if request.param.endswith("drf-path")
        else {}
    )
    return lambda query: auth_api.get(url, query, **extra)


@pytest.mark.parametrize("name", ["from", "to"])
@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0001-01-01T00:00:00-19:57", OFFSET_MESSAGE),
        ("2024-06-01T12:00:00+16:00", OFFSET_MESSAGE),
        ("2024-06-01T12:00:00-23:59", OFFSET_MESSAGE),
        ("0001-01-01T00:00:00+05:00", RANGE_MESSAGE),
        ("9999-12-31T23:59:59-05:00", RANGE_MESSAGE),
    ],
)
def test_a_time_postgresql_cannot_compare_is_a_400_on_that_field(
    history_get, name, value, message
):
    """Python parses these, PostgreSQL refuses them: a 400 naming the field,
    never the database's 500."""
    response = history_get({name: value})
    assert response.status_code == 400
    assert response.json() == {name: [message]}


@pytest.mark.parametrize(
    "query",
    [
        {"from": "0001-01-01T00:00:00-15:59"},
        {"from": "0001-01-01T00:00:00Z"},
        {"from": "0001-01-01T00:00:00"},
        {"to": "9999-12-31T23:59:59.999999+15:59"},
        {"to": "9999-12-31T23:59:59Z"},
        {"from": "2000-01-01T05:30:00+05:30", "to": "9999-12-31T08:00:00-15:00"},
    ],
)
def test_the_extremes_postgresql_can_compare_are_accepted(history_get, query):
    response = history_get(query)
    assert response.status_code == 200, response.json()
    assert [row["amount"] for row in response.json()["results"]] == ["1000.00"]


def test_all_transactions_and_one_transaction(auth_api, user, make_wallet, wallet):
    usd = make_wallet(owner=user, currency="USD", balance="5.00")
    rows = auth_api.get("/api/v1/transactions/").json()["results"]
    assert {r["wallet_id"] for r in rows} == {str(wallet.id), str(usd.id)}
    detail = auth_api.get(f"/api/v1/transactions/{rows[0]['transaction_id']}/").json()
    assert detail["kind"] == "deposit"
    assert [e["wallet_number"] for e in detail["entries"]] == [usd.number]


def test_other_users_history_and_transactions_are_404(client_of, other_user, wallet):
    intruder = client_of(other_user)
    assert intruder.get(f"/api/v1/wallets/{wallet.id}/transactions/").status_code == 404
    txn = ledger.wallet_deposit(wallet=wallet, amount=Decimal("1.00")).transaction
    assert intruder.get(f"/api/v1/transactions/{txn.id}/").status_code == 404
    assert intruder.get("/api/v1/transactions/not-a-uuid/").status_code == 404
    assert intruder.get("/api/v1/transactions/").json()["results"] == []
