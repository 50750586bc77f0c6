"""GET /api/v1/events/: the caller's events, oldest first in commit order,
cursor pages, filters; nobody else's; none of a rolled-back change."""

from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import pytest
from django.db import connection, transaction
from django.utils import timezone

from conftest import client_for
from transactions import ledger
from transactions.models import Event
from transactions.tests.webhooks_support import wait_events_visible

pytestmark = pytest.mark.django_db(transaction=True)

URL = "/api/v1/events/"


def _events(client, **params):
    wait_events_visible()
    response = client.get(URL, params)
    assert response.status_code == 200, response.content
    return response.json()


def test_the_callers_events_oldest_first_in_the_documented_shape(user, make_wallet):
    wallet = make_wallet(owner=user, balance="100.00")
    ledger.wallet_withdraw(wallet=wallet, amount=Decimal("30.00"))
    other = make_wallet(balance="5.00")  # someone else's

    body = _events(client_for(user))

    assert body["next"] is None
    results = body["results"]
    assert [e["type"] for e in results] == ["transaction.posted"] * 2
    assert [e["sequence"] for e in results] == [1, 2]
    assert {e["wallet_id"] for e in results} == {str(wallet.id)}
    first = results[0]
    assert set(first) == {"id", "type", "created_at", "wallet_id", "sequence", "data"}
    assert first["created_at"].endswith("Z")
    assert first["data"]["amount"] == "100.00"
    assert results[1]["data"]["amount"] == "-30.00"
    assert results[1]["data"]["balance_after"] == "70.00"
    assert not any(e["wallet_id"] == str(other.id) for e in results)


def test_another_users_events_are_invisible(user, other_user, make_wallet):
    make_wallet(owner=other_user, balance="10.00")
    assert _events(client_for(user))["results"] == []


def test_pages_follow_next_until_caught_up_then_after_picks_up_new_ones(
    user, make_wallet
):
    wallet = make_wallet(owner=user)
    for _ in range(5):
        ledger.wallet_deposit(wallet=wallet, amount=Decimal("1.00"))
    client = client_for(user)

    seen, url = [], f"{URL}?limit=2"
    while url:
        wait_events_visible()
        response = client.get(url)
        assert response.status_code == 200
        page = response.json()
        assert len(page["results"]) <= 2
        seen += [e["sequence"] for e in page["results"]]
        url = page["next"]
    assert seen == [1, 2, 3, 4, 5]

    last = Event.objects.get(wallet=wallet, sequence=5).id
    assert _events(client, after=last)["results"] == []
    ledger.wallet_deposit(wallet=wallet, amount=Decimal("1.00"))
    assert [e["sequence"] for e in _events(client, after=last)["results"]] == [6]


def test_next_link_keeps_the_filters(user, make_wallet):
    wallet = make_wallet(owner=user)
    for _ in range(3):
        ledger.wallet_deposit(wallet=wallet, amount=Decimal("1.00"))
    body = _events(
        client_for(user), limit=1, wallet=str(wallet.id), type="transaction.posted"
    )
    query = parse_qs(urlsplit(body["next"]).query)
    assert query["wallet"] == [str(wallet.id)]
    assert query["type"] == ["transaction.posted"]
    assert query["after"] == [str(body["results"][0]["id"])]


def test_filters_by_type_and_wallet(user, make_wallet):
    kzt = make_wallet(owner=user, currency="KZT", balance="10.00")
    usd = make_wallet(owner=user, currency="USD", balance="10.00")
    with transaction.atomic():
        ledger.event_record_many(
            [ledger.NewEvent(kzt.id, Event.Type.WALLET_BLOCKED, {"id": str(kzt.id)})],
            now=timezone.now(),
        )
    client = client_for(user)

    by_wallet = _events(client, wallet=str(usd.id))["results"]
    assert [e["wallet_id"] for e in by_wallet] == [str(usd.id)]
    blocked = _events(client, type="wallet.blocked")["results"]
    assert [(e["wallet_id"], e["sequence"]) for e in blocked] == [(str(kzt.id), 2)]
    both = _events(client, type=["transaction.posted", "wallet.blocked"])
    assert len(both["results"]) == 3
    assert (
        len(_events(client, type="wallet.blocked", wallet=str(usd.id))["results"]) == 0
    )


def test_a_rolled_back_transfer_leaves_no_event_and_no_gap(user, make_wallet):
    source = make_wallet(owner=user, balance="10.00")
    destination = make_wallet(balance="0")
    client = client_for(user)

    response = client.post(
        "/api/v1/transfers/",
        {
            "from_wallet": str(source.id),
            "to_wallet_number": destination.number,
            "amount": "50.00",
        },
        format="json",
    )
    assert response.status_code == 400
    assert response.json()["code"] == "insufficient_funds"
    assert Event.objects.filter(wallet=destination).count() == 0
    assert [e["sequence"] for e in _events(client)["results"]] == [1]

    ledger.wallet_deposit(wallet=source, amount=Decimal("1.00"))
    assert [e["sequence"] for e in _events(client)["results"]] == [1, 2]


def test_an_event_of_a_transaction_still_running_is_not_listed_yet(user, make_wallet):
    """Commit order: while a transaction that began earlier is still open, the
    events committed after it began are held back, so a cursor never passes
    an event that commits later."""
    import psycopg

    wallet = make_wallet(owner=user)
    db = connection.settings_dict
    with psycopg.connect(
        host=db["HOST"], port=db["PORT"], user=db["USER"], dbname=db["NAME"]
    ) as other:
        other.execute("SELECT pg_current_xact_id()")  # an open transaction
        ledger.wallet_deposit(wallet=wallet, amount=Decimal("1.00"))
        response = client_for(user).get(URL)  # no waiting: it would wait for `other`
        assert response.status_code == 200
        assert response.json()["results"] == []
        other.rollback()
    assert len(_events(client_for(user))["results"]) == 1


@pytest.mark.parametrize(
    "params",
    [
        {"type": "transaction.unknown"},
        {"wallet": "not-a-uuid"},
        {"after": "abc"},
        {"after": "0"},
        {"after": str(2**63)},
        {"limit": "0"},
        {"limit": "201"},
        {"limit": "x"},
    ],
)
def test_bad_filters_are_400(user, params):
    response = client_for(user).get(URL, params)
    assert response.status_code == 400
    assert set(response.json()) <= set(params)


def test_after_or_wallet_of_another_user_is_400(user, other_user, make_wallet):
    theirs = make_wallet(owner=other_user, balance="1.00")
    event = Event.objects.get(wallet=theirs)
    client = client_for(user)

    response = client.get(URL, {"after": event.id})
    assert response.status_code == 400
    assert response.json()["after"][0]
    assert client.get(URL, {"after": 10**12}).status_code == 400
    response = client.get(URL, {"wallet": str(theirs.id)})
    assert response.status_code == 400
    assert "wallet" in response.json()


def test_needs_a_token(api):
    assert api.get(URL).status_code == 401
