"""Throttles on the public account endpoints, counted in the Redis cache."""

import pytest
from django.core import mail

from accounts.tests.conftest import last_code, wrong
from accounts.tests.factories import PASSWORD

pytestmark = pytest.mark.django_db


@pytest.fixture
def rates(settings):
    def set_rates(**scopes: str) -> None:
        current = settings.REST_FRAMEWORK
        settings.REST_FRAMEWORK = {
            **current,
            "DEFAULT_THROTTLE_RATES": {
                **current["DEFAULT_THROTTLE_RATES"],
                **scopes,
            },
        }

    return set_rates


def from_ip(ip: str) -> dict:
    return {"REMOTE_ADDR": ip}


def signup(api, email, ip="10.0.0.1"):
    return api.post(
        "/api/v1/auth/signup/",
        {"email": email, "password": "sturdy-kettle-4821"},
        format="json",
        **from_ip(ip),
    )


def assert_throttled(response):
    assert response.status_code == 429
    assert response.json()["code"] == "throttled"
    assert int(response["Retry-After"]) > 0


def test_signup_is_limited_per_ip(api, rates):
    rates(signup_ip="2/hour")
    assert signup(api, "a@example.com").status_code == 201
    assert signup(api, "b@example.com").status_code == 201
    assert_throttled(signup(api, "c@example.com"))
    assert signup(api, "c@example.com", ip="10.0.0.2").status_code == 201


def test_signup_is_limited_per_email_whatever_the_ip(api, rates):
    rates(signup_account="2/hour")
    assert signup(api, "a@example.com", ip="10.0.0.1").status_code == 201
    assert signup(api, "A@example.com", ip="10.0.0.2").status_code == 201
    response = signup(api, "a@example.com", ip="10.0.0.3")
    assert_throttled(response)
    assert len(mail.outbox) == 2
    assert signup(api, "b@example.com", ip="10.0.0.3").status_code == 201


def test_a_forged_x_forwarded_for_does_not_dodge_the_ip_limit(api, rates):
    rates(signup_ip="1/hour")
    signup(api, "a@example.com")
    response = api.post(
        "/api/v1/auth/signup/",
        {"email": "b@example.com", "password": "sturdy-kettle-4821"},
        format="json",
        REMOTE_ADDR="10.0.0.1",
        HTTP_X_FORWARDED_FOR="203.0.113.9",
    )
    assert_throttled(response)


def test_login_is_limited_per_ip_and_per_account(api, user, other_user, rates):
    rates(token_ip="2/minute", token_account="2/minute")

    def login(email, ip):
        return api.post(
            "/api/v1/auth/token/",
            {"email": email, "password": PASSWORD},
            format="json",
            **from_ip(ip),
        )

    assert login(user.email, "10.0.0.1").status_code == 200
    assert login(user.email, "10.0.0.2").status_code == 200
    assert_throttled(login(user.email, "10.0.0.3"))  # the account's limit
    assert login(other_user.email, "10.0.0.1").status_code == 200
    assert_throttled(login(other_user.email, "10.0.0.1"))  # the IP's limit


def test_password_reset_is_limited_per_ip_and_per_email(api, user, rates):
    rates(password_reset_ip="2/hour", password_reset_account="1/hour")

    def reset(email, ip):
        return api.post(
            "/api/v1/auth/password-reset/",
            {"email": email},
            format="json",
            **from_ip(ip),
        )

    assert reset(user.email, "10.0.0.1").status_code == 202
    assert_throttled(reset(user.email.upper(), "10.0.0.2"))
    assert reset("nobody@example.com", "10.0.0.1").status_code == 202
    assert_throttled(reset("other@example.com", "10.0.0.1"))
    # an unknown address is throttled exactly like a known one
    assert_throttled(reset("nobody@example.com", "10.0.0.3"))


def test_resend_is_limited_per_session_email_and_per_ip(api, rates, settings):
    settings.VERIFICATION_RESEND_INTERVAL = settings.VERIFICATION_CODE_TTL * 0
    rates(resend_account="2/hour", resend_ip="2/hour")
    first = signup(api, "a@example.com").json()["session_id"]
    second = signup(api, "b@example.com").json()["session_id"]

    def resend(session_id, ip="10.0.0.1"):
        return api.post(
            "/api/v1/auth/signup/resend/",
            {"session_id": session_id},
            format="json",
            **from_ip(ip),
        )

    assert resend(first).status_code == 200
    assert resend(first, ip="10.0.0.2").status_code == 200
    assert_throttled(resend(first, ip="10.0.0.3"))
    assert resend(second).status_code == 200
    assert_throttled(resend(second))


def test_code_confirmations_are_limited_per_ip(api, rates):
    rates(verify_ip="2/minute")
    session_id = signup(api, "a@example.com").json()["session_id"]
    code = last_code()
    body = {"session_id": session_id, "code": wrong(code)}
    confirm = "/api/v1/auth/signup/confirm/"
    for _ in range(2):
        api.post(confirm, body, format="json", **from_ip("10.0.0.9"))
    assert_throttled(api.post(confirm, body, format="json", **from_ip("10.0.0.9")))


def test_by_default_one_address_gets_five_sign_ups_an_hour(api):
    for n in range(5):
        assert signup(api, "a@example.com", ip=f"10.0.1.{n}").status_code == 201
    assert_throttled(signup(api, "a@example.com", ip="10.0.1.9"))
