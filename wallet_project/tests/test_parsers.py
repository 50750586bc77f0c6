"""JSON bodies: exact numbers, and a bounded nesting depth (never a RecursionError)."""

import logging
from decimal import Decimal

import pytest

from wallet_project.parsers import MAX_JSON_DEPTH, loads_strict


def nested(depth: int, prefix: str = '"refresh":"x",') -> str:
    """An object whose "x" holds `depth` nested arrays (the object is one more level)."""
    return "{" + prefix + '"x":' + "[" * depth + "]" * depth + "}"


class TestLoadsStrict:
    def test_keeps_numbers_exact(self):
        assert loads_strict('{"amount": 10.10}') == {"amount": Decimal("10.10")}

    def test_accepts_json_nested_up_to_the_limit(self):
        value = loads_strict(nested(MAX_JSON_DEPTH - 1, prefix=""))
        for _ in range(MAX_JSON_DEPTH - 1):
            value = value["x"] if isinstance(value, dict) else value[0]
        assert value == []

    @pytest.mark.parametrize("depth", [MAX_JSON_DEPTH, 1000, 200_000])
    def test_refuses_deeper_json_with_a_value_error(self, depth):
        with pytest.raises(ValueError, match="nested"):
            loads_strict(nested(depth))

    def test_brackets_inside_strings_do_not_count(self):
        text = '{"name": "' + "[{" * 5000 + '\\"]}", "other": "\\\\"}'
        assert loads_strict(text)["other"] == "\\"

    @pytest.mark.parametrize(
        "text", ["[" * 5000 + "}" * 5000, "[" * 100_000, '"' + "[" * 100_000]
    )
    def test_malformed_deep_json_is_a_value_error(self, text):
        with pytest.raises(ValueError):
            loads_strict(text)


@pytest.mark.django_db
class TestDeeplyNestedBodies:
    """A body nested 1000 deep is a 400 `parse_error` and one log line, on every
    endpoint that reads JSON, lean path or DRF's, with or without a token."""

    @pytest.fixture
    def endpoints(self, wallet):
        return {
            "/api/v1/auth/token/refresh/": "public",
            "/api/v1/auth/password-reset/": "public",
            "/api/v1/transfers/": "authenticated",
            f"/api/v1/wallets/{wallet.id}/operation": "authenticated",
            f"/api/v1/wallets/{wallet.id}/operation/": "authenticated",
        }

    @pytest.mark.parametrize("with_token", [True, False])
    def test_is_a_400_parse_error_never_a_500(
        self, api, auth_api, endpoints, with_token, caplog
    ):
        client = auth_api if with_token else api
        for url, access in endpoints.items():
            caplog.clear()
            with caplog.at_level(logging.INFO):
                response = client.post(
                    url, nested(1000), content_type="application/json"
                )
            if access == "authenticated" and not with_token:
                # Who is asking is checked before the body is read.
                assert response.status_code == 401, url
                assert response.json()["code"] == "not_authenticated"
                continue
            assert response.status_code == 400, url
            body = response.json()
            assert body["code"] == "parse_error"
            assert "nested" in body["detail"]
            assert [r.levelname for r in caplog.records] == ["INFO"], url
            assert caplog.records[0].exc_info is None

    def test_the_message_is_translated(self, api):
        response = api.post(
            "/api/v1/auth/password-reset/",
            nested(1000),
            content_type="application/json",
            HTTP_ACCEPT_LANGUAGE="ru",
        )
        assert response.status_code == 400
        assert response.json()["code"] == "parse_error"
        assert "вложен" in response.json()["detail"]

    def test_a_body_within_the_limit_is_read_as_usual(self, auth_api, wallet):
        response = auth_api.post(
            f"/api/v1/wallets/{wallet.id}/operation",
            '{"operation_type": "DEPOSIT", "amount": "1.00", "x": [[[[]]]]}',
            content_type="application/json",
        )
        assert response.status_code == 201
