"""Payouts through the API: the owner holds money for one, the provider pays or
fails it, the owner may cancel; the wallet shows `held` and `available_balance`."""

from decimal import Decimal

import pytest

from transactions.ledger import wallet_block
from transactions.models import Entry, Hold, Payout, Transaction
from transactions.selectors import ledger_reconcile
from wallets.models import Wallet
from wallets.selectors import system_wallet

pytestmark = pytest.mark.django_db

D = Decimal


def payouts_url(wallet) -> str:
    return f"/api/v1/wallets/{wallet.id}/payouts/"


def decide_url(payout_id) -> str:
    return f"/api/v1/service/payouts/{payout_id}/"


def wallet_view(api, wallet) -> dict:
    response = api.get(f"/api/v1/wallets/{wallet.id}/")
    assert response.status_code == 200
    return response.json()


def start(api, wallet, amount="300.00", **extra):
    body = {"amount": amount, "destination": "card_tok_4242", **extra}
    return api.post(payouts_url(wallet), body, format="json")


@pytest.fixture
def pending(auth_api, wallet) -> dict:
    response = start(auth_api, wallet)
    assert response.status_code == 201, response.content
    return response.json()


def test_a_payout_holds_its_amount_at_once(auth_api, wallet, pending):
    assert pending["status"] == "pending"
    assert (pending["amount"], pending["currency"]) == ("300.00", "KZT")
    assert pending["destination"] == "card_tok_4242"
    assert pending["expires_at"] and pending["created_at"]
    assert pending["transaction_id"] is None
    view = wallet_view(auth_api, wallet)
    assert (view["balance"], view["held"], view["available_balance"]) == (
        "1000.00",
        "300.00",
        "700.00",
    )
    listed = auth_api.get("/api/v1/wallets/").json()
    mine = next(row for row in listed if row["id"] == str(wallet.id))
    assert (mine["held"], mine["available_balance"]) == ("300.00", "700.00")
    # A withdrawal is checked against what is available.
    withdraw = auth_api.post(
        f"/api/v1/wallets/{wallet.id}/operation/",
        {"operation_type": "WITHDRAW", "amount": "700.01"},
        format="json",
    )
    assert withdraw.status_code == 400
    assert withdraw.json()["code"] == "insufficient_funds"


def test_the_provider_pays_it_and_history_shows_it(
    auth_api, service_api, wallet, pending
):
    queue = service_api.get("/api/v1/service/payouts/", {"status": "pending"}).json()
    assert [row["id"] for row in queue["results"]] == [pending["id"]]
    paid = service_api.put(
        decide_url(pending["id"]),
        {"status": "paid", "provider_reference": "prv-77"},
        format="json",
    )
    assert paid.status_code == 200, paid.content
    body = paid.json()
    assert (body["status"], body["provider_reference"]) == ("paid", "prv-77")
    view = wallet_view(auth_api, wallet)
    assert (view["balance"], view["held"], view["available_balance"]) == (
        "700.00",
        "0.00",
        "700.00",
    )
    history = auth_api.get(f"/api/v1/wallets/{wallet.id}/transactions/").json()
    newest = history["results"][0]
    assert (newest["kind"], newest["amount"]) == ("payout", "-300.00")
    assert newest["transaction_id"] == body["transaction_id"]
    provider = system_wallet("KZT", Wallet.SystemCode.PROVIDER)
    assert Entry.objects.get(
        transaction_id=body["transaction_id"], wallet=provider
    ).amount.amount == D("300.00")
    again = service_api.put(
        decide_url(pending["id"]), {"status": "paid"}, format="json"
    )
    assert again.status_code == 200 and again.json() == body
    other = service_api.put(
        decide_url(pending["id"]), {"status": "failed"}, format="json"
    )
    assert other.status_code == 409
    assert other.json()["code"] == "payout_already_decided"
    assert Transaction.objects.filter(kind="payout").count() == 1
    assert ledger_reconcile().clean


def test_failed_releases_the_hold_and_posts_nothing(
    auth_api, service_api, wallet, pending
):
    failed = service_api.put(
        decide_url(pending["id"]),
        {"status": "failed", "reason": "card expired"},
        format="json",
    )
    assert failed.status_code == 200
    assert (failed.json()["status"], failed.json()["failure_reason"]) == (
        "failed",
        "card expired",
    )
    view = wallet_view(auth_api, wallet)
    assert (view["balance"], view["held"]) == ("1000.00", "0.00")
    assert not Transaction.objects.filter(kind="payout").exists()


def test_the_owner_cancels_a_pending_payout(
    auth_api, client_of, other_user, service_api, wallet, pending
):
    url = f"/api/v1/payouts/{pending['id']}/"
    assert auth_api.get(url).json() == pending
    stranger = client_of(other_user)
    assert stranger.get(url).status_code == 404
    assert stranger.post(url + "cancel/").status_code == 404
    canceled = auth_api.post(url + "cancel/")
    assert canceled.status_code == 200 and canceled.json()["status"] == "canceled"
    assert auth_api.post(url + "cancel/").status_code == 200
    assert wallet_view(auth_api, wallet)["held"] == "0.00"
    decided = service_api.put(
        decide_url(pending["id"]), {"status": "paid"}, format="json"
    )
    assert decided.status_code == 409
    assert decided.json()["code"] == "payout_already_decided"


def test_a_payout_larger_than_the_available_balance_is_refused(auth_api, wallet):
    assert start(auth_api, wallet, "600.00").status_code == 201
    refused = start(auth_api, wallet, "400.01")
    assert refused.status_code == 400
    assert refused.json()["code"] == "insufficient_funds"
    assert Payout.objects.count() == Hold.objects.count() == 1
    assert wallet_view(auth_api, wallet)["held"] == "600.00"


def test_a_blocked_wallet_cannot_start_a_payout(auth_api, wallet):
    wallet_block(wallet=wallet, reason="review")
    refused = start(auth_api, wallet)
    assert refused.status_code == 409
    assert refused.json()["code"] == "wallet_blocked"
    assert not Payout.objects.exists()


@pytest.mark.parametrize(
    "body",
    [
        {"amount": "0", "destination": "x"},
        {"amount": "-5.00", "destination": "x"},
        {"amount": "1.001", "destination": "x"},
        {"amount": "NaN", "destination": "x"},
        {"amount": "abc", "destination": "x"},
        {"amount": "10000000000.00", "destination": "x"},
        {"amount": True, "destination": "x"},
        {"amount": "10.00"},
        {"amount": "10.00", "destination": ""},
        {"amount": "10.00", "destination": "x" * 65},
        {"amount": "10.00", "destination": 42},
        {"amount": "10.00", "destination": "x", "description": ["list"]},
    ],
)
def test_bad_input_is_a_400_and_changes_nothing(auth_api, wallet, body):
    response = auth_api.post(payouts_url(wallet), body, format="json")
    assert response.status_code == 400, response.content
    assert not Payout.objects.exists() and not Hold.objects.exists()
    assert wallet_view(auth_api, wallet)["held"] == "0.00"


def test_foreign_and_malformed_ids_are_404(
    auth_api, client_of, other_user, service_api, wallet
):
    stranger = client_of(other_user)
    assert start(stranger, wallet).status_code == 404
    assert auth_api.get("/api/v1/payouts/not-a-uuid/").status_code == 404
    missing = "00000000-0000-0000-0000-000000000000"
    response = service_api.put(decide_url(missing), {"status": "paid"}, format="json")
    assert response.status_code == 404
    assert response.json()["code"] == "payout_not_found"
    # Users are not the provider: its endpoints are a 404 to them.
    assert auth_api.get("/api/v1/service/payouts/").status_code == 404


def test_a_keyed_retry_holds_once(auth_api, wallet):
    headers = {"HTTP_IDEMPOTENCY_KEY": "payout-1"}
    body = {"amount": "100.00", "destination": "iban_KZ00"}
    first = auth_api.post(payouts_url(wallet), body, format="json", **headers)
    again = auth_api.post(payouts_url(wallet), body, format="json", **headers)
    assert first.status_code == again.status_code == 201
    assert first.content == again.content
    assert again["Idempotency-Replayed"] == "true"
    assert Payout.objects.count() == 1
    assert wallet_view(auth_api, wallet)["held"] == "100.00"
    other = auth_api.post(
        payouts_url(wallet), {**body, "amount": "5.00"}, format="json", **headers
    )
    assert other.status_code == 422
