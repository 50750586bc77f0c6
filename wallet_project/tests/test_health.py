"""/healthz and /readyz: JSON, no auth, answered before host validation and the
HTTPS redirect (probes come by IP over plain HTTP)."""

import pytest
from django.db import connection
from django.test import Client, override_settings

from wallet_project import health


@pytest.fixture
def redis_down(settings):
    """Redis really unreachable: a closed port."""
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    health._redis_client = None
    yield
    health._redis_client = None


def test_healthz_says_the_process_is_up(client):
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert "no-store" in response["Cache-Control"]


@pytest.mark.django_db
def test_readyz_checks_database_and_redis(client):
    response = client.get("/readyz")

    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "checks": {"database": "ok", "redis": "ok"},
    }


@pytest.mark.django_db
def test_readyz_is_503_when_redis_is_unreachable(client, redis_down):
    response = client.get("/readyz")

    assert response.status_code == 503
    assert response.json() == {
        "status": "unavailable",
        "checks": {"database": "ok", "redis": "unavailable"},
    }
    assert response["Retry-After"] == "5"


@pytest.mark.django_db(transaction=True)
def test_readyz_is_503_when_the_database_is_unreachable(client):
    saved = dict(connection.settings_dict)
    connection.close()
    connection.settings_dict["PORT"] = "1"
    try:
        response = client.get("/readyz")
    finally:
        connection.close()
        connection.settings_dict.update(saved)

    assert response.status_code == 503
    assert response.json()["checks"] == {"database": "unavailable", "redis": "ok"}


def test_probes_need_no_allowed_host():
    """A probe by container IP gets its answer; the API still validates Host."""
    client = Client(raise_request_exception=False)

    assert client.get("/healthz", HTTP_HOST="10.0.0.7:8000").status_code == 200
    assert client.get("/api/v1/wallets/", HTTP_HOST="10.0.0.7:8000").status_code == 400


@override_settings(SECURE_SSL_REDIRECT=True)
def test_probes_are_not_redirected_to_https():
    client = Client()

    assert client.get("/healthz").status_code == 200
    assert client.get("/api/v1/wallets/").status_code == 301


def test_probes_answer_only_reads(client):
    assert client.post("/healthz").status_code == 405
