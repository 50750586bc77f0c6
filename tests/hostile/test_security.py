"""Attacks: other people's objects, forged tokens on every protected endpoint, brute
force, mass assignment, the admin without staff or CSRF, and what an error may
reveal with DEBUG off."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.conf import settings
from django.test import Client
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

from accounts.tests.factories import PASSWORD, UserFactory
from fees.services import fee_charge_due
from transactions.ledger import payout_create, topup_create, transfer_create
from transactions.models import Payout
from transactions.webhooks import endpoint_create
from wallets.models import Wallet

pytestmark = pytest.mark.hostile


@pytest.fixture
def objects(user, other_user, make_wallet, rates, service_account):
    """The owner's wallet with a transfer (to a third party: the receiver may see
    it), a top-up, a fee charge and a pending payout on it."""
    wallet = make_wallet(owner=user, currency="KZT", balance="1000.00")
    sink = make_wallet(currency="KZT", balance="0")  # a third party's
    posting = transfer_create(
        source=wallet,
        destination_number=sink.number,
        amount=Decimal("10.00"),
        initiator=user,
    )
    topup = topup_create(wallet=wallet, amount=Decimal("50.00"))
    Wallet.objects.filter(pk=wallet.pk).update(next_fee_at=wallet.created_at)
    fee_charge_due(as_of=wallet.created_at + timedelta(seconds=1), batch_size=10)
    payout = payout_create(
        wallet=wallet, amount=Decimal("50.00"), destination="card_tok", initiator=user
    )
    endpoint = endpoint_create(
        user=user, url="https://93.184.215.14/hooks", event_types=["*"]
    )
    return {
        "wallet": str(wallet.id),
        "transaction": str(posting.transaction.id),
        "topup": str(topup.id),
        "payout": str(payout.id),
        "endpoint": str(endpoint.id),
    }


def _matrix(o: dict) -> list[tuple[str, str, dict | None]]:
    w = o["wallet"]
    return [
        ("get", f"/api/v1/wallets/{w}/", None),
        ("patch", f"/api/v1/wallets/{w}/", {"name": "mine now"}),
        (
            "post",
            f"/api/v1/wallets/{w}/operation",
            {"operation_type": "WITHDRAW", "amount": "1.00"},
        ),
        ("get", f"/api/v1/wallets/{w}/transactions/", None),
        ("get", f"/api/v1/wallets/{w}/fees/", None),
        ("get", f"/api/v1/wallets/{w}/topups/", None),
        ("post", f"/api/v1/wallets/{w}/topups/", {"amount": "1.00"}),
        ("get", f"/api/v1/transactions/{o['transaction']}/", None),
        ("get", f"/api/v1/wallets/{w}/payouts/", None),
        (
            "post",
            f"/api/v1/wallets/{w}/payouts/",
            {"amount": "1.00", "destination": "card_tok"},
        ),
        ("get", f"/api/v1/wallets/{w}/balance/?as_of=2030-01-01T00:00:00Z", None),
        ("get", f"/api/v1/wallets/{w}/statement/", None),
        ("get", f"/api/v1/wallets/{w}/statement/?format=csv", None),
        ("get", f"/api/v1/wallets/{w}/statement/?format=pdf", None),
        ("get", f"/api/v1/webhook-endpoints/{o['endpoint']}/", None),
        ("post", f"/api/v1/webhook-endpoints/{o['endpoint']}/rotate-secret/", None),
        ("get", f"/api/v1/payouts/{o['payout']}/", None),
        ("post", f"/api/v1/payouts/{o['payout']}/cancel/", None),
        (
            "post",
            "/api/v1/transfers/",
            {"from_wallet": w, "to_wallet_number": "0", "amount": "1.00"},
        ),
    ]


def _call(client, method, path, body):
    return getattr(client, method)(path, body, format="json")


def test_the_owner_reaches_every_object(objects, user, client_of):
    owner = client_of(user)
    for method, path, body in _matrix(objects):
        if path == "/api/v1/transfers/":
            continue  # "0" is no wallet number: the owner's baseline is the rest
        response = _call(owner, method, path, body)
        assert response.status_code in (200, 201), (path, response.json())


def test_another_user_and_a_service_account_get_404_for_every_object(
    objects, other_user, service_account, client_of
):
    for caller in (other_user, service_account):
        client = client_of(caller)
        for method, path, body in _matrix(objects):
            response = _call(client, method, path, body)
            assert response.status_code == 404, (caller.email, method, path)
            assert objects["wallet"] not in response.content.decode()


def test_the_provider_api_is_a_404_for_users_and_open_to_service_accounts(
    objects, user, other_user, service_account, client_of
):
    for caller in (user, other_user):
        client = client_of(caller)
        for kind in ("topup", "payout"):
            one = f"/api/v1/service/{kind}s/{objects[kind]}/"
            assert client.get(f"/api/v1/service/{kind}s/").status_code == 404
            assert client.get(one).status_code == 404
            decided = client.put(one, {"status": "paid"}, format="json")
            assert decided.status_code == 404
    provider = client_of(service_account)
    for kind in ("topup", "payout"):
        one = f"/api/v1/service/{kind}s/{objects[kind]}/"
        assert provider.get(one).status_code == 200
    assert Payout.objects.get(pk=objects["payout"]).status == "pending"
    # ...and nothing else of the user's: the wallet list is its own (none).
    assert provider.get("/api/v1/wallets/").json() in ([], {"results": []})


# --- Tokens ---------------------------------------------------------------------------


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _bad_tokens(user) -> dict[str, str]:
    good = str(AccessToken.for_user(user))
    header, payload, signature = good.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    expired = AccessToken.for_user(user)
    expired.set_exp(lifetime=-timedelta(seconds=1))
    other_key = AccessToken.for_user(user)
    return {
        "tampered payload": f"{header}.{_b64({**claims, 'user_id': str(uuid.uuid4())})}.{signature}",
        "tampered signature": f"{header}.{payload}.{signature[:-4]}AAAA",
        "alg none": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{payload}.",
        "alg none, no dot": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{payload}",
        "HS512 header": f"{_b64({'alg': 'HS512', 'typ': 'JWT'})}.{payload}.{signature}",
        "expired": str(expired),
        "a refresh token": str(RefreshToken.for_user(user)),
        "another key": __import__("jwt").encode(
            dict(other_key.payload), "not-our-secret-key-0123456789abcdef", "HS256"
        ),
        "garbage": "abc.def.ghi",
        "empty": "",
    }


PROTECTED = [
    ("get", "/api/v1/wallets/"),
    ("post", "/api/v1/wallets/"),
    ("get", "/api/v1/transactions/"),
    ("post", "/api/v1/transfers/"),
    ("get", "/api/v1/rates/"),
    ("get", "/api/v1/users/me/"),
    ("get", "/api/v1/service/topups/"),
    ("get", "/api/v1/service/payouts/"),
]


def test_forged_expired_and_wrong_tokens_are_401_everywhere(objects, user):
    w = objects["wallet"]
    endpoints = [*PROTECTED, *((m, p) for m, p, _ in _matrix(objects))]
    endpoints.append(("put", f"/api/v1/service/topups/{objects['topup']}/"))
    endpoints.append(("put", f"/api/v1/service/payouts/{objects['payout']}/"))
    assert w
    for name, token in _bad_tokens(user).items():
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
        for method, path in endpoints:
            response = getattr(client, method)(path, {}, format="json")
            assert response.status_code == 401, (
                name,
                method,
                path,
                response.status_code,
            )
            assert response["Content-Type"].startswith("application/json")


def test_a_blacklisted_refresh_token_is_401(api, user):
    tokens = api.post(
        "/api/v1/auth/token/",
        {"email": user.email, "password": PASSWORD},
        format="json",
    ).json()
    assert (
        api.post(
            "/api/v1/auth/logout/", {"refresh": tokens["refresh"]}, format="json"
        ).status_code
        == 204
    )
    again = api.post(
        "/api/v1/auth/token/refresh/", {"refresh": tokens["refresh"]}, format="json"
    )
    assert again.status_code == 401
    rotated = api.post(
        "/api/v1/auth/logout/", {"refresh": tokens["refresh"]}, format="json"
    )
    assert rotated.status_code == 401


# --- Brute force ----------------------------------------------------------------------


def _first_429(send, limit: int = 80) -> int | None:
    for attempt in range(1, limit + 1):
        if send().status_code == 429:
            return attempt
    return None


def test_password_guessing_is_stopped(api, user):
    attempt = _first_429(
        lambda: api.post(
            "/api/v1/auth/token/",
            {"email": user.email, "password": f"guess-{uuid.uuid4()}"},
            format="json",
        )
    )
    assert attempt is not None and attempt <= settings.LOGIN_FAILURE_LIMIT + 1
    # Locked even for the right password now.
    right = api.post(
        "/api/v1/auth/token/",
        {"email": user.email, "password": PASSWORD},
        format="json",
    )
    assert right.status_code == 429


def test_code_guessing_is_stopped(api, rates):
    started = api.post(
        "/api/v1/auth/signup/",
        {"email": "victim@example.com", "password": "Brute-Force-Horse-1"},
        format="json",
    )
    assert started.status_code == 201
    session = started.json()["session_id"]
    outcomes = []
    for code in range(40):
        response = api.post(
            "/api/v1/auth/signup/confirm/",
            {"session_id": session, "code": f"{code:06d}"},
            format="json",
        )
        outcomes.append((response.status_code, response.json().get("code")))
    # 5 tries, then the session is dead; and the IP is throttled well before 1e6.
    assert ("session_dead" in {c for _s, c in outcomes}) or (
        429 in {s for s, _c in outcomes}
    )
    assert not [s for s, _c in outcomes if s == 201]
    assert _first_429(
        lambda: api.post(
            "/api/v1/auth/signup/confirm/",
            {"session_id": session, "code": "000000"},
            format="json",
        )
    )


def test_password_reset_flooding_is_stopped(api, user):
    assert _first_429(
        lambda: api.post(
            "/api/v1/auth/password-reset/", {"email": user.email}, format="json"
        )
    )
    assert _first_429(
        lambda: api.post(
            "/api/v1/auth/password-reset/confirm/",
            {
                "session_id": str(uuid.uuid4()),
                "code": "000000",
                "new_password": "Xx-12345678-yy",
            },
            format="json",
        )
    )


# --- Mass assignment ------------------------------------------------------------------

SNEAKY = {
    "balance": "1000000.00",
    "balance_minor": 100000000,
    "status": "active",
    "owner": None,
    "owner_id": None,
    "kind": "system",
    "system_code": "fees",
    "number": "1234567812345678",
    "id": "00000000-0000-0000-0000-000000000001",
    "is_staff": True,
    "is_superuser": True,
    "is_service": True,
}


def test_mass_assignment_is_ignored(user, other_user, make_wallet, client_of, rates):
    client = client_of(user)
    sneaky = {**SNEAKY, "owner": str(other_user.id), "owner_id": str(other_user.id)}
    created = client.post(
        "/api/v1/wallets/", {**sneaky, "currency": "USD"}, format="json"
    )
    assert created.status_code == 201
    wallet = Wallet.objects.get(pk=created.json()["id"])
    assert (wallet.owner_id, wallet.kind, wallet.balance.amount, wallet.status) == (
        user.id,
        "user",
        Decimal("0"),
        "active",
    )
    assert wallet.number != SNEAKY["number"]

    Wallet.objects.filter(pk=wallet.pk).update(status="blocked", blocked_reason="test")
    patched = client.patch(
        f"/api/v1/wallets/{wallet.id}/",
        {**sneaky, "name": "x", "currency": "KZT"},
        format="json",
    )
    assert patched.status_code == 200
    wallet.refresh_from_db()
    assert (wallet.name, wallet.currency, wallet.status, wallet.owner_id) == (
        "x",
        "USD",
        "blocked",
        user.id,
    )
    assert wallet.balance.amount == 0

    mine = make_wallet(owner=user, currency="KZT", balance="100.00")
    op = client.post(
        f"/api/v1/wallets/{mine.id}/operation",
        {**sneaky, "operation_type": "DEPOSIT", "amount": "1.00"},
        format="json",
    )
    assert op.status_code == 201
    assert op.json()["new_balance"] == "101.00"

    me = client.patch(
        "/api/v1/users/me/", {**sneaky, "first_name": "Eve"}, format="json"
    )
    assert me.status_code == 200
    user.refresh_from_db()
    assert (user.first_name, user.is_staff, user.is_superuser, user.is_service) == (
        "Eve",
        False,
        False,
        False,
    )


# --- The admin --------------------------------------------------------------------------


def test_the_admin_needs_staff(user):
    browser = Client()
    assert browser.get("/admin/").status_code == 302  # to the login page
    browser.force_login(user)  # a logged-in user who is not staff
    response = browser.get("/admin/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    assert browser.get("/admin/wallets/wallet/").status_code == 302


def test_the_admin_login_needs_csrf(db):
    staff = UserFactory(is_staff=True, is_superuser=True)
    browser = Client(enforce_csrf_checks=True)
    response = browser.post(
        "/admin/login/", {"username": staff.email, "password": PASSWORD}
    )
    assert response.status_code == 403
    assert "_auth_user_id" not in browser.session


def test_an_admin_action_needs_csrf(db, make_wallet):
    staff = UserFactory(is_staff=True, is_superuser=True)
    wallet = make_wallet(currency="KZT", balance="10.00")
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(staff)
    response = browser.post(
        "/admin/wallets/wallet/",
        {
            "action": "delete_selected",
            "_selected_action": [str(wallet.id)],
            "post": "yes",
        },
    )
    assert response.status_code == 403
    assert Wallet.objects.filter(pk=wallet.pk).exists()


# --- What errors reveal ----------------------------------------------------------------


def test_errors_reveal_no_secret_and_no_traceback(objects, user, client_of, api):
    assert settings.DEBUG is False
    client = client_of(user)
    responses = [
        api.get("/api/v1/wallets/"),
        client.get("/api/v1/nope/"),
        client.get("/does-not-exist"),
        client.delete("/api/v1/wallets/"),
        client.post("/api/v1/transfers/", "{bad", content_type="application/json"),
        client.post("/api/v1/transfers/", "<x/>", content_type="application/xml"),
        client.get(f"/api/v1/wallets/{objects['wallet']}/transactions/?from=yesterday"),
        client.get("/api/v1/transactions/?cursor=%%%"),
        client.get("/api/v1/wallets/%00/"),
        api.get("/admin/login/", HTTP_HOST="evil.example.com"),
    ]
    secrets = [
        settings.SECRET_KEY,
        settings.DATABASES["default"].get("PASSWORD") or "\0",
    ]
    for response in responses:
        body = response.content.decode(errors="replace")
        assert response.status_code < 500, body[:300]
        for secret in secrets:
            assert secret not in body
        for leak in (
            "Traceback",
            'File "/',
            "django.db",
            "psycopg",
            "SECRET_KEY",
            "settings.py",
        ):
            assert leak not in body, (leak, body[:300])
