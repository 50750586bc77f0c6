"""Rotating keys without logging everyone out: SECRET_KEY_FALLBACKS for Django's
signed values and sessions, JWT_SIGNING_KEY_FALLBACKS for tokens (signed with a
key of their own, JWT_SIGNING_KEY)."""

import os
import subprocess
import sys

import pytest
from django.conf import settings
from django.contrib.auth import get_user
from django.core import signing
from django.http import HttpRequest
from django.test import Client, override_settings
from rest_framework.test import APIClient
from rest_framework_simplejwt import state
from rest_framework_simplejwt.backends import TokenBackend
from rest_framework_simplejwt.tokens import RefreshToken

from accounts import jwt_keys

OLD_KEY = "old-secret-key-0123456789abcdefghijklmnopqrstuvwxyz-0123456789"
NEW_KEY = "new-secret-key-0123456789abcdefghijklmnopqrstuvwxyz-0123456789"


def test_a_value_signed_with_the_old_secret_key_still_validates_after_rotation():
    with override_settings(SECRET_KEY=OLD_KEY):
        signed = signing.dumps({"reset": "me"})
    with override_settings(SECRET_KEY=NEW_KEY, SECRET_KEY_FALLBACKS=[OLD_KEY]):
        assert signing.loads(signed) == {"reset": "me"}
    with override_settings(SECRET_KEY=NEW_KEY, SECRET_KEY_FALLBACKS=[]):
        with pytest.raises(signing.BadSignature):
            signing.loads(signed)


def _session_user(client: Client):
    request = HttpRequest()
    request.session = client.session
    return get_user(request)


def test_a_session_made_with_the_old_secret_key_stays_logged_in(user):
    """The session's auth hash is an HMAC with SECRET_KEY: with the old key among
    the fallbacks the session is still that user's; without, it is logged out."""
    client = Client()
    with override_settings(SECRET_KEY=OLD_KEY):
        client.force_login(user)
        assert _session_user(client) == user
    with override_settings(SECRET_KEY=NEW_KEY, SECRET_KEY_FALLBACKS=[OLD_KEY]):
        assert _session_user(client) == user
    with override_settings(SECRET_KEY=NEW_KEY, SECRET_KEY_FALLBACKS=[]):
        assert not _session_user(client).is_authenticated


def test_jwts_are_not_signed_with_the_secret_key():
    assert settings.SIMPLE_JWT["SIGNING_KEY"] == os.environ["JWT_SIGNING_KEY"]
    assert settings.SIMPLE_JWT["SIGNING_KEY"] != settings.SECRET_KEY


def _signed_with_old_key(token) -> str:
    return TokenBackend("HS256", OLD_KEY).encode(token.payload)


@pytest.fixture
def rotated(monkeypatch):
    """JWT_SIGNING_KEY rotated: the running key is the new one, OLD_KEY a fallback
    (what AccountsConfig.ready installs when the setting is there)."""
    monkeypatch.setattr(state, "token_backend", state.token_backend)
    with override_settings(JWT_SIGNING_KEY_FALLBACKS=[OLD_KEY]):
        jwt_keys.install()
    return state.token_backend


def test_tokens_signed_with_the_old_jwt_key_still_work_after_rotation(
    db, user, rotated
):
    """An access token of the old key authenticates (lean and DRF paths), and
    its refresh token rotates into a pair signed with the new key."""
    refresh = RefreshToken.for_user(user)
    access = _signed_with_old_key(refresh.access_token)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    assert api.get("/api/v1/wallets/").status_code == 200
    assert api.get("/api/v1/users/me/").status_code == 200

    refreshed = APIClient().post(
        "/api/v1/auth/token/refresh/",
        {"refresh": _signed_with_old_key(refresh)},
        format="json",
    )
    assert refreshed.status_code == 200, refreshed.json()
    new_access = refreshed.json()["access"]
    TokenBackend("HS256", settings.JWT_SIGNING_KEY).decode(new_access)  # new key


def test_without_the_fallback_a_token_of_the_old_key_is_401(db, user):
    access = _signed_with_old_key(RefreshToken.for_user(user).access_token)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {access}")
    assert api.get("/api/v1/wallets/").status_code == 401


def test_a_fallback_does_not_accept_a_token_of_an_unknown_key(db, user, rotated):
    forged = TokenBackend("HS256", "some-other-key-" + "x" * 40).encode(
        RefreshToken.for_user(user).access_token.payload
    )
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {forged}")
    assert api.get("/api/v1/wallets/").status_code == 401


def test_production_refuses_to_start_without_a_jwt_signing_key():
    env = {key: value for key, value in os.environ.items() if key != "JWT_SIGNING_KEY"}
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=settings.BASE_DIR,
        env={**env, "DEBUG": "false"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "Set the JWT_SIGNING_KEY environment variable" in result.stderr
