"""The OpenAPI schema (/api/schema/) is one clients can be generated from: JSON
bodies only (multipart for the profile image alone), valid by drf-spectacular's
and openapi-spec-validator's rules, and the headers every response carries
documented where they are sent (issue 24)."""

import io

import pytest
from django.core.management import call_command
from drf_spectacular.generators import SchemaGenerator
from openapi_spec_validator import validate

pytestmark = pytest.mark.django_db

PROFILE = ("/api/v1/users/me/", "patch")
METHODS = {"get", "post", "put", "patch", "delete"}


@pytest.fixture(scope="module")
def schema() -> dict:
    return SchemaGenerator().get_schema(request=None, public=True)


def operations(schema: dict):
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method, operation


def test_every_request_body_is_json_but_the_profile_upload(schema):
    bodies = {
        (path, method): set(operation["requestBody"]["content"])
        for path, method, operation in operations(schema)
        if "requestBody" in operation
    }
    assert len(bodies) >= 15  # the money endpoints, accounts, service decisions
    assert bodies.pop(PROFILE) == {"application/json", "multipart/form-data"}
    assert {
        path: types for path, types in bodies.items() if types != {"application/json"}
    } == {}


def test_the_profile_upload_documents_the_image_as_a_file(schema):
    item = schema["paths"][PROFILE[0]][PROFILE[1]]["requestBody"]["content"]
    components = schema["components"]["schemas"]
    upload = components[item["multipart/form-data"]["schema"]["$ref"].split("/")[-1]]
    json_body = components[item["application/json"]["schema"]["$ref"].split("/")[-1]]
    assert upload["properties"]["profile_image"]["format"] == "binary"
    assert "format" not in json_body["properties"]["profile_image"]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v1/wallets/", {"currency": "USD"}),
        ("/api/v1/transfers/", {"from_wallet": "x", "to_wallet_number": "1"}),
    ],
)
def test_a_multipart_body_is_a_415_where_json_is_expected(auth_api, path, body):
    response = auth_api.post(path, body, format="multipart")
    assert response.status_code == 415
    assert response.json()["code"] == "unsupported_media_type"


def test_a_urlencoded_login_is_a_415(api, user):
    response = api.post(
        "/api/v1/auth/token/",
        f"email={user.email}&password=x",
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 415


def test_the_profile_still_takes_multipart(auth_api):
    response = auth_api.patch("/api/v1/users/me/", {"first_name": "Ann"}, "multipart")
    assert response.status_code == 200, response.json()
    assert response.json()["first_name"] == "Ann"


def test_drf_spectacular_finds_nothing_to_warn_about():
    """`manage.py spectacular --fail-on-warn --validate` (its own OpenAPI 3.0
    JSON Schema check) passes."""
    out = io.StringIO()
    call_command("spectacular", "--fail-on-warn", "--validate", stdout=out)
    assert out.getvalue().startswith("openapi: 3.0")


def test_openapi_spec_validator_accepts_the_schema(client):
    served = client.get("/api/schema/?format=json")
    assert served.status_code == 200
    validate(served.json())  # raises on the first violation


def test_every_response_documents_its_request_id(schema):
    missing = [
        (path, method, status)
        for path, method, operation in operations(schema)
        for status, response in operation["responses"].items()
        if response.get("headers", {}).get("X-Request-ID")
        != {"$ref": "#/components/headers/X-Request-ID"}
    ]
    assert missing == []
    assert schema["components"]["headers"]["X-Request-ID"]["required"] is True


def test_every_429_and_503_documents_retry_after(schema):
    retried = [
        (path, method, status, "Retry-After" in response.get("headers", {}))
        for path, method, operation in operations(schema)
        for status, response in operation["responses"].items()
        if status in {"429", "503"}
    ]
    assert len(retried) >= len(list(operations(schema)))  # a 503 on every one
    assert [r for r in retried if not r[3]] == []


def test_idempotent_operations_document_the_replay_header(schema):
    replayed = {
        (path, method)
        for path, method, operation in operations(schema)
        for status, response in operation["responses"].items()
        if "Idempotency-Replayed" in response.get("headers", {})
    }
    assert replayed == {
        ("/api/v1/wallets/{wallet_id}/operation/", "post"),
        ("/api/v1/transfers/", "post"),
        ("/api/v1/wallets/{wallet_id}/topups/", "post"),
        ("/api/v1/wallets/{wallet_id}/payouts/", "post"),
        ("/api/v1/service/topups/{topup_id}/reversal/", "post"),
    }


def test_the_error_codes_are_one_enum(schema):
    error = schema["components"]["schemas"]["Error"]
    assert error["properties"]["code"] == {"$ref": "#/components/schemas/ErrorCode"}
    codes = schema["components"]["schemas"]["ErrorCode"]["enum"]
    assert {"insufficient_funds", "wallet_not_found", "throttled"} <= set(codes)
    assert len(codes) == len(set(codes))
