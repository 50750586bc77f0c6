import re
import threading
from datetime import timedelta

import pytest
import time_machine
from django.contrib.auth.hashers import check_password
from django.core import mail
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import User, VerificationSession
from accounts.tests.conftest import code_in, last_code, wrong
from accounts.tests.factories import UserFactory
from wallets.models import Wallet

pytestmark = pytest.mark.django_db

PASSWORD = "sturdy-kettle-4821"
SIGNUP = "/api/v1/auth/signup/"
CONFIRM = "/api/v1/auth/signup/confirm/"
RESEND = "/api/v1/auth/signup/resend/"


def signup(api, headers=None, **fields):
    body = {"email": "new@example.com", "password": PASSWORD, **fields}
    return api.post(SIGNUP, body, format="json", headers=headers)


def confirm(api, session_id, code):
    return api.post(CONFIRM, {"session_id": session_id, "code": code}, format="json")


def test_signup_emails_a_code_and_confirming_creates_the_user_and_a_kzt_wallet(api):
    started = signup(
        api,
        email="New@Example.com",
        phone_number="+7 701 123 45 67",
        first_name="Aida",
        last_name="Serikova",
    )
    assert started.status_code == 201, started.json()
    assert set(started.json()) == {"session_id", "expires_at"}
    assert not User.objects.exists()  # nothing but the pending sign-up yet
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["new@example.com"]
    assert "sign-up" in message.subject
    code = code_in(message)
    assert code not in message.subject
    html, mimetype = message.alternatives[0]
    assert mimetype == "text/html" and code in html

    confirmed = confirm(api, started.json()["session_id"], code)

    assert confirmed.status_code == 201, confirmed.json()
    body = confirmed.json()
    assert set(body) == {"user", "wallets", "access", "refresh"}
    assert body["user"]["email"] == "new@example.com"
    assert body["user"]["phone_number"] == "+77011234567"
    assert body["user"]["first_name"] == "Aida"
    assert "password" not in body["user"]
    assert [(w["currency"], w["balance"]) for w in body["wallets"]] == [("KZT", "0.00")]
    user = User.objects.get()
    assert user.check_password(PASSWORD)
    assert Wallet.objects.get(owner=user).number == body["wallets"][0]["number"]
    me = APIClient()
    me.credentials(HTTP_AUTHORIZATION=f"Bearer {body['access']}")
    assert me.get("/api/v1/users/me/").json()["id"] == str(user.id)
    login = api.post(
        "/api/v1/auth/token/",
        {"email": "new@example.com", "password": PASSWORD},
        format="json",
    )
    assert login.status_code == 200


def test_the_code_is_stored_only_as_a_hash_and_the_password_hashed(api):
    session_id = signup(api).json()["session_id"]
    code = last_code()
    session = VerificationSession.objects.get(pk=session_id)
    assert re.fullmatch(r"[0-9a-f]{64}", session.code_hash)
    assert code not in session.code_hash
    assert PASSWORD not in str(session.payload)
    assert check_password(PASSWORD, session.payload["password_hash"])


def test_the_email_is_in_russian_for_a_russian_request(api):
    signup(api, headers={"Accept-Language": "ru"})
    message = mail.outbox[0]
    assert "регистрацию" in message.subject
    assert "Здравствуйте" in message.body
    assert "Здравствуйте" in message.alternatives[0][0]
    assert re.search(r"\b\d{6}\b", message.body)


def test_validation_errors_name_the_fields_and_send_nothing(api):
    UserFactory(email="taken@example.com", phone_number="+77011234567")
    response = api.post(
        SIGNUP,
        {
            "email": "taken@example.com",
            "password": "12345678",
            "phone_number": "+77011234567",
        },
        format="json",
    )
    assert response.status_code == 400
    body = response.json()
    assert body["email"] == ["A user with this email already exists."]
    assert body["phone_number"] == ["A user with this phone number already exists."]
    assert "This password is too common." in body["password"]
    assert mail.outbox == []
    assert not VerificationSession.objects.exists()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("email", "not-an-email"),
        ("phone_number", "+7 123"),
        ("phone_number", "call me"),
        ("password", "short"),
        ("password", "new@example.com"),  # too similar to the email
    ],
)
def test_bad_fields_are_400s(api, field, value):
    response = signup(api, **{field: value})
    assert response.status_code == 400
    assert field in response.json()
    assert mail.outbox == []


def test_a_phone_number_in_national_format_is_stored_in_e164(api):
    started = signup(api, phone_number="8 (701) 123-45-67")
    confirmed = confirm(api, started.json()["session_id"], last_code())
    assert confirmed.json()["user"]["phone_number"] == "+77011234567"


def test_five_wrong_codes_kill_the_session_even_for_the_right_code(api):
    session_id = signup(api).json()["session_id"]
    code = last_code()
    for left in (4, 3, 2, 1, 0):
        response = confirm(api, session_id, wrong(code))
        assert response.status_code == 400
        assert response.json() == {
            "detail": f"The code is wrong. Attempts left: {left}.",
            "code": "code_invalid",
        }
    for _ in range(2):
        response = confirm(api, session_id, code)
        assert response.status_code == 400
        assert response.json()["code"] == "session_dead"
    resend = api.post(RESEND, {"session_id": session_id}, format="json")
    assert resend.json()["code"] == "session_dead"
    assert not User.objects.exists()


def test_a_code_expires_after_ten_minutes(api):
    with time_machine.travel(timezone.now(), tick=False) as clock:
        session_id = signup(api).json()["session_id"]
        code = last_code()
        clock.shift(timedelta(minutes=10))
        response = confirm(api, session_id, code)
    assert response.status_code == 400
    assert response.json()["code"] == "code_expired"
    assert not User.objects.exists()


def test_a_code_still_works_just_before_it_expires(api):
    with time_machine.travel(timezone.now(), tick=False) as clock:
        session_id = signup(api).json()["session_id"]
        code = last_code()
        clock.shift(timedelta(minutes=9, seconds=59))
        assert confirm(api, session_id, code).status_code == 201


def test_a_code_works_once(api):
    session_id = signup(api).json()["session_id"]
    code = last_code()
    assert confirm(api, session_id, code).status_code == 201
    again = confirm(api, session_id, code)
    assert again.status_code == 400
    assert again.json()["code"] == "code_used"
    assert User.objects.count() == 1


def test_resend_is_limited_to_once_a_minute_and_replaces_the_code(api):
    with time_machine.travel(timezone.now(), tick=False) as clock:
        session_id = signup(api).json()["session_id"]
        first = last_code()
        too_soon = api.post(RESEND, {"session_id": session_id}, format="json")
        assert too_soon.status_code == 429
        assert too_soon.json()["code"] == "resend_too_soon"
        assert too_soon["Retry-After"] == "60"
        assert len(mail.outbox) == 1

        clock.shift(timedelta(seconds=45))
        assert (
            api.post(RESEND, {"session_id": session_id}, format="json")["Retry-After"]
            == "15"
        )
        clock.shift(timedelta(seconds=15))
        resent = api.post(RESEND, {"session_id": session_id}, format="json")
        assert resent.status_code == 200
        assert resent.json()["session_id"] == session_id
        assert len(mail.outbox) == 2
        second = last_code()
        if first != second:  # one chance in a million that they are equal
            assert confirm(api, session_id, first).json()["code"] == "code_invalid"
        assert confirm(api, session_id, second).status_code == 201


def test_an_expired_code_can_be_replaced_by_a_resend(api):
    with time_machine.travel(timezone.now(), tick=False) as clock:
        session_id = signup(api).json()["session_id"]
        clock.shift(timedelta(minutes=11))
        resent = api.post(RESEND, {"session_id": session_id}, format="json")
        assert resent.status_code == 200
        assert confirm(api, session_id, last_code()).status_code == 201


def test_a_resend_does_not_forgive_wrong_tries(api):
    with time_machine.travel(timezone.now(), tick=False) as clock:
        session_id = signup(api).json()["session_id"]
        for _ in range(4):
            confirm(api, session_id, wrong(last_code()))
        clock.shift(timedelta(minutes=1))
        api.post(RESEND, {"session_id": session_id}, format="json")
        code = last_code()
        assert (
            confirm(api, session_id, wrong(code))
            .json()["detail"]
            .endswith("Attempts left: 0.")
        )
        assert confirm(api, session_id, code).json()["code"] == "session_dead"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"session_id": "not-a-uuid", "code": "123456"}, "session_id"),
        ({"code": "123456"}, "session_id"),
        (
            {"session_id": "6f1c8a8e-8f60-4c2b-9d1e-2f1b5a3c4d5e", "code": "12ab56"},
            "code",
        ),
        (
            {"session_id": "6f1c8a8e-8f60-4c2b-9d1e-2f1b5a3c4d5e", "code": 123456},
            "code",
        ),
        ({"session_id": "6f1c8a8e-8f60-4c2b-9d1e-2f1b5a3c4d5e"}, "code"),
    ],
)
def test_malformed_confirmations_are_field_errors(api, body, field):
    response = api.post(CONFIRM, body, format="json")
    assert response.status_code == 400
    assert field in response.json()


def test_an_unknown_session_is_a_400(api):
    response = confirm(api, "6f1c8a8e-8f60-4c2b-9d1e-2f1b5a3c4d5e", "123456")
    assert response.status_code == 400
    assert response.json()["code"] == "session_not_found"


def test_an_address_taken_before_the_confirmation_creates_nothing(api):
    session_id = signup(api).json()["session_id"]
    code = last_code()
    UserFactory(email="new@example.com")
    response = confirm(api, session_id, code)
    assert response.status_code == 400
    assert response.json()["code"] == "email_taken"
    assert User.objects.count() == 1
    assert not Wallet.objects.filter(kind=Wallet.Kind.USER).exists()


@pytest.mark.django_db(transaction=True)
def test_concurrent_wrong_guesses_never_get_more_than_five_tries(make_client):
    api = make_client()
    session_id = signup(api).json()["session_id"]
    code = last_code()
    results: list[str] = []
    barrier = threading.Barrier(8)

    def guess():
        try:
            barrier.wait()
            results.append(confirm(APIClient(), session_id, wrong(code)).json()["code"])
        finally:
            connection.close()

    threads = [threading.Thread(target=guess) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == ["code_invalid"] * 5 + ["session_dead"] * 3
    assert VerificationSession.objects.get(pk=session_id).attempts == 5


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_confirmations_create_one_user(make_client):
    api = make_client()
    session_id = signup(api).json()["session_id"]
    code = last_code()
    statuses: list[int] = []
    barrier = threading.Barrier(4)

    def confirm_once():
        try:
            barrier.wait()
            statuses.append(confirm(APIClient(), session_id, code).status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=confirm_once) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [201, 400, 400, 400]
    assert User.objects.count() == 1
    assert Wallet.objects.filter(kind=Wallet.Kind.USER).count() == 1
