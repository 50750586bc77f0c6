"""CachedJWTAuthentication: simplejwt's check, optionally without a user query."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework_simplejwt.tokens import AccessToken

from accounts import authentication

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _forget_users():
    authentication._users.clear()
    yield
    authentication._users.clear()


def _user_queries(client) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get("/api/v1/wallets/").status_code == 200
    return sum('FROM "accounts_user"' in q["sql"] for q in queries.captured_queries)


def test_without_cache_every_request_reads_the_user(auth_api, settings):
    settings.JWT_USER_CACHE_SECONDS = 0
    assert _user_queries(auth_api) == 1
    assert _user_queries(auth_api) == 1


def test_with_cache_the_user_is_read_once(auth_api, settings):
    settings.JWT_USER_CACHE_SECONDS = 60
    assert _user_queries(auth_api) == 1
    assert _user_queries(auth_api) == 0


def test_cached_user_is_a_fresh_instance_per_request(user, auth_api, settings):
    """A view changing request.user never changes what the next request sees."""
    settings.JWT_USER_CACHE_SECONDS = 60
    auth_api.get("/api/v1/wallets/")
    token = auth_api._credentials["HTTP_AUTHORIZATION"].split()[1]
    auth = authentication.CachedJWTAuthentication()
    first = auth.get_user(AccessToken(token))
    first.first_name = "changed"
    second = auth.get_user(AccessToken(token))
    assert first is not second
    assert second.pk == user.pk
    assert second.email == user.email
    assert second.first_name == user.first_name


def test_inactive_user_is_refused_and_never_cached(user, auth_api, settings):
    settings.JWT_USER_CACHE_SECONDS = 60
    user.is_active = False
    user.save(update_fields=["is_active"])
    assert auth_api.get("/api/v1/wallets/").status_code == 401
    assert authentication._users == {}
