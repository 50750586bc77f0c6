import json
from decimal import Decimal

from django.conf import settings
from django.utils.translation import gettext as _
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not a valid JSON value")


def loads_strict(text: str):
    """JSON with numbers as Decimal (never float) and no NaN/Infinity;
    ValueError for anything else."""
    return json.loads(text, parse_float=Decimal, parse_constant=_reject_constant)


class StrictJSONParser(JSONParser):
    """JSON parser that keeps numbers exact and refuses NaN/Infinity.

    JSON numbers become `Decimal` (never float), so `"amount": 10.10` is exactly
    10.10 and `1.001` is reported as too precise instead of being rounded.
    """

    def parse(self, stream, media_type=None, parser_context=None):
        parser_context = parser_context or {}
        encoding = parser_context.get("encoding", settings.DEFAULT_CHARSET)
        try:
            text = stream.read().decode(encoding)
            return loads_strict(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ParseError(_("Malformed JSON: %(error)s") % {"error": exc}) from exc
