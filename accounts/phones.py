"""Phone numbers are stored in E.164 (+77011234567), validated by `phonenumbers`."""

import phonenumbers
from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

INVALID_PHONE_NUMBER = _("Enter a valid phone number, e.g. +77011234567.")


def phone_number_normalize(value: str) -> str:
    """The E.164 form of a valid number; a number without a +country prefix is read
    as one of PHONE_DEFAULT_REGION. Raises ValidationError otherwise."""
    try:
        number = phonenumbers.parse(value, settings.PHONE_DEFAULT_REGION)
    except phonenumbers.NumberParseException:
        raise ValidationError(INVALID_PHONE_NUMBER, code="invalid") from None
    if not phonenumbers.is_valid_number(number):
        raise ValidationError(INVALID_PHONE_NUMBER, code="invalid")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
