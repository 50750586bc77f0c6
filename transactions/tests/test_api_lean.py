"""GET wallets/{id}/transactions/ on the lean path (wallet_project.lean): one keyset
query per page, and the very bytes DRF's own path gives (forced here with an
Accept only DRF handles: `application/json; indent=0` is compact JSON), for every
page forwards and backwards, with filters and limits."""

import base64
import json
from decimal import Decimal
from urllib.parse import quote

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.renderers import JSONRenderer

from transactions import ledger
from transactions.api.serializers import EntrySerializer
from transactions.models import Entry

pytestmark = pytest.mark.django_db

DRF_PATH = {"HTTP_ACCEPT": "application/json; indent=0"}


@pytest.fixture
def busy_wallet(user, make_wallet, other_user, rates):
    """Deposits, withdrawals, transfers both ways (counterparties), an exchange."""
    wallet = make_wallet(owner=user, currency="KZT", balance="1000.00")
    theirs = make_wallet(owner=other_user, currency="KZT", balance="300.00")
    usd = make_wallet(owner=user, currency="USD", balance="0")
    ledger.wallet_withdraw(wallet=wallet, amount=Decimal("100.00"))
    ledger.transfer_create(
        source=wallet,
        destination_number=theirs.number,
        amount=Decimal("12.34"),
        description="rent \u2028 é",
    )
    ledger.transfer_create(
        source=theirs, destination_number=wallet.number, amount=Decimal("1.01")
    )
    ledger.transfer_create(
        source=wallet, destination_number=usd.number, amount=Decimal("500.00")
    )
    for _ in range(6):
        ledger.wallet_deposit(wallet=wallet, amount=Decimal("0.50"))
    return wallet


def _same_as_drf(client, url):
    with CaptureQueriesContext(connection) as queries:
        lean = client.get(url)
    lean_queries = len(queries)  # read before the next request resets the log
    drf = client.get(url, **DRF_PATH)
    assert lean.status_code == drf.status_code == 200, lean.content
    assert lean.content == drf.content
    assert lean["Allow"] == drf["Allow"]
    assert lean_queries == 1
    return lean.json()


@pytest.mark.parametrize(
    "query",
    ["", "?limit=3", "?limit=1", "?kind=transfer&limit=1", "?kind=deposit&limit=4"],
)
def test_every_page_both_ways_is_drfs_page_in_one_query(auth_api, busy_wallet, query):
    url = f"/api/v1/wallets/{busy_wallet.id}/transactions/{query}"
    pages = [_same_as_drf(auth_api, url)]
    while pages[-1]["next"]:
        pages.append(_same_as_drf(auth_api, pages[-1]["next"]))
    backwards = [pages[-1]]
    while backwards[-1]["previous"]:
        backwards.append(_same_as_drf(auth_api, backwards[-1]["previous"]))
    ids = [row["id"] for page in pages for row in page["results"]]
    assert ids == sorted(ids, reverse=True) == sorted(set(ids), reverse=True)
    assert [r["id"] for p in reversed(backwards) for r in p["results"]] == ids


def test_rows_are_entry_serializer_rows(auth_api, busy_wallet):
    rows = auth_api.get(f"/api/v1/wallets/{busy_wallet.id}/transactions/").json()[
        "results"
    ]
    entries = (
        Entry.objects.filter(wallet=busy_wallet)
        .select_related("transaction")
        .order_by("-id")
    )
    assert rows == json.loads(
        JSONRenderer().render(EntrySerializer(entries, many=True).data)
    )
    assert {r["counterparty"] for r in rows} > {None}


@pytest.mark.parametrize(
    "query",
    [
        "?from=2000-01-01T00:00:00Z",
        "?to=2999-01-01",
        "?from=2999-01-01T00:00:00Z",
        "?kind=&from=&limit=abc",
        "?limit=0",
        "?limit=1000",
        "?cursor=%25%25%25",
        "?unrelated=1",
    ],
)
def test_filters_and_odd_parameters_answer_as_drf_does(auth_api, busy_wallet, query):
    _same_as_drf(auth_api, f"/api/v1/wallets/{busy_wallet.id}/transactions/{query}")


def test_an_empty_history_is_an_empty_page(auth_api, user, make_wallet):
    empty = make_wallet(owner=user, currency="EUR")
    body = _same_as_drf(auth_api, f"/api/v1/wallets/{empty.id}/transactions/")
    assert body == {"next": None, "previous": None, "results": []}


@pytest.mark.parametrize("cursor", ["o=2", "o=1&p={id}", "r=1&o=1&p={id}", "o=99999"])
def test_a_cursor_with_an_offset_pages_as_drf_does(auth_api, busy_wallet, cursor):
    # The page query writes LIMIT and OFFSET into its text: a client's offset
    # (DRF clamps it to 0..1000) must still give DRF's page.
    middle = Entry.objects.filter(wallet=busy_wallet).order_by("-id")[3].id
    token = quote(base64.b64encode(cursor.format(id=middle).encode()).decode())
    for limit in ("", "&limit=2"):
        url = f"/api/v1/wallets/{busy_wallet.id}/transactions/?cursor={token}{limit}"
        _same_as_drf(auth_api, url)


@pytest.mark.parametrize(
    "cursor", ["p=abc", "p=99999999999999999999999", "p=1.5", "p="]
)
def test_a_tampered_cursor_is_404_invalid_cursor(auth_api, busy_wallet, cursor):
    token = quote(base64.b64encode(cursor.encode()).decode())
    url = f"/api/v1/wallets/{busy_wallet.id}/transactions/?cursor={token}"
    for extra in ({}, DRF_PATH):
        response = auth_api.get(url, **extra)
        assert response.status_code == 404
        assert response.json() == {"detail": "Invalid cursor", "code": "not_found"}


def test_bad_filters_foreign_and_malformed_wallets_get_drfs_errors(
    auth_api, busy_wallet, make_wallet, other_user
):
    url = f"/api/v1/wallets/{busy_wallet.id}/transactions/"
    assert auth_api.get(url, {"kind": "bogus"}).status_code == 400
    assert auth_api.get(url, {"from": "yesterday"}).json() == {
        "from": ["Enter a valid date/time."]
    }
    foreign = make_wallet(owner=other_user, currency="EUR")
    for wallet_id in (foreign.id, "not-a-uuid", "00000000-0000-0000-0000-000000000000"):
        response = auth_api.get(f"/api/v1/wallets/{wallet_id}/transactions/")
        assert response.status_code == 404
        assert response.json()["code"] == "wallet_not_found"


def test_a_deactivated_owner_gets_401(auth_api, user, busy_wallet):
    user.is_active = False
    user.save(update_fields=["is_active"])
    url = f"/api/v1/wallets/{busy_wallet.id}/transactions/"
    assert auth_api.get(url).status_code == 401
