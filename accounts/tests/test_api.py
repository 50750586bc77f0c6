import pytest
from rest_framework_simplejwt.tokens import AccessToken

from accounts.tests.factories import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db


def test_log_in_with_email_case_insensitively(api, user):
    response = api.post(
        "/api/v1/auth/token/",
        {"email": user.email.upper(), "password": PASSWORD},
        format="json",
    )
    assert response.status_code == 200
    assert AccessToken(response.json()["access"])["user_id"] == str(user.id)


def test_log_in_with_phone_number(api):
    user = UserFactory(phone_number="+77011234567")
    response = api.post(
        "/api/v1/auth/token/",
        {"phone_number": "+77011234567", "password": PASSWORD},
        format="json",
    )
    assert response.status_code == 200
    assert set(response.json()) == {"access", "refresh"}
    assert AccessToken(response.json()["access"])["user_id"] == str(user.id)


@pytest.mark.parametrize(
    "body",
    [
        {"email": "user-none@example.com", "password": PASSWORD},
        {"email": "WRONG", "password": "x"},
    ],
)
def test_wrong_credentials(api, user, body):
    response = api.post("/api/v1/auth/token/", body, format="json")
    assert response.status_code in (400, 401)


def test_wrong_password_is_401_with_a_code(api, user):
    response = api.post(
        "/api/v1/auth/token/", {"email": user.email, "password": "nope"}, format="json"
    )
    assert response.status_code == 401
    assert response.json()["code"] == "invalid_credentials"


def test_inactive_user_cannot_log_in(api):
    user = UserFactory(is_active=False)
    response = api.post(
        "/api/v1/auth/token/",
        {"email": user.email, "password": PASSWORD},
        format="json",
    )
    assert response.status_code == 401


def test_refresh_and_me(api, user):
    tokens = api.post(
        "/api/v1/auth/token/",
        {"email": user.email, "password": PASSWORD},
        format="json",
    ).json()
    refreshed = api.post(
        "/api/v1/auth/token/refresh/", {"refresh": tokens["refresh"]}, format="json"
    )
    assert refreshed.status_code == 200
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {refreshed.json()['access']}")
    me = api.get("/api/v1/users/me/").json()
    assert me["email"] == user.email
    assert "password" not in me


def test_tampered_token_is_401(api, user):
    tokens = api.post(
        "/api/v1/auth/token/",
        {"email": user.email, "password": PASSWORD},
        format="json",
    ).json()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens['access'][:-2]}xx")
    assert api.get("/api/v1/users/me/").status_code == 401


def test_manager_creates_users_and_superusers(db):
    from accounts.models import User

    user = User.objects.create_user(email="New@Example.com", password="pw-0123456789")
    assert user.email == "new@example.com" and user.check_password("pw-0123456789")
    admin = User.objects.create_superuser(
        email="root@example.com", password="pw-0123456789"
    )
    assert admin.is_staff and admin.is_superuser
