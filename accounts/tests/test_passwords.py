from datetime import timedelta

import pytest
import time_machine
from django.core import mail
from django.utils import timezone

from accounts.models import VerificationSession
from accounts.tests.conftest import last_code, wrong
from accounts.tests.factories import PASSWORD

pytestmark = pytest.mark.django_db

NEW_PASSWORD = "fresh-lantern-7731"
CHANGE = "/api/v1/users/me/password/"
CHANGE_CONFIRM = "/api/v1/users/me/password/confirm/"
RESET = "/api/v1/auth/password-reset/"
RESET_CONFIRM = "/api/v1/auth/password-reset/confirm/"
TOKEN = "/api/v1/auth/token/"
REFRESH = "/api/v1/auth/token/refresh/"


def login(api, email, password=PASSWORD):
    return api.post(TOKEN, {"email": email, "password": password}, format="json")


def refresh_status(api, refresh):
    return api.post(REFRESH, {"refresh": refresh}, format="json").status_code


# --- Change ---------------------------------------------------------------------------------


def test_password_change_by_emailed_code_revokes_every_refresh_token(
    api, auth_api, user
):
    phone = login(api, user.email).json()["refresh"]
    laptop = login(api, user.email).json()["refresh"]

    started = auth_api.post(
        CHANGE, {"password": PASSWORD, "new_password": NEW_PASSWORD}, format="json"
    )
    assert started.status_code == 202, started.json()
    assert set(started.json()) == {"session_id", "expires_at"}
    assert mail.outbox[0].to == [user.email]
    assert "password change" in mail.outbox[0].subject
    user.refresh_from_db()
    assert user.check_password(PASSWORD)  # nothing changes before the code

    confirmed = auth_api.post(
        CHANGE_CONFIRM,
        {"session_id": started.json()["session_id"], "code": last_code()},
        format="json",
    )

    assert confirmed.status_code == 204
    assert login(api, user.email).status_code == 401
    assert login(api, user.email, NEW_PASSWORD).status_code == 200
    assert refresh_status(api, phone) == 401
    assert refresh_status(api, laptop) == 401


def test_password_change_checks_the_current_password(auth_api):
    response = auth_api.post(
        CHANGE, {"password": "wrong", "new_password": NEW_PASSWORD}, format="json"
    )
    assert response.status_code == 400
    assert response.json() == {"password": ["The current password is wrong."]}
    assert mail.outbox == []


@pytest.mark.parametrize("new_password", ["short", "password123", "12345678901"])
def test_password_change_validates_the_new_password(auth_api, new_password):
    response = auth_api.post(
        CHANGE, {"password": PASSWORD, "new_password": new_password}, format="json"
    )
    assert response.status_code == 400
    assert "new_password" in response.json()
    assert mail.outbox == []


def test_a_new_password_like_the_email_is_refused(auth_api, user):
    response = auth_api.post(
        CHANGE, {"password": PASSWORD, "new_password": user.email}, format="json"
    )
    assert response.status_code == 400
    assert "new_password" in response.json()


def test_password_change_needs_a_login(api):
    response = api.post(
        CHANGE, {"password": PASSWORD, "new_password": NEW_PASSWORD}, format="json"
    )
    assert response.status_code == 401


def test_someone_elses_password_change_session_is_not_found(
    make_client, user, other_user
):
    started = make_client(user).post(
        CHANGE, {"password": PASSWORD, "new_password": NEW_PASSWORD}, format="json"
    )
    response = make_client(other_user).post(
        CHANGE_CONFIRM,
        {"session_id": started.json()["session_id"], "code": last_code()},
        format="json",
    )
    assert response.status_code == 400
    assert response.json()["code"] == "session_not_found"
    user.refresh_from_db()
    assert user.check_password(PASSWORD)


def test_password_change_codes_follow_the_same_rules(auth_api, user):
    with time_machine.travel(timezone.now(), tick=False) as clock:
        session_id = auth_api.post(
            CHANGE, {"password": PASSWORD, "new_password": NEW_PASSWORD}, format="json"
        ).json()["session_id"]
        code = last_code()

        def attempt(value):
            return auth_api.post(
                CHANGE_CONFIRM, {"session_id": session_id, "code": value}, format="json"
            ).json()["code"]

        assert attempt(wrong(code)) == "code_invalid"
        clock.shift(timedelta(minutes=10))
        assert attempt(code) == "code_expired"
    user.refresh_from_db()
    assert user.check_password(PASSWORD)


# --- Reset ----------------------------------------------------------------------------------


def test_password_reset_by_emailed_code(api, user):
    old_refresh = login(api, user.email).json()["refresh"]
    started = api.post(RESET, {"email": user.email.upper()}, format="json")
    assert started.status_code == 202
    assert mail.outbox[0].to == [user.email]
    assert "Reset" in mail.outbox[0].subject

    confirmed = api.post(
        RESET_CONFIRM,
        {
            "session_id": started.json()["session_id"],
            "code": last_code(),
            "new_password": NEW_PASSWORD,
        },
        format="json",
    )

    assert confirmed.status_code == 204
    assert login(api, user.email, NEW_PASSWORD).status_code == 200
    assert login(api, user.email).status_code == 401
    assert refresh_status(api, old_refresh) == 401


def test_known_and_unknown_addresses_get_the_same_answers(api, user):
    """No account enumeration: the same status and body shape, for the request
    and for every confirmation attempt; only the real account gets an email."""
    known = api.post(RESET, {"email": user.email}, format="json")
    unknown = api.post(RESET, {"email": "nobody@example.com"}, format="json")
    assert known.status_code == unknown.status_code == 202
    assert set(known.json()) == set(unknown.json()) == {"session_id", "expires_at"}
    assert [m.to for m in mail.outbox] == [[user.email]]
    code = last_code()

    def attempts(session_id):
        return [
            (response.status_code, response.json())
            for response in (
                api.post(
                    RESET_CONFIRM,
                    {
                        "session_id": session_id,
                        "code": wrong(code),
                        "new_password": NEW_PASSWORD,
                    },
                    format="json",
                )
                for _ in range(6)
            )
        ]

    assert attempts(known.json()["session_id"]) == attempts(
        unknown.json()["session_id"]
    )


def test_an_unknown_address_session_can_never_succeed(api):
    session_id = api.post(RESET, {"email": "nobody@example.com"}, format="json").json()[
        "session_id"
    ]
    session = VerificationSession.objects.get(pk=session_id)
    assert session.user is None
    codes = [f"{n:06d}" for n in range(5)]
    for code in codes:
        response = api.post(
            RESET_CONFIRM,
            {"session_id": session_id, "code": code, "new_password": NEW_PASSWORD},
            format="json",
        )
        assert response.json()["code"] == "code_invalid"


def test_a_weak_new_password_does_not_use_up_a_try(api, user):
    session_id = api.post(RESET, {"email": user.email}, format="json").json()[
        "session_id"
    ]
    response = api.post(
        RESET_CONFIRM,
        {"session_id": session_id, "code": last_code(), "new_password": "123"},
        format="json",
    )
    assert response.status_code == 400
    assert "new_password" in response.json()
    assert VerificationSession.objects.get(pk=session_id).attempts == 0


def test_a_new_password_like_the_account_is_refused_and_the_code_kept(api, user):
    session_id = api.post(RESET, {"email": user.email}, format="json").json()[
        "session_id"
    ]
    code = last_code()
    body = {"session_id": session_id, "code": code, "new_password": user.email}
    response = api.post(RESET_CONFIRM, body, format="json")
    assert response.status_code == 400
    assert "new_password" in response.json()
    body["new_password"] = NEW_PASSWORD
    assert api.post(RESET_CONFIRM, body, format="json").status_code == 204


def test_a_reset_lifts_a_login_lock(api, user):
    for _ in range(5):
        login(api, user.email, "wrong")
    assert login(api, user.email).status_code == 429
    session_id = api.post(RESET, {"email": user.email}, format="json").json()[
        "session_id"
    ]
    api.post(
        RESET_CONFIRM,
        {"session_id": session_id, "code": last_code(), "new_password": NEW_PASSWORD},
        format="json",
    )
    assert login(api, user.email, NEW_PASSWORD).status_code == 200


def test_a_reset_code_is_single_use_and_only_for_resets(api, auth_api, user):
    session_id = api.post(RESET, {"email": user.email}, format="json").json()[
        "session_id"
    ]
    code = last_code()
    as_change = auth_api.post(
        CHANGE_CONFIRM, {"session_id": session_id, "code": code}, format="json"
    )
    assert as_change.json()["code"] == "session_not_found"
    as_signup = api.post(
        "/api/v1/auth/signup/confirm/",
        {"session_id": session_id, "code": code},
        format="json",
    )
    assert as_signup.json()["code"] == "session_not_found"
    body = {"session_id": session_id, "code": code, "new_password": NEW_PASSWORD}
    assert api.post(RESET_CONFIRM, body, format="json").status_code == 204
    again = api.post(RESET_CONFIRM, body, format="json")
    assert again.status_code == 400
    assert again.json()["code"] == "code_used"


def test_an_inactive_account_gets_no_reset_email(api):
    from accounts.tests.factories import UserFactory

    inactive = UserFactory(is_active=False)
    assert api.post(RESET, {"email": inactive.email}, format="json").status_code == 202
    assert mail.outbox == []


def test_the_reset_email_is_russian_for_a_russian_request(api, user):
    api.post(
        RESET, {"email": user.email}, format="json", headers={"Accept-Language": "ru"}
    )
    assert "Сброс пароля" in mail.outbox[0].subject
    assert "сбросить пароль" in mail.outbox[0].body
