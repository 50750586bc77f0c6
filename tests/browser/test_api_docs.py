"""The API docs render in a browser with the network cut off: Swagger UI and
ReDoc come from our own static files (drf-spectacular-sidecar), and so does the
schema; they show every operation, with no schema error."""

from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

OPERATION = "Deposit to or withdraw from a wallet"
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}


@pytest.fixture
def offline(page):
    """Every request that would leave the machine fails (as on a host without
    internet); the list of those that were attempted, for the test to check."""
    attempted: list[str] = []

    def only_loopback(route):
        url = route.request.url
        if urlsplit(url).hostname in LOOPBACK:
            route.continue_()
        else:
            attempted.append(url)
            route.abort("internetdisconnected")

    page.context.route("**/*", only_loopback)
    return attempted


def test_swagger_ui_lists_every_operation_offline(page, offline, shot):
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto("/api/docs/")
    operations = page.locator(".opblock")
    expect(operations.first).to_be_visible()
    transfers = page.locator(".opblock-summary-path", has_text="/api/v1/transfers/")
    expect(transfers.first).to_be_visible()
    expect(page.get_by_text(OPERATION)).to_be_visible()
    assert operations.count() > 30
    # Swagger UI lists what it could not resolve in an errors box.
    assert page.locator(".errors-wrapper").count() == 0
    assert errors == []
    shot("api-docs-swagger-offline")
    assert offline == [], "the docs page reached outside 127.0.0.1"


def test_redoc_lists_every_operation_offline(page, offline, shot):
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto("/api/redoc/")
    expect(page.locator("h1", has_text="Wallet API")).to_be_visible()
    expect(page.locator("h2", has_text=OPERATION)).to_have_count(1)
    operations = page.locator("[data-section-id*='operation/']")
    assert operations.count() > 20
    assert errors == []
    shot("api-docs-redoc-offline")
    assert offline == [], "the docs page reached outside 127.0.0.1"
