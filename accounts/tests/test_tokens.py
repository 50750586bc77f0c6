import base64
import json
import threading
from datetime import timedelta

import jwt
import pytest
import time_machine
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken

from accounts.tests.factories import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db

TOKEN = "/api/v1/auth/token/"
REFRESH = "/api/v1/auth/token/refresh/"
LOGOUT = "/api/v1/auth/logout/"
ME = "/api/v1/users/me/"


def login(api, email, password=PASSWORD):
    return api.post(TOKEN, {"email": email, "password": password}, format="json")


def me_with(access: str):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    return client.get(ME)


def b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


# --- Login and lockout ---------------------------------------------------------------------


def test_five_failed_logins_lock_the_account_even_for_the_right_password(api, user):
    with time_machine.travel(timezone.now(), tick=False) as clock:
        for _ in range(5):
            assert login(api, user.email, "wrong").status_code == 401
        locked = login(api, user.email)
        assert locked.status_code == 429
        assert locked.json()["code"] == "account_locked"
        assert locked["Retry-After"] == "900"
        # the same account, however the email is spelt
        assert login(api, user.email.upper()).status_code == 429

        clock.shift(timedelta(minutes=10))
        assert login(api, user.email)["Retry-After"] == "300"
        clock.shift(timedelta(minutes=5))
        assert login(api, user.email).status_code == 200


def test_a_lock_on_one_account_leaves_others_alone(api, user, other_user):
    for _ in range(5):
        login(api, user.email, "wrong")
    assert login(api, user.email).status_code == 429
    assert login(api, other_user.email).status_code == 200


def test_a_successful_login_forgets_earlier_failures(api, user):
    for _ in range(4):
        login(api, user.email, "wrong")
    assert login(api, user.email).status_code == 200
    for _ in range(4):
        assert login(api, user.email, "wrong").status_code == 401
    assert login(api, user.email).status_code == 200


def test_unknown_accounts_lock_the_same_way_as_known_ones(api, user):
    """No enumeration through the lockout: the same answers, in the same order."""

    def answers(email):
        return [
            (r.status_code, r.json()["code"])
            for r in (login(api, email, "wrong") for _ in range(6))
        ]

    assert answers(user.email) == answers("nobody@example.com")


def test_a_phone_login_in_national_format_counts_for_the_same_account(api):
    user = UserFactory(phone_number="+77011234567")
    for _ in range(5):
        api.post(
            TOKEN, {"phone_number": "8 701 123 45 67", "password": "x"}, format="json"
        )
    assert login(api, user.email).status_code == 429


def test_a_stale_authorization_header_does_not_stop_a_login(api, user):
    api.credentials(HTTP_AUTHORIZATION="Bearer not.a.token")
    assert login(api, user.email).status_code == 200


# --- JWTs ----------------------------------------------------------------------------------


def test_an_alg_none_token_is_401(api, user):
    access = login(api, user.email).json()["access"]
    _, payload, _ = access.split(".")
    forged = f"{b64({'alg': 'none', 'typ': 'JWT'})}.{payload}."
    response = me_with(forged)
    assert response.status_code == 401
    assert response.json()["code"] == "token_not_valid"


def test_a_token_with_a_forged_payload_is_401(api, user, other_user):
    access = login(api, user.email).json()["access"]
    header, payload, signature = access.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["user_id"] = str(other_user.id)
    assert me_with(f"{header}.{b64(claims)}.{signature}").status_code == 401


def test_a_token_signed_with_another_key_is_401(user):
    claims = dict(AccessToken.for_user(user).payload)
    forged = jwt.encode(claims, "some-other-secret-key-0123456789abc", "HS256")
    assert me_with(forged).status_code == 401


def test_an_expired_access_token_is_401(api, user):
    with time_machine.travel(timezone.now(), tick=False) as clock:
        access = login(api, user.email).json()["access"]
        assert me_with(access).status_code == 200
        clock.shift(timedelta(minutes=15, seconds=1))
        response = me_with(access)
    assert response.status_code == 401
    assert response.json()["code"] == "token_not_valid"


def test_no_token_is_401_with_a_bearer_challenge(api):
    response = APIClient().get(ME)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_refreshing_rotates_and_the_old_refresh_token_is_dead(api, user):
    first = login(api, user.email).json()
    rotated = api.post(REFRESH, {"refresh": first["refresh"]}, format="json")
    assert rotated.status_code == 200
    second = rotated.json()
    assert set(second) == {"access", "refresh"}
    assert second["refresh"] != first["refresh"]
    assert me_with(second["access"]).status_code == 200

    reused = api.post(REFRESH, {"refresh": first["refresh"]}, format="json")
    assert reused.status_code == 401
    assert reused.json()["code"] == "token_not_valid"
    again = api.post(REFRESH, {"refresh": second["refresh"]}, format="json")
    assert again.status_code == 200


def test_an_expired_refresh_token_is_401(api, user):
    with time_machine.travel(timezone.now(), tick=False) as clock:
        refresh = login(api, user.email).json()["refresh"]
        clock.shift(timedelta(days=7, seconds=1))
        response = api.post(REFRESH, {"refresh": refresh}, format="json")
    assert response.status_code == 401


def test_an_access_token_is_not_a_refresh_token(api, user):
    access = login(api, user.email).json()["access"]
    assert api.post(REFRESH, {"refresh": access}, format="json").status_code == 401


def test_a_deactivated_user_cannot_refresh(api, user):
    refresh = login(api, user.email).json()["refresh"]
    user.is_active = False
    user.save()
    response = api.post(REFRESH, {"refresh": refresh}, format="json")
    assert response.status_code == 401
    assert response.json()["code"] == "no_active_account"


def test_logout_blacklists_the_refresh_token(api, user):
    tokens = login(api, user.email).json()
    assert (
        api.post(LOGOUT, {"refresh": tokens["refresh"]}, format="json").status_code
        == 204
    )
    refreshed = api.post(REFRESH, {"refresh": tokens["refresh"]}, format="json")
    assert refreshed.status_code == 401
    assert refreshed.json()["code"] == "token_not_valid"
    assert (
        api.post(LOGOUT, {"refresh": tokens["refresh"]}, format="json").status_code
        == 401
    )


@pytest.mark.parametrize("body", [{}, {"refresh": ""}, {"refresh": "garbage"}])
def test_logout_needs_a_valid_refresh_token(api, body):
    assert api.post(LOGOUT, body, format="json").status_code in (400, 401)


def test_logout_with_someone_elses_refresh_token_is_refused(api, user, other_user):
    """Alice, logged in, cannot end Bob's session with his refresh token: a 400
    `token_not_yours`, and Bob's token still refreshes."""
    alice = login(api, user.email).json()
    bob = login(api, other_user.email).json()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {alice['access']}")
    response = client.post(LOGOUT, {"refresh": bob["refresh"]}, format="json")
    assert response.status_code == 400
    assert response.json() == {
        "detail": "This refresh token belongs to another account.",
        "code": "token_not_yours",
    }
    bobs = api.post(REFRESH, {"refresh": bob["refresh"]}, format="json")
    assert bobs.status_code == 200
    # Her own refresh token she can end, with her access token.
    own = client.post(LOGOUT, {"refresh": alice["refresh"]}, format="json")
    assert own.status_code == 204
    hers = api.post(REFRESH, {"refresh": alice["refresh"]}, format="json")
    assert hers.status_code == 401


def test_logout_refusal_is_in_russian_too(api, user, other_user):
    alice = login(api, user.email).json()
    bob = login(api, other_user.email).json()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {alice['access']}")
    response = client.post(
        LOGOUT, {"refresh": bob["refresh"]}, format="json", HTTP_ACCEPT_LANGUAGE="ru"
    )
    assert response.status_code == 400
    assert response.json() == {
        "detail": "Этот refresh-токен принадлежит другой учётной записи.",
        "code": "token_not_yours",
    }


def test_logout_with_an_expired_access_token_still_ends_your_own_session(api, user):
    """The refresh token is the credential: an access token that has expired (or
    none at all) does not stop its holder from logging out."""
    with time_machine.travel(timezone.now(), tick=False) as clock:
        tokens = login(api, user.email).json()
        clock.shift(timedelta(minutes=15, seconds=1))
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens['access']}")
        response = client.post(LOGOUT, {"refresh": tokens["refresh"]}, format="json")
        assert response.status_code == 204
        assert (
            api.post(REFRESH, {"refresh": tokens["refresh"]}, format="json").status_code
            == 401
        )


@pytest.mark.django_db(transaction=True)
def test_one_refresh_token_rotates_once_even_when_requests_race(user):
    refresh = login(APIClient(), user.email).json()["refresh"]
    statuses: list[int] = []
    barrier = threading.Barrier(4)

    def rotate():
        try:
            barrier.wait()
            response = APIClient().post(REFRESH, {"refresh": refresh}, format="json")
            statuses.append(response.status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=rotate) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200, 401, 401, 401]
