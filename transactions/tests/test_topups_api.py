"""Top-ups through the API: the owner starts one, the provider decides it."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from transactions.ledger import wallet_block
from transactions.models import Entry, TopUp, Transaction
from transactions.selectors import ledger_reconcile
from wallets.models import Wallet
from wallets.selectors import system_wallet

pytestmark = pytest.mark.django_db


def topup_url(wallet) -> str:
    return f"/api/v1/wallets/{wallet.id}/topups/"


def decide_url(topup_id) -> str:
    return f"/api/v1/service/topups/{topup_id}/"


def system_total(currency: str, code: str) -> Decimal:
    wallet = system_wallet(currency, code)
    return sum(
        (e.amount.amount for e in Entry.objects.filter(wallet=wallet)), Decimal(0)
    )


def balance(wallet) -> Decimal:
    wallet.refresh_from_db()
    return wallet.balance.amount


@pytest.fixture
def pending(auth_api, wallet) -> dict:
    response = auth_api.post(topup_url(wallet), {"amount": "500.00"}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


# --- The owner's side ---------------------------------------------------------------


def test_owner_starts_a_pending_topup_and_no_money_moves(auth_api, wallet):
    before = Transaction.objects.count()
    response = auth_api.post(topup_url(wallet), {"amount": "250.50"}, format="json")
    assert response.status_code == 201
    body = response.json()
    assert body["wallet"] == str(wallet.id)
    assert body["amount"] == "250.50"
    assert body["currency"] == "KZT"
    assert body["status"] == "pending"
    assert body["commission"] is None
    assert body["transaction_id"] is None
    assert body["created_at"] and body["expires_at"]
    assert balance(wallet) == Decimal("1000.00")
    assert Transaction.objects.count() == before


def test_owner_lists_their_wallets_topups_newest_first(auth_api, wallet):
    ids = [
        auth_api.post(topup_url(wallet), {"amount": a}, format="json").json()["id"]
        for a in ("1.00", "2.00", "3.00")
    ]
    page = auth_api.get(topup_url(wallet)).json()
    assert [row["id"] for row in page["results"]] == ids[::-1]
    assert "next" in page
    limited = auth_api.get(topup_url(wallet), {"limit": 2}).json()
    assert len(limited["results"]) == 2 and limited["next"]
    assert auth_api.get(topup_url(wallet), {"status": "paid"}).json()["results"] == []
    assert auth_api.get(topup_url(wallet), {"status": "bogus"}).status_code == 400


@pytest.mark.parametrize(
    "amount", ["0", "-5.00", "1.001", "NaN", "abc", "10000000000.00", None, True]
)
def test_bad_amounts_are_400_and_create_nothing(auth_api, wallet, amount):
    response = auth_api.post(topup_url(wallet), {"amount": amount}, format="json")
    assert response.status_code == 400
    assert "amount" in response.json()
    assert not TopUp.objects.exists()


def test_idempotency_key_replays_the_first_topup(auth_api, wallet):
    headers = {"HTTP_IDEMPOTENCY_KEY": "topup-1"}
    first = auth_api.post(
        topup_url(wallet), {"amount": "10.00"}, format="json", **headers
    )
    again = auth_api.post(
        topup_url(wallet), {"amount": "10.00"}, format="json", **headers
    )
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    assert TopUp.objects.count() == 1
    other = auth_api.post(
        topup_url(wallet), {"amount": "11.00"}, format="json", **headers
    )
    assert other.status_code == 422
    assert other.json()["code"] == "idempotency_key_reused"


def test_a_blocked_wallet_may_be_topped_up_and_paid(auth_api, service_api, wallet):
    wallet_block(wallet=wallet, reason="test")
    created = auth_api.post(topup_url(wallet), {"amount": "40.00"}, format="json")
    assert created.status_code == 201
    paid = service_api.put(
        decide_url(created.json()["id"]), {"status": "paid"}, format="json"
    )
    assert paid.status_code == 200
    assert Entry.objects.filter(
        transaction_id=paid.json()["transaction_id"], wallet=wallet
    ).get().amount.amount == Decimal("40.00")
    assert ledger_reconcile().clean


def test_another_users_wallet_topups_are_404(client_of, other_user, wallet, pending):
    stranger = client_of(other_user)
    listing = stranger.get(topup_url(wallet))
    assert listing.status_code == 404
    assert listing.json()["code"] == "wallet_not_found"
    created = stranger.post(topup_url(wallet), {"amount": "1.00"}, format="json")
    assert created.status_code == 404
    assert TopUp.objects.count() == 1


def test_anonymous_is_401_and_malformed_wallet_id_is_404(api, auth_api):
    assert (
        api.get(
            "/api/v1/wallets/00000000-0000-0000-0000-000000000000/topups/"
        ).status_code
        == 401
    )
    assert auth_api.get("/api/v1/wallets/not-a-uuid/topups/").status_code == 404


# --- The provider's side ------------------------------------------------------------


def test_provider_lists_pending_topups_oldest_first(service_api, auth_api, wallet):
    ids = [
        auth_api.post(topup_url(wallet), {"amount": a}, format="json").json()["id"]
        for a in ("1.00", "2.00", "3.00")
    ]
    service_api.put(decide_url(ids[1]), {"status": "rejected"}, format="json")
    page = service_api.get("/api/v1/service/topups/", {"status": "pending"}).json()
    assert [row["id"] for row in page["results"]] == [ids[0], ids[2]]
    everything = service_api.get("/api/v1/service/topups/").json()["results"]
    assert [row["id"] for row in everything] == ids
    first = service_api.get("/api/v1/service/topups/", {"limit": 1}).json()
    second = service_api.get(first["next"]).json()
    assert [r["id"] for r in first["results"] + second["results"]] == ids[:2]


@pytest.mark.parametrize("reference", [0, 42.5, True, ["psp"]])
def test_a_provider_reference_that_is_not_a_string_is_400(
    service_api, wallet, pending, reference
):
    """The schema says string: a number is not quietly stored as its text."""
    response = service_api.put(
        decide_url(pending["id"]),
        {"status": "paid", "provider_reference": reference},
        format="json",
    )
    assert response.status_code == 400
    assert response.json() == {"provider_reference": ["Not a valid string."]}
    assert balance(wallet) == Decimal("1000.00")


def test_paid_credits_the_wallet_from_the_provider_in_one_transaction(
    service_api, wallet, pending
):
    provider_before = system_total("KZT", Wallet.SystemCode.PROVIDER)
    response = service_api.put(
        decide_url(pending["id"]),
        {"status": "paid", "provider_reference": "psp-42"},
        format="json",
    )
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "paid"
    assert body["commission"] == "0.00"
    assert body["provider_reference"] == "psp-42"
    assert body["decided_at"] and body["expires_at"] is None
    assert balance(wallet) == Decimal("1500.00")
    txn = Transaction.objects.get(pk=body["transaction_id"])
    assert txn.kind == "topup"
    assert txn.metadata["topup_id"] == pending["id"]
    assert txn.metadata["provider_reference"] == "psp-42"
    assert sorted(e.amount.amount for e in txn.entries.all()) == [
        Decimal("-500.00"),
        Decimal("500.00"),
    ]
    assert system_total("KZT", Wallet.SystemCode.PROVIDER) == provider_before - 500
    assert ledger_reconcile().clean


def test_paid_with_a_commission_moves_it_to_the_fees_wallet(
    service_api, wallet, pending
):
    response = service_api.put(
        decide_url(pending["id"]),
        {"status": "paid", "commission": "12.34"},
        format="json",
    )
    assert response.status_code == 200
    assert response.json()["commission"] == "12.34"
    assert balance(wallet) == Decimal("1000.00") + Decimal("500.00") - Decimal("12.34")
    txn = Transaction.objects.get(pk=response.json()["transaction_id"])
    legs = {
        (e.wallet.kind, e.wallet.system_code, e.amount.amount)
        for e in txn.entries.select_related("wallet")
    }
    assert legs == {
        ("user", "", Decimal("500.00")),
        ("system", "provider", Decimal("-500.00")),
        ("user", "", Decimal("-12.34")),
        ("system", "fees", Decimal("12.34")),
    }
    assert system_total("KZT", Wallet.SystemCode.FEES) == Decimal("12.34")
    assert ledger_reconcile().clean


def test_commission_percent_setting_applies_when_none_is_stated(
    settings, service_api, auth_api, wallet
):
    settings.TOPUP_COMMISSION_PERCENT = Decimal("1.5")
    created = auth_api.post(topup_url(wallet), {"amount": "100.01"}, format="json")
    response = service_api.put(
        decide_url(created.json()["id"]), {"status": "paid"}, format="json"
    )
    # 1.5% of 100.01 = 1.50015 -> 1.50
    assert response.json()["commission"] == "1.50"
    assert balance(wallet) == Decimal("1098.51")
    stated = auth_api.post(topup_url(wallet), {"amount": "100.00"}, format="json")
    response = service_api.put(
        decide_url(stated.json()["id"]),
        {"status": "paid", "commission": 0},
        format="json",
    )
    assert response.json()["commission"] == "0.00"
    assert balance(wallet) == Decimal("1198.51")
    assert ledger_reconcile().clean


@pytest.mark.parametrize(
    ("commission", "code"),
    [
        ("500.01", "invalid_commission"),
        ("-1.00", None),
        ("1.001", None),
        ("NaN", None),
    ],
)
def test_a_bad_commission_is_400_and_the_topup_stays_pending(
    service_api, wallet, pending, commission, code
):
    response = service_api.put(
        decide_url(pending["id"]),
        {"status": "paid", "commission": commission},
        format="json",
    )
    assert response.status_code == 400
    if code:
        assert response.json()["code"] == code
    else:
        assert "commission" in response.json()
    assert TopUp.objects.get(pk=pending["id"]).status == "pending"
    assert balance(wallet) == Decimal("1000.00")


def test_a_commission_equal_to_the_amount_credits_nothing_net(
    service_api, wallet, pending
):
    response = service_api.put(
        decide_url(pending["id"]),
        {"status": "paid", "commission": "500.00"},
        format="json",
    )
    assert response.status_code == 200
    assert balance(wallet) == Decimal("1000.00")
    assert ledger_reconcile().clean


def test_rejected_moves_nothing(service_api, wallet, pending):
    before = Transaction.objects.count()
    response = service_api.put(
        decide_url(pending["id"]),
        {"status": "rejected", "provider_reference": "declined"},
        format="json",
    )
    assert response.status_code == 200
    assert response.json()["status"] == "rejected"
    assert response.json()["transaction_id"] is None
    assert response.json()["commission"] is None
    assert Transaction.objects.count() == before
    assert balance(wallet) == Decimal("1000.00")


@pytest.mark.parametrize("decision", ["paid", "rejected"])
def test_the_same_decision_again_is_200_with_the_same_body_and_moves_nothing(
    service_api, wallet, pending, decision
):
    first = service_api.put(
        decide_url(pending["id"]), {"status": decision}, format="json"
    )
    count = Transaction.objects.count()
    again = service_api.put(
        decide_url(pending["id"]),
        {"status": decision, "commission": "9.00"},
        format="json",
    )
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    assert Transaction.objects.count() == count
    assert balance(wallet) == (
        Decimal("1500.00") if decision == "paid" else Decimal("1000.00")
    )


@pytest.mark.parametrize(
    ("first", "then"), [("paid", "rejected"), ("rejected", "paid")]
)
def test_the_opposite_decision_is_409(service_api, wallet, pending, first, then):
    service_api.put(decide_url(pending["id"]), {"status": first}, format="json")
    count = Transaction.objects.count()
    response = service_api.put(
        decide_url(pending["id"]), {"status": then}, format="json"
    )
    assert response.status_code == 409
    assert response.json()["code"] == "topup_already_decided"
    assert TopUp.objects.get(pk=pending["id"]).status == first
    assert Transaction.objects.count() == count


@pytest.mark.parametrize("status", ["pending", "expired", "approved", "", None])
def test_only_paid_or_rejected_are_decisions(service_api, pending, status):
    response = service_api.put(
        decide_url(pending["id"]), {"status": status}, format="json"
    )
    assert response.status_code == 400
    assert "status" in response.json()


def test_unknown_or_malformed_topup_ids_are_404(service_api):
    for topup_id in ("00000000-0000-0000-0000-000000000000", "nope"):
        response = service_api.put(
            decide_url(topup_id), {"status": "paid"}, format="json"
        )
        assert response.status_code == 404
        assert response.json()["code"] == "topup_not_found"
        assert service_api.get(decide_url(topup_id)).status_code == 404


def test_provider_reads_one_topup(service_api, pending):
    response = service_api.get(decide_url(pending["id"]))
    assert response.status_code == 200
    assert response.json() == pending


# --- Expiry -----------------------------------------------------------------------


def age(topup_id, by: timedelta) -> None:
    TopUp.objects.filter(pk=topup_id).update(created_at=timezone.now() - by)


def test_a_late_paid_on_an_expired_topup_is_409(settings, service_api, wallet, pending):
    from transactions.tasks import topups_expire

    age(pending["id"], settings.TOPUP_TTL + timedelta(minutes=1))
    assert topups_expire() == 1
    assert TopUp.objects.get(pk=pending["id"]).status == "expired"
    response = service_api.put(
        decide_url(pending["id"]), {"status": "paid"}, format="json"
    )
    assert response.status_code == 409
    assert response.json()["code"] == "topup_expired"
    assert balance(wallet) == Decimal("1000.00")
    rejected = service_api.put(
        decide_url(pending["id"]), {"status": "rejected"}, format="json"
    )
    assert rejected.status_code == 409


def test_a_stale_topup_not_yet_swept_is_expired_by_the_decision(
    settings, service_api, wallet, pending
):
    age(pending["id"], settings.TOPUP_TTL + timedelta(seconds=1))
    response = service_api.put(
        decide_url(pending["id"]), {"status": "paid"}, format="json"
    )
    assert response.status_code == 409
    assert response.json()["code"] == "topup_expired"
    assert TopUp.objects.get(pk=pending["id"]).status == "expired"
    assert balance(wallet) == Decimal("1000.00")


def test_the_expiry_task_leaves_fresh_and_decided_topups_alone(
    settings, service_api, auth_api, wallet, pending
):
    from transactions.tasks import topups_expire

    fresh = auth_api.post(topup_url(wallet), {"amount": "1.00"}, format="json").json()
    age(fresh["id"], settings.TOPUP_TTL - timedelta(minutes=1))
    service_api.put(decide_url(pending["id"]), {"status": "paid"}, format="json")
    age(pending["id"], settings.TOPUP_TTL * 2)
    assert topups_expire() == 0
    assert TopUp.objects.get(pk=fresh["id"]).status == "pending"
    assert TopUp.objects.get(pk=pending["id"]).status == "paid"
    assert (
        auth_api.get(topup_url(wallet), {"status": "expired"}).json()["results"] == []
    )


def test_the_expiry_task_is_on_the_beat_schedule(settings):
    from wallet_project.celery import app

    entry = settings.CELERY_BEAT_SCHEDULE["transactions-expire-topups"]
    app.loader.import_default_modules()
    assert entry["task"] in app.tasks


# --- Access control ----------------------------------------------------------------


def test_a_normal_user_gets_the_same_404_as_an_unknown_url(auth_api, pending):
    unknown = auth_api.get("/api/v1/service/nothing-here/")
    for response in (
        auth_api.get("/api/v1/service/topups/"),
        auth_api.get("/api/v1/service/topups/", {"status": "pending"}),
        auth_api.get(decide_url(pending["id"])),
        auth_api.put(decide_url(pending["id"]), {"status": "paid"}, format="json"),
    ):
        assert response.status_code == 404
        assert response.json() == unknown.json()
    assert TopUp.objects.get(pk=pending["id"]).status == "pending"


def test_staff_without_the_service_role_cannot_decide(client_of, pending):
    from accounts.tests.factories import UserFactory

    staff = client_of(UserFactory(is_staff=True, is_superuser=True))
    response = staff.put(decide_url(pending["id"]), {"status": "paid"}, format="json")
    assert response.status_code == 404


def test_anonymous_gets_401_on_the_provider_api(api, pending):
    assert api.get("/api/v1/service/topups/").status_code == 401
    assert (
        api.put(
            decide_url(pending["id"]), {"status": "paid"}, format="json"
        ).status_code
        == 401
    )


def test_a_service_account_logs_in_through_the_token_endpoint(api, service_account):
    from accounts.tests.factories import PASSWORD

    response = api.post(
        "/api/v1/auth/token/",
        {"email": service_account.email, "password": PASSWORD},
        format="json",
    )
    assert response.status_code == 200
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {response.json()['access']}")
    assert api.get("/api/v1/service/topups/").status_code == 200


def test_a_deactivated_service_account_is_locked_out(service_api, service_account):
    service_account.is_active = False
    service_account.save(update_fields=["is_active"])
    assert service_api.get("/api/v1/service/topups/").status_code == 401


def test_a_paid_topup_to_a_wallet_blocked_for_fee_debt_collects_the_debt(
    auth_api, service_api, user, make_wallet
):
    """The fees rule applies to a top-up as to any credit: the net amount
    (after the commission) pays the debt and the wallet is unblocked."""
    from fees.services import fee_charge_due

    wallet = make_wallet(owner=user, balance="50.00")
    Wallet.objects.filter(pk=wallet.pk).update(next_fee_at=timezone.now())
    fee_charge_due()
    wallet.refresh_from_db()
    assert wallet.status == "blocked"
    created = auth_api.post(topup_url(wallet), {"amount": "300.00"}, format="json")
    response = service_api.put(
        decide_url(created.json()["id"]),
        {"status": "paid", "commission": "10.00"},
        format="json",
    )
    assert response.status_code == 200
    wallet.refresh_from_db()
    assert wallet.status == "active"
    assert wallet.balance.amount == Decimal("140.00")  # 50 + 300 - 10 - 200
    assert ledger_reconcile().clean
