"""Error codes: one enum per app, each app's errors next to its enum, all of
them published in the API schema as one `ErrorCode`."""

import importlib

import pytest
from django.utils import translation

from wallet_project.errors import DomainError, ErrorCodes

ERROR_MODULES = [
    "wallet_project.errors",
    "accounts.errors",
    "wallets.errors",
    "transactions.ledger.errors",
    "transactions.webhooks.errors",
    "fees.errors",
]


def enums() -> list[type[ErrorCodes]]:
    return [importlib.import_module(module).ErrorCode for module in ERROR_MODULES]


def domain_errors(base: type = DomainError) -> list[type[DomainError]]:
    found = []
    for cls in base.__subclasses__():
        found += [cls, *domain_errors(cls)]
    return found


def test_no_code_is_in_two_enums():
    codes = [code.value for enum in enums() for code in enum]
    assert len(codes) == len(set(codes)), sorted(c for c in codes if codes.count(c) > 1)


def test_each_domain_error_lives_next_to_the_enum_of_its_code():
    errors = domain_errors()
    assert len(errors) >= 30
    for cls in errors:
        assert cls.__module__ in ERROR_MODULES, cls
        assert type(cls.code).__module__ == cls.__module__, cls


def test_a_domain_error_whose_code_is_a_plain_string_does_not_define():
    with pytest.raises(TypeError, match="must be a member of an ErrorCode enum"):
        type("Stray", (DomainError,), {"code": "stray"})


@pytest.mark.django_db
def test_the_schema_publishes_every_code_with_its_status_and_meaning(client):
    with translation.override("en"):
        schema = client.get(
            "/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json"
        ).json()
    components = schema["components"]["schemas"]
    published = components["ErrorCode"]
    assert published["enum"] == [code.value for enum in enums() for code in enum]
    assert components["Error"]["properties"]["code"] == {
        "$ref": "#/components/schemas/ErrorCode"
    }
    lines = published["description"].splitlines()
    assert "* `insufficient_funds` - 400: Insufficient funds." in lines
    assert (
        "* `wallet_blocked` - 409: The wallet is blocked and cannot send money."
        in lines
    )
    assert (
        "* `not_authenticated` - 401: Authentication credentials were not provided."
        in lines
    )
    assert len(lines) == len(published["enum"])
