"""GET wallets/{id}/fees/ and the fee fields of the wallet detail."""

from decimal import Decimal

import pytest
from django.utils import timezone

from fees.services import FEE_BLOCK_REASON, fee_charge_due
from wallets.models import Wallet

pytestmark = pytest.mark.django_db


def fees_url(wallet) -> str:
    return f"/api/v1/wallets/{wallet.id}/fees/"


def charge_now(wallet: Wallet) -> None:
    Wallet.objects.filter(pk=wallet.pk).update(next_fee_at=timezone.now())
    fee_charge_due(as_of=timezone.now(), batch_size=10)


def test_the_owner_lists_the_wallets_fee_charges(auth_api, wallet):
    charge_now(wallet)
    wallet.refresh_from_db()

    response = auth_api.get(fees_url(wallet))

    assert response.status_code == 200
    body = response.json()
    assert body["next"] is None
    [charge] = body["results"]
    assert charge["amount"] == "200.00"
    assert charge["currency"] == "KZT"
    assert charge["status"] == "paid"
    assert charge["rate"] is None
    assert charge["transaction_id"] is not None
    assert charge["paid_at"] is not None
    assert set(charge) >= {"id", "period_start", "waived_at", "created_at"}
    # The paying transaction is the caller's to read.
    txn = auth_api.get(f"/api/v1/transactions/{charge['transaction_id']}/")
    assert txn.status_code == 200


def test_charges_are_listed_newest_period_first_and_paginated(auth_api, wallet):
    for _ in range(3):
        charge_now(wallet)

    first = auth_api.get(fees_url(wallet), {"limit": 2}).json()
    second = auth_api.get(first["next"]).json()

    periods = [c["period_start"] for c in first["results"] + second["results"]]
    assert len(periods) == 3
    assert periods == sorted(periods, reverse=True)
    assert second["next"] is None


def test_another_users_wallet_and_a_malformed_id_are_404(client_of, other_user, wallet):
    charge_now(wallet)
    stranger = client_of(other_user)

    response = stranger.get(fees_url(wallet))
    assert response.status_code == 404
    assert response.json()["code"] == "wallet_not_found"
    assert stranger.get("/api/v1/wallets/not-a-uuid/fees/").status_code == 404


def test_the_fee_list_needs_a_token(api, wallet):
    assert api.get(fees_url(wallet)).status_code == 401


def test_wallet_detail_shows_the_block_and_the_outstanding_debt(
    auth_api, user, make_wallet
):
    wallet = make_wallet(owner=user, balance="50.00")
    charge_now(wallet)

    body = auth_api.get(f"/api/v1/wallets/{wallet.id}/").json()

    wallet.refresh_from_db()
    assert body["status"] == "blocked"
    assert body["blocked_reason"] == FEE_BLOCK_REASON
    assert body["debt"] == "200.00"
    assert body["balance"] == "50.00"
    assert body["next_fee_at"] == wallet.next_fee_at.isoformat().replace("+00:00", "Z")
    listed = auth_api.get(fees_url(wallet)).json()["results"]
    assert [(c["status"], c["transaction_id"]) for c in listed] == [("debt", None)]


def test_a_blocked_wallet_can_deposit_but_not_withdraw_and_the_deposit_pays_the_debt(
    auth_api, user, make_wallet
):
    wallet = make_wallet(owner=user, balance="50.00")
    charge_now(wallet)
    url = f"/api/v1/wallets/{wallet.id}/operation"

    withdraw = auth_api.post(
        url, {"operation_type": "WITHDRAW", "amount": "10.00"}, format="json"
    )
    assert withdraw.status_code == 409
    assert withdraw.json()["code"] == "wallet_blocked"

    deposit = auth_api.post(
        url, {"operation_type": "DEPOSIT", "amount": "250.00"}, format="json"
    )
    assert deposit.status_code == 201
    assert deposit.json()["new_balance"] == "100.00"  # 50 + 250 - 200 debt

    body = auth_api.get(f"/api/v1/wallets/{wallet.id}/").json()
    assert (body["status"], body["blocked_reason"], body["debt"]) == (
        "active",
        "",
        "0.00",
    )
    assert body["balance"] == "100.00"
    assert Decimal(body["balance"]) == Decimal("100.00")
    withdraw = auth_api.post(
        url, {"operation_type": "WITHDRAW", "amount": "10.00"}, format="json"
    )
    assert withdraw.status_code == 201


def test_wallet_list_shows_a_zero_debt(auth_api, wallet):
    [body] = auth_api.get("/api/v1/wallets/").json()
    assert body["debt"] == "0.00"
