"""Responses every operation can give, documented once for the whole schema
(drf-spectacular postprocessing hook, SPECTACULAR_SETTINGS["POSTPROCESSING_HOOKS"]).

Found by fuzzing the API against its own schema (tests/hostile/test_fuzz.py):
- 401 on every operation that needs a token, when it is missing or bad;
- 503 `service_unavailable` on every operation while the database is unreachable;
- 429 on `auth/` operations, which Nginx rate-limits per client address;
- 400 on operations with query parameters (filters reject a malformed value);
- 404 on cursor-paginated lists (DRF's "Invalid cursor");
- a 400 is either `{"detail", "code"}` or DRF's `{"field": ["message"]}`.

And the headers every client may rely on (`document_response_headers`):
X-Request-ID on every response, Retry-After on every 429 and 503, and
Idempotency-Replayed on the success of an operation that takes an Idempotency-Key.
"""

from typing import Any

ERROR = "#/components/schemas/Error"
VALIDATION_ERROR = "ValidationError"

_COMMON = {
    "401": "Missing, malformed, expired or revoked access token (`not_authenticated`, `token_not_valid`).",
    "429": "Too many requests from this address (`throttled`); see Retry-After.",
    "503": "The database is unreachable (`service_unavailable`); retry after Retry-After.",
}


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": ERROR}}},
    }


def document_common_responses(
    result: dict[str, Any], generator: Any, request: Any, public: bool
) -> dict[str, Any]:
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    if "Error" not in schemas:
        return result  # no operation documents an error: nothing to align with
    schemas[VALIDATION_ERROR] = {
        "type": "object",
        "description": 'Invalid input: {"field": ["message", ...], ...}.',
        "additionalProperties": {},
    }
    either = {
        "anyOf": [
            {"$ref": ERROR},
            {"$ref": f"#/components/schemas/{VALIDATION_ERROR}"},
        ]
    }
    for path, item in result.get("paths", {}).items():
        for method, operation in item.items():
            if method not in {"get", "post", "put", "patch", "delete"}:
                continue
            responses = operation.setdefault("responses", {})
            security = operation.get("security", result.get("security", []))
            if security and {} not in security:
                responses.setdefault("401", _error(_COMMON["401"]))
            if path.startswith("/api/v1/auth/"):
                responses.setdefault("429", _error(_COMMON["429"]))
            responses.setdefault("503", _error(_COMMON["503"]))
            if any(p.get("in") == "query" for p in operation.get("parameters", [])):
                responses.setdefault(
                    "400",
                    {
                        "description": "A malformed query parameter.",
                        "content": {"application/json": {"schema": either}},
                    },
                )
            if any(p.get("name") == "cursor" for p in operation.get("parameters", [])):
                responses.setdefault("404", _error("Invalid cursor (`not_found`)."))
            bad = responses.get("400", {}).get("content", {}).get("application/json")
            if bad and bad.get("schema") == {"$ref": ERROR}:
                bad["schema"] = either
    return result


_HEADERS = {
    "X-Request-ID": {
        "description": (
            "The request's id, in the logs too: the X-Request-ID the request sent "
            "(1-128 of `A-Za-z0-9._:-`), else a new one. Quote it when reporting a "
            "problem."
        ),
        "required": True,
        "schema": {"type": "string", "maxLength": 128},
    },
    "Retry-After": {
        "description": "Seconds to wait before retrying.",
        "required": True,
        "schema": {"type": "integer", "minimum": 0},
    },
    "Idempotency-Replayed": {
        "description": (
            "`true` when this is the stored answer to an earlier request with the "
            "same Idempotency-Key (nothing moved this time); absent otherwise."
        ),
        "required": False,
        "schema": {"type": "string", "enum": ["true"]},
    },
}


def _header(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/headers/{name}"}


def document_response_headers(
    result: dict[str, Any], generator: Any, request: Any, public: bool
) -> dict[str, Any]:
    """The headers of `_HEADERS` on the responses that carry them (after
    document_common_responses, which adds the 429s and 503s)."""
    result.setdefault("components", {}).setdefault("headers", {}).update(_HEADERS)
    for item in result.get("paths", {}).values():
        for method, operation in item.items():
            if method not in {"get", "post", "put", "patch", "delete"}:
                continue
            keyed = any(
                p.get("in") == "header" and p.get("name") == "Idempotency-Key"
                for p in operation.get("parameters", [])
            )
            for status, response in operation.get("responses", {}).items():
                headers = response.setdefault("headers", {})
                headers["X-Request-ID"] = _header("X-Request-ID")
                if status in {"429", "503"}:
                    headers["Retry-After"] = _header("Retry-After")
                if keyed and status.startswith("2"):
                    headers["Idempotency-Replayed"] = _header("Idempotency-Replayed")
    return result
