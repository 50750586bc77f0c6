"""Query-parameter filters whose every accepted value the database can use.

Python parses timestamps PostgreSQL refuses (an offset of -19:57, a year 0 or
10000 once converted to UTC): compared with a column they were a DataError, a
500. Every timestamp a filter accepts passes `timestamp_for_database`, on the
lean path and DRF's alike (both validate with the same FilterSet).
"""

from datetime import UTC, datetime, timedelta
from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _
from django_filters import rest_framework as filters
from django_filters.fields import IsoDateTimeField

# PostgreSQL takes offsets up to 15:59:59 either way (its TZDISP_LIMIT is 16 h).
MAX_UTC_OFFSET = timedelta(hours=16)
OFFSET_OUT_OF_RANGE = _("The time zone offset must be between -15:59 and +15:59.")
TIME_OUT_OF_RANGE = _("The time must be between 0001-01-01 and 9999-12-31 in UTC.")


def timestamp_for_database(value: datetime) -> datetime:
    """`value` (aware) in UTC, or a ValidationError saying why PostgreSQL (or
    Python, converting it to UTC) could not take it."""
    offset = value.utcoffset()
    if offset is not None and abs(offset) >= MAX_UTC_OFFSET:
        raise forms.ValidationError(OFFSET_OUT_OF_RANGE, code="offset_out_of_range")
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise forms.ValidationError(
            TIME_OUT_OF_RANGE, code="time_out_of_range"
        ) from None


class DatabaseDateTimeField(IsoDateTimeField):
    def to_python(self, value: Any) -> datetime | None:
        result = super().to_python(value)
        return None if result is None else timestamp_for_database(result)


class DatabaseDateTimeFilter(filters.IsoDateTimeFilter):
    """An ISO 8601 timestamp filter that only accepts what PostgreSQL compares."""

    field_class = DatabaseDateTimeField
