"""GET wallets/{id}/ on the lean path (wallet_project.lean): one query, and the very
bytes DRF's own path gives (forced here with an Accept that only DRF handles:
`application/json; indent=0` is compact JSON)."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework import serializers

from accounts.tests.factories import UserFactory
from fees.selectors import fee_debt_total
from fees.services import fee_charge_due
from wallets.api.serializers import WalletSerializer
from wallets.models import Wallet

pytestmark = pytest.mark.django_db

DRF_PATH = {"HTTP_ACCEPT": "application/json; indent=0"}


def _blocked_with_debt(make_wallet, user) -> Wallet:
    wallet = make_wallet(owner=user, currency="KZT", balance="50.00")
    Wallet.objects.filter(pk=wallet.pk).update(
        next_fee_at=timezone.now() - timedelta(days=1)
    )
    fee_charge_due(as_of=timezone.now())
    wallet.refresh_from_db()
    assert wallet.status == Wallet.Status.BLOCKED
    return wallet


def test_detail_is_one_query_and_the_same_bytes_as_drfs_path(
    auth_api, user, make_wallet
):
    active = make_wallet(owner=user, currency="USD", balance="12.34")
    blocked = _blocked_with_debt(make_wallet, user)
    for wallet in (active, blocked):
        url = f"/api/v1/wallets/{wallet.id}/"
        with CaptureQueriesContext(connection) as queries:
            lean = auth_api.get(url)
        assert len(queries) == 1  # read before the next request resets the log
        drf = auth_api.get(url, **DRF_PATH)
        assert lean.status_code == drf.status_code == 200
        assert lean.content == drf.content
        assert lean["Content-Type"] == drf["Content-Type"] == "application/json"
        assert lean["Allow"] == drf["Allow"]
    body = auth_api.get(f"/api/v1/wallets/{blocked.id}/").json()
    assert body["status"] == "blocked"
    assert body["debt"] == f"{fee_debt_total(wallet=blocked):.2f}" != "0.00"


def test_wallet_serializer_output_is_its_declared_fields(user, make_wallet):
    """WalletSerializer builds its dict directly; the fields it declares (the
    schema) would give exactly the same."""
    wallets = [
        make_wallet(owner=user, currency="EUR", balance="0.10"),
        _blocked_with_debt(make_wallet, UserFactory()),
    ]
    for wallet in wallets:
        fast = WalletSerializer(wallet).data
        slow = serializers.ModelSerializer.to_representation(
            WalletSerializer(wallet), wallet
        )
        assert fast == slow
        assert list(fast) == list(slow)


def test_a_deactivated_owner_gets_drfs_401_not_their_wallet(auth_api, user, wallet):
    user.is_active = False
    user.save(update_fields=["is_active"])
    response = auth_api.get(f"/api/v1/wallets/{wallet.id}/")
    assert response.status_code == 401
    assert response.json()["code"] in {"user_inactive", "token_not_valid"}


def test_foreign_unknown_system_and_malformed_ids_are_404(
    auth_api, make_wallet, other_user
):
    foreign = make_wallet(owner=other_user)
    system = Wallet.objects.filter(kind=Wallet.Kind.SYSTEM).first()
    for wallet_id in (
        foreign.id,
        system.id,
        "00000000-0000-0000-0000-000000000000",
        "not-a-uuid",
    ):
        response = auth_api.get(f"/api/v1/wallets/{wallet_id}/")
        assert response.status_code == 404
        assert response.json() == {
            "detail": "Wallet not found.",
            "code": "wallet_not_found",
        }


def test_the_wallet_list_reads_every_debt_in_its_one_query(auth_api, user, make_wallet):
    make_wallet(owner=user, currency="USD", balance="12.34")
    make_wallet(owner=user, currency="EUR", balance="0")
    blocked = _blocked_with_debt(make_wallet, user)
    with CaptureQueriesContext(connection) as queries:
        response = auth_api.get("/api/v1/wallets/")
    assert response.status_code == 200
    debts = {row["currency"]: row["debt"] for row in response.json()}
    owed = f"{fee_debt_total(wallet=blocked):.2f}"
    assert debts == {"USD": "0.00", "EUR": "0.00", "KZT": owed} and owed != "0.00"
    # The user (JWT) and the wallets with their debts: no query per wallet.
    assert len(queries) <= 2, [q["sql"] for q in queries.captured_queries]
