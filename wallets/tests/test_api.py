from decimal import Decimal

import pytest

from transactions.ledger import wallet_block
from transactions.models import Entry, Transaction
from wallets.models import Wallet
from wallets.numbers import is_valid_number

pytestmark = pytest.mark.django_db


def op_url(wallet, slash=""):
    return f"/api/v1/wallets/{wallet.id}/operation{slash}"


def test_wallet_detail_shows_balance_as_string_and_minor_units(auth_api, wallet):
    body = auth_api.get(f"/api/v1/wallets/{wallet.id}/").json()
    assert body["balance"] == "1000.00"
    assert body["balance_minor"] == 100000
    assert body["currency"] == "KZT"
    assert body["status"] == "active"
    assert is_valid_number(body["number"])
    assert body["next_fee_at"] is not None
    assert set(body) >= {"id", "name", "blocked_reason", "created_at", "updated_at"}


def test_list_shows_only_my_wallets(auth_api, wallet, make_wallet, other_user):
    make_wallet(owner=other_user)
    body = auth_api.get("/api/v1/wallets/").json()
    assert [w["id"] for w in body] == [str(wallet.id)]


def test_open_a_wallet_per_currency_and_a_second_one_is_409(auth_api):
    created = auth_api.post(
        "/api/v1/wallets/", {"currency": "USD", "name": "Trips"}, format="json"
    )
    assert created.status_code == 201
    assert created.json()["balance"] == "0.00"
    assert created.json()["name"] == "Trips"
    again = auth_api.post("/api/v1/wallets/", {"currency": "USD"}, format="json")
    assert again.status_code == 409
    assert again.json()["code"] == "wallet_exists"


def test_unknown_currency_is_400(auth_api):
    response = auth_api.post("/api/v1/wallets/", {"currency": "XYZ"}, format="json")
    assert response.status_code == 400
    assert "currency" in response.json()


def test_rename_and_mass_assignment_is_ignored(auth_api, wallet):
    response = auth_api.patch(
        f"/api/v1/wallets/{wallet.id}/",
        {"name": "Main", "balance": "99999.00", "status": "blocked", "owner": None},
        format="json",
    )
    assert response.status_code == 200
    assert response.json()["name"] == "Main"
    assert response.json()["balance"] == "1000.00"
    assert response.json()["status"] == "active"


@pytest.mark.parametrize("body", [{}, {"balance": "5.00"}])
def test_a_patch_without_name_changes_nothing_and_returns_the_wallet(
    auth_api, wallet, body
):
    """PATCH is partial: an empty one (or one with only read-only fields) is a
    200 with the wallet as it was."""
    wallet.name = "Main"
    wallet.save()
    before = auth_api.get(f"/api/v1/wallets/{wallet.id}/").json()
    response = auth_api.patch(f"/api/v1/wallets/{wallet.id}/", body, format="json")
    assert response.status_code == 200, response.json()
    assert response.json() == before
    wallet.refresh_from_db()
    assert wallet.name == "Main"


def test_a_patch_name_is_still_validated(auth_api, wallet):
    url = f"/api/v1/wallets/{wallet.id}/"
    response = auth_api.patch(url, {"name": 12}, format="json")
    assert response.status_code == 400
    assert response.json() == {"name": ["Not a valid string."]}
    assert auth_api.patch(url, {"name": None}, format="json").status_code == 400
    response = auth_api.patch(url, {"name": "x" * 101}, format="json")
    assert response.status_code == 400
    assert "name" in response.json()
    assert auth_api.patch(url, {"name": ""}, format="json").json()["name"] == ""


@pytest.mark.parametrize("slash", ["", "/"])
@pytest.mark.parametrize("field", ["operationType", "operation_type"])
def test_deposit_via_both_paths_and_field_spellings(auth_api, wallet, slash, field):
    response = auth_api.post(
        op_url(wallet, slash), {field: "DEPOSIT", "amount": "250.50"}, format="json"
    )
    assert response.status_code == 201
    body = response.json()
    assert body["status"] == "SUCCESS"
    assert body["operation_type"] == "DEPOSIT"
    assert body["amount"] == "250.50"
    assert body["currency"] == "KZT"
    assert body["new_balance"] == "1250.50"
    assert Transaction.objects.get(pk=body["operation_id"]).kind == "deposit"


def test_amount_may_be_a_json_number(auth_api, wallet):
    response = auth_api.post(
        op_url(wallet),
        b'{"operationType": "WITHDRAW", "amount": 0.1}',
        content_type="application/json",
    )
    assert response.status_code == 201
    assert response.json()["new_balance"] == "999.90"


def test_withdraw_more_than_balance_is_400_insufficient_funds(auth_api, wallet):
    response = auth_api.post(
        op_url(wallet),
        {"operationType": "WITHDRAW", "amount": "1000.01"},
        format="json",
    )
    assert response.status_code == 400
    assert response.json()["code"] == "insufficient_funds"
    wallet.refresh_from_db()
    assert wallet.balance.amount == Decimal("1000.00")


def test_withdraw_from_blocked_wallet_is_409_and_deposit_still_works(auth_api, wallet):
    wallet_block(wallet=wallet, reason="fee debt")
    response = auth_api.post(
        op_url(wallet), {"operationType": "WITHDRAW", "amount": "1"}, format="json"
    )
    assert response.status_code == 409
    assert response.json()["code"] == "wallet_blocked"
    response = auth_api.post(
        op_url(wallet), {"operationType": "DEPOSIT", "amount": "1"}, format="json"
    )
    assert response.status_code == 201


def test_someone_elses_wallet_is_404(client_of, other_user, wallet):
    intruder = client_of(other_user)
    assert intruder.get(f"/api/v1/wallets/{wallet.id}/").status_code == 404
    response = intruder.post(
        op_url(wallet), {"operationType": "WITHDRAW", "amount": "1"}, format="json"
    )
    assert response.status_code == 404
    assert response.json()["code"] == "wallet_not_found"


@pytest.mark.parametrize(
    "wallet_id", ["not-a-uuid", "00000000-0000-0000-0000-000000000000"]
)
def test_unknown_or_malformed_wallet_id_is_404(auth_api, wallet_id):
    response = auth_api.post(
        f"/api/v1/wallets/{wallet_id}/operation",
        {"operationType": "DEPOSIT", "amount": "1"},
        format="json",
    )
    assert response.status_code == 404
    assert auth_api.get(f"/api/v1/wallets/{wallet_id}/").status_code == 404


BAD_BODIES = [
    {"operationType": "DEPOSIT", "amount": "-1"},
    {"operationType": "DEPOSIT", "amount": "0"},
    {"operationType": "DEPOSIT", "amount": "1.001"},
    {"operationType": "DEPOSIT", "amount": "1,5"},
    {"operationType": "DEPOSIT", "amount": ""},
    {"operationType": "DEPOSIT", "amount": None},
    {"operationType": "DEPOSIT", "amount": ["1"]},
    {"operationType": "DEPOSIT", "amount": {"value": 1}},
    {"operationType": "DEPOSIT", "amount": True},
    {"operationType": "DEPOSIT", "amount": "NaN"},
    {"operationType": "DEPOSIT", "amount": "Infinity"},
    {"operationType": "DEPOSIT", "amount": "1e30"},
    {"operationType": "DEPOSIT", "amount": "9" * 5000},
    {"operationType": "TRANSFER", "amount": "1"},
    {"operationType": "DEPOSIT"},
    {"amount": "1"},
    {"operationType": "DEPOSIT", "operation_type": "WITHDRAW", "amount": "1"},
]


@pytest.mark.parametrize("body", BAD_BODIES)
def test_bad_input_is_400_with_a_message_and_changes_nothing(auth_api, wallet, body):
    before = Entry.objects.count()
    response = auth_api.post(op_url(wallet), body, format="json")
    assert response.status_code == 400, response.content
    assert response.json()
    assert Entry.objects.count() == before


@pytest.mark.parametrize(
    "raw, content_type, status",
    [
        (b'{"operationType": "DEPOSIT", "amount": NaN}', "application/json", 400),
        (b'{"operationType": "DEPOSIT", "amount": Infinity}', "application/json", 400),
        (b'{"operationType": "DEPOSIT", "amount": 1e30}', "application/json", 400),
        (b'{"operationType": "DEPOSIT", "amount": 1.001}', "application/json", 400),
        (b'{"operationType": "DEPOSIT", ', "application/json", 400),
        (b"[1, 2]", "application/json", 400),
        (b"operationType=DEPOSIT&amount=1", "text/plain", 415),
    ],
)
def test_malformed_requests_are_4xx(auth_api, wallet, raw, content_type, status):
    response = auth_api.post(op_url(wallet), raw, content_type=content_type)
    assert response.status_code == status
    assert "detail" in response.json() or response.json()
    wallet.refresh_from_db()
    assert wallet.balance.amount == Decimal("1000.00")


def test_idempotency_key_replays_through_the_api(auth_api, wallet):
    body = {"operationType": "WITHDRAW", "amount": "10.00"}
    first = auth_api.post(
        op_url(wallet), body, format="json", HTTP_IDEMPOTENCY_KEY="abc"
    )
    second = auth_api.post(
        op_url(wallet), body, format="json", HTTP_IDEMPOTENCY_KEY="abc"
    )
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    wallet.refresh_from_db()
    assert wallet.balance.amount == Decimal("990.00")
    other = auth_api.post(
        op_url(wallet),
        {**body, "amount": "11.00"},
        format="json",
        HTTP_IDEMPOTENCY_KEY="abc",
    )
    assert other.status_code == 422
    assert other.json()["code"] == "idempotency_key_reused"


def test_errors_speak_russian_when_asked(auth_api, wallet):
    response = auth_api.post(
        op_url(wallet),
        {"operationType": "WITHDRAW", "amount": "5000"},
        format="json",
        HTTP_ACCEPT_LANGUAGE="ru",
    )
    assert response.status_code == 400
    assert response.json() == {
        "detail": "Недостаточно средств.",
        "code": "insufficient_funds",
    }


def test_without_a_token_everything_is_401(api, wallet):
    assert api.get("/api/v1/wallets/").status_code == 401
    response = api.post(
        op_url(wallet), {"operationType": "DEPOSIT", "amount": "1"}, format="json"
    )
    assert response.status_code == 401
    assert Wallet.objects.get(pk=wallet.pk).balance.amount == Decimal("1000.00")
