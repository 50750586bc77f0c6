"""The API docs pages render the schema in a real browser: Swagger UI and ReDoc
(from our own static files) show every operation, with no schema error."""

import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

OPERATION = "Deposit to or withdraw from a wallet"


def test_swagger_ui_renders_every_operation(page, shot):
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto("/api/docs/")
    operations = page.locator(".opblock")
    expect(operations.first).to_be_visible()
    assert operations.count() > 30
    expect(page.get_by_text(OPERATION)).to_be_visible()
    # Swagger UI lists what it could not resolve in an errors box.
    assert page.locator(".errors-wrapper").count() == 0
    assert errors == []
    shot("api-docs-swagger")


def test_redoc_renders_the_schema(page, shot):
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto("/api/redoc/")
    expect(page.locator("h1", has_text="Wallet API")).to_be_visible()
    expect(page.locator("h2", has_text=OPERATION)).to_have_count(1)
    assert errors == []
    shot("api-docs-redoc")
