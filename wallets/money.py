"""Currency arithmetic: minor units and formatting. Never float."""

from decimal import Decimal

from django.conf import settings

# ISO 4217 minor units of the currencies we hold.
MINOR_DIGITS = {"KZT": 2, "USD": 2, "EUR": 2}


def minor_digits(currency: str) -> int:
    return MINOR_DIGITS.get(currency, settings.CURRENCY_DECIMAL_PLACES)


def quantum(currency: str) -> Decimal:
    return Decimal(1).scaleb(-minor_digits(currency))


def money_str(amount: Decimal, currency: str) -> str:
    """`1200.5` KZT -> "1200.50"."""
    return f"{amount:.{minor_digits(currency)}f}"


def to_minor(amount: Decimal, currency: str) -> int:
    return int(amount.scaleb(minor_digits(currency)))
