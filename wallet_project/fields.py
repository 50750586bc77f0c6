"""Serializer fields that take a string only when they are given one.

DRF's CharField turns a JSON number into its text (`"first_name": -548` is
stored as "-548"), where the schema, and every client reading it, says string.
These refuse anything but a string with the field's own "invalid" message
(CharField's: "Not a valid string."). Form and multipart values are strings
already, so only JSON input can differ.
"""

from typing import Any

from rest_framework import serializers


class _StringOnly:
    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, str):
            self.fail("invalid")  # type: ignore[attr-defined]  # a mixin of DRF fields
        return super().to_internal_value(data)  # type: ignore[misc]  # CharField's


class StrictCharField(_StringOnly, serializers.CharField):
    pass


class StrictEmailField(_StringOnly, serializers.EmailField):
    pass


class StrictRegexField(_StringOnly, serializers.RegexField):
    pass
