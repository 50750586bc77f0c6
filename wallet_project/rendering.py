"""JSON as the API sends it: one function, so a stored response (an idempotent
replay) and a fresh one are the same bytes."""

import json
from typing import Any

from rest_framework.settings import api_settings as drf_settings
from rest_framework.utils.encoders import JSONEncoder


def json_bytes(data: Any) -> bytes:
    """What DRF's JSONRenderer renders for `data` (compact, UTF-8, strict)."""
    text = json.dumps(
        data,
        cls=JSONEncoder,
        ensure_ascii=not drf_settings.UNICODE_JSON,
        allow_nan=not drf_settings.STRICT_JSON,
        separators=(",", ":") if drf_settings.COMPACT_JSON else (", ", ": "),
    )
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029").encode()
