import json
import re
from decimal import Decimal
from itertools import accumulate
from typing import IO, Any

from django.conf import settings
from django.utils.translation import gettext as _
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

# How deep a JSON body may nest (objects and arrays). No request of this API
# needs more than a few levels; Python's decoder recurses once per level and
# fails with a RecursionError (a 500) near 1000.
MAX_JSON_DEPTH = 32

# A string's escapes, then the strings themselves (which may hold any bracket),
# then everything that is not a bracket: what is left is the body's skeleton.
_ESCAPE = re.compile(r"\\.", re.DOTALL)
_STRING = re.compile(r'"[^"]*"')
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not a valid JSON value")


def _depth_check(text: str) -> None:
    """ValueError if `text` nests deeper than MAX_JSON_DEPTH, found without
    recursion and in linear time (regular expressions and a running sum).

    For valid JSON the skeleton's running sum is exactly the nesting depth. For
    invalid JSON it bounds the depth of the valid prefix, which is as deep as the
    decoder gets before it fails: either way it never recurses past the limit.
    """
    if "[" not in text and "{" not in text:
        return
    skeleton = _NOT_BRACKET.sub("", _STRING.sub("", _ESCAPE.sub("", text)))
    depth = max(accumulate(map(_STEP.__getitem__, skeleton)), default=0)
    if depth > MAX_JSON_DEPTH:
        raise ValueError(
            _("nested deeper than %(max)s levels") % {"max": MAX_JSON_DEPTH}
        )


def loads_strict(text: str) -> Any:
    """JSON with numbers as Decimal (never float), no NaN/Infinity and at most
    MAX_JSON_DEPTH levels of nesting; ValueError for anything else."""
    _depth_check(text)
    return json.loads(text, parse_float=Decimal, parse_constant=_reject_constant)


class StrictJSONParser(JSONParser):
    """JSON parser that keeps numbers exact and refuses NaN/Infinity and bodies
    nested deeper than MAX_JSON_DEPTH.

    JSON numbers become `Decimal` (never float), so `"amount": 10.10` is exactly
    10.10 and `1.001` is reported as too precise instead of being rounded.
    """

    def parse(
        self,
        stream: IO[bytes],
        media_type: str | None = None,
        parser_context: dict[str, Any] | None = None,
    ) -> Any:
        parser_context = parser_context or {}
        encoding = parser_context.get("encoding", settings.DEFAULT_CHARSET)
        try:
            text = stream.read().decode(encoding)
            return loads_strict(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ParseError(_("Malformed JSON: %(error)s") % {"error": exc}) from exc
