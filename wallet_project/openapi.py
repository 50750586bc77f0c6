"""Responses every operation can give, documented once for the whole schema
(drf-spectacular postprocessing hook, SPECTACULAR_SETTINGS["POSTPROCESSING_HOOKS"]).

Found by fuzzing the API against its own schema (tests/hostile/test_fuzz.py):
- 401 on every operation that needs a token, when it is missing or bad;
- 503 `service_unavailable` on every operation while the database is unreachable;
- 429 on `auth/` operations, which Nginx rate-limits per client address;
- 400 on operations with query parameters (filters reject a malformed value);
- 404 on cursor-paginated lists (DRF's "Invalid cursor");
- a 400 is either `{"detail", "code"}` or DRF's `{"field": ["message"]}`.
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


def document_common_responses(result, generator, request, public):
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
