"""One JSON access line per request, with the request id, the user and the timing;
tracebacks go to the log, never to the client."""

import json
import logging

import pytest
from django.test import Client, override_settings

from wallet_project.logging import JsonLogFormatter


def _access_records(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "wallet.access"]


@pytest.mark.django_db
def test_access_line_has_request_id_user_path_status_duration(auth_api, user, caplog):
    caplog.set_level(logging.INFO, logger="wallet.access")

    response = auth_api.get("/api/v1/wallets/", HTTP_X_REQUEST_ID="req-123.abc")

    assert response.status_code == 200
    assert response["X-Request-ID"] == "req-123.abc"
    (record,) = _access_records(caplog)
    assert record.request_id == "req-123.abc"
    assert record.user_id == str(user.pk)
    assert (record.method, record.path, record.status) == (
        "GET",
        "/api/v1/wallets/",
        200,
    )
    assert record.duration_ms >= 0


@pytest.mark.django_db
def test_anonymous_request_is_logged_without_user(api, caplog):
    caplog.set_level(logging.INFO, logger="wallet.access")

    response = api.get("/api/v1/wallets/")

    assert response.status_code == 401
    (record,) = _access_records(caplog)
    assert record.user_id is None
    assert record.status == 401


@pytest.mark.parametrize(
    "incoming", ["", "has space", 'quote"d', "x" * 129, "line\nbreak"]
)
def test_an_unusable_request_id_is_replaced_by_a_generated_one(client, incoming):
    response = client.get("/healthz", HTTP_X_REQUEST_ID=incoming)

    generated = response["X-Request-ID"]
    assert generated != incoming
    assert len(generated) == 32
    int(generated, 16)


def test_each_request_gets_its_own_id(client):
    first = client.get("/healthz")["X-Request-ID"]
    second = client.get("/healthz")["X-Request-ID"]

    assert first != second


@override_settings(ROOT_URLCONF="tests.e2e.slow_urls")
def test_a_bug_is_a_json_500_and_its_traceback_is_logged_with_the_request_id(caplog):
    client = Client(raise_request_exception=False)

    response = client.get("/e2e/bug/", HTTP_X_REQUEST_ID="bug-1")

    assert response.status_code == 500
    assert response.json() == {
        "detail": "Internal server error.",
        "code": "server_error",
    }
    assert b"Traceback" not in response.content
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert errors
    assert errors[0].exc_info[0] is RuntimeError
    # Stamped by the console handler's RequestIdFilter while the request ran.
    assert errors[0].request_id == "bug-1"
    line = json.loads(JsonLogFormatter().format(errors[0]))
    assert line["request_id"] == "bug-1"
    assert "RuntimeError: e2e: a deliberate bug" in line["exc_info"]
    assert line["level"] == "ERROR"
