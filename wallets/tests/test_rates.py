"""Exchange rates: storage, freshness and conversion."""

from dataclasses import FrozenInstanceError
from datetime import timedelta
from decimal import Decimal

import pytest
import time_machine
from django.db import IntegrityError, transaction
from django.utils import timezone

from wallets.errors import RateUnavailable
from wallets.models import ExchangeRate
from wallets.selectors import Conversion, conversion_quote, rate_get
from wallets.services import exchange_rate_set, exchange_rates_store

pytestmark = pytest.mark.django_db


def test_conversion_multiplies_by_the_rate_less_the_spread(rates):
    conversion = conversion_quote(
        source_currency="USD", target_currency="KZT", amount=Decimal("100.00")
    )
    assert conversion == Conversion(
        source_currency="USD",
        target_currency="KZT",
        amount=Decimal("100.00"),
        rate=Decimal("500.0000000000"),
        spread_bps=50,
        gross=Decimal("50000.00"),
        spread=Decimal("250.00"),
        amount_out=Decimal("49750.00"),
        as_of=conversion.as_of,
    )
    assert str(conversion.rate) == "500.0000000000"
    assert str(conversion.amount_out) == "49750.00"
    assert ExchangeRate.objects.get(base="USD", quote="KZT").fetched_at == (
        conversion.as_of
    )


def test_conversion_rounds_toward_zero_to_the_target_minor_unit(settings):
    settings.FX_SPREAD_BPS = 0
    exchange_rate_set(base="KZT", quote="USD", rate=Decimal("0.0025"))
    # 1.00 KZT * 0.0025 = 0.0025 -> 0.00; 3.00 -> 0.0075 -> 0.00 (never up)
    cases = {"1.00": "0.00", "3.00": "0.00", "5.00": "0.01", "7.00": "0.01"}
    for amount, expected in cases.items():
        conversion = conversion_quote(
            source_currency="KZT", target_currency="USD", amount=Decimal(amount)
        )
        assert str(conversion.amount_out) == expected, amount


def test_same_currency_converts_at_rate_one_without_any_stored_rate():
    conversion = conversion_quote(
        source_currency="EUR", target_currency="EUR", amount=Decimal("12.34")
    )
    assert conversion.rate == Decimal("1.0000000000")
    assert conversion.amount_out == Decimal("12.34")
    assert (conversion.spread_bps, conversion.spread) == (0, Decimal("0.00"))


def test_no_rate_is_rate_unavailable_never_a_guess():
    with pytest.raises(RateUnavailable) as error:
        conversion_quote(
            source_currency="USD", target_currency="KZT", amount=Decimal("1")
        )
    assert error.value.code == "rate_unavailable"
    assert error.value.status_code == 503


def test_a_reverse_rate_is_not_used_for_the_missing_direction():
    exchange_rate_set(base="USD", quote="KZT", rate=Decimal("500"))
    with pytest.raises(RateUnavailable):
        conversion_quote(
            source_currency="KZT", target_currency="USD", amount=Decimal("1")
        )


def test_a_rate_older_than_rate_max_age_is_unavailable(settings):
    settings.RATE_MAX_AGE = timedelta(hours=24)
    exchange_rate_set(base="USD", quote="KZT", rate=Decimal("500"))
    later = timezone.now() + timedelta(hours=23, minutes=59)
    with time_machine.travel(later, tick=False):
        assert conversion_quote(
            source_currency="USD", target_currency="KZT", amount=Decimal("1")
        ).gross == Decimal("500.00")
    with time_machine.travel(later + timedelta(minutes=2), tick=False):
        with pytest.raises(RateUnavailable):
            conversion_quote(
                source_currency="USD", target_currency="KZT", amount=Decimal("1")
            )


def test_conversion_is_immutable(rates):
    conversion = conversion_quote(
        source_currency="USD", target_currency="EUR", amount=Decimal("10")
    )
    with pytest.raises(FrozenInstanceError):
        conversion.rate = Decimal(2)  # type: ignore[misc]


def test_storing_rates_replaces_the_pair_and_keeps_ten_decimal_places():
    exchange_rates_store(
        base="KZT",
        rates={"USD": Decimal("0.00199600798403193612"), "EUR": Decimal("0.0018")},
        source="first",
    )
    exchange_rates_store(base="KZT", rates={"USD": Decimal("0.002")}, source="second")
    assert ExchangeRate.objects.count() == 2
    usd = rate_get(base="KZT", quote="USD")
    assert (usd.rate, usd.source) == (Decimal("0.0020000000"), "second")
    eur = rate_get(base="KZT", quote="EUR")
    assert (eur.rate, eur.source) == (Decimal("0.0018000000"), "first")


@pytest.mark.parametrize(
    ("base", "quote", "rate"),
    [("USD", "KZT", Decimal("0")), ("USD", "KZT", Decimal("-1")), ("USD", "USD", 1)],
)
def test_the_database_rejects_a_non_positive_or_self_rate(base, quote, rate):
    with pytest.raises(IntegrityError), transaction.atomic():
        ExchangeRate.objects.create(
            base=base, quote=quote, rate=rate, fetched_at=timezone.now()
        )
