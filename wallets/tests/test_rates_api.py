"""GET /api/v1/rates/ and GET /api/v1/rates/quote/."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from wallets.models import ExchangeRate
from wallets.services import exchange_rate_set

pytestmark = pytest.mark.django_db


def test_rates_lists_every_stored_pair_with_its_age(auth_api, rates):
    ExchangeRate.objects.filter(base="EUR", quote="USD").update(
        fetched_at=timezone.now() - timedelta(days=2)
    )
    response = auth_api.get("/api/v1/rates/")
    assert response.status_code == 200
    body = {(r["base"], r["quote"]): r for r in response.json()}
    assert set(body) == set(rates)
    usd_kzt = body[("USD", "KZT")]
    assert usd_kzt["rate"] == "500.0000000000"
    assert usd_kzt["source"] == "test"
    assert usd_kzt["stale"] is False
    assert body[("KZT", "EUR")]["rate"] == "0.0018181818"
    assert body[("EUR", "USD")]["stale"] is True


def test_quote_converts_at_the_current_rate(auth_api, rates):
    response = auth_api.get("/api/v1/rates/quote/?from=USD&to=KZT&amount=100")
    assert response.status_code == 200
    rate = ExchangeRate.objects.get(base="USD", quote="KZT")
    assert response.json() == {
        "from": "USD",
        "to": "KZT",
        "amount": "100.00",
        "rate": "500.0000000000",
        "spread_bps": 50,
        "spread": "250.00",
        "amount_out": "49750.00",
        "as_of": rate.fetched_at.isoformat().replace("+00:00", "Z"),
    }


def test_quote_rounds_toward_zero(settings, auth_api):
    settings.FX_SPREAD_BPS = 0
    exchange_rate_set(base="KZT", quote="USD", rate=Decimal("0.0025"))
    for amount, expected in (
        ("1", "0.00"),
        ("3", "0.00"),
        ("5", "0.01"),
        ("7", "0.01"),
    ):
        body = auth_api.get(f"/api/v1/rates/quote/?from=KZT&to=USD&amount={amount}")
        assert body.json()["amount_out"] == expected


def test_quote_within_one_currency_is_rate_one(auth_api):
    body = auth_api.get("/api/v1/rates/quote/?from=EUR&to=EUR&amount=7.5").json()
    assert (body["rate"], body["amount_out"]) == ("1.0000000000", "7.50")
    assert (body["spread_bps"], body["spread"]) == (0, "0.00")


def test_quote_without_a_rate_is_503(auth_api):
    response = auth_api.get("/api/v1/rates/quote/?from=USD&to=KZT&amount=100")
    assert response.status_code == 503
    assert response.json()["code"] == "rate_unavailable"
    # As on every 503: when to come back (rates are refreshed hourly).
    assert response["Retry-After"] == "60"


def test_quote_with_a_stale_rate_is_503(auth_api, rates):
    ExchangeRate.objects.update(fetched_at=timezone.now() - timedelta(hours=25))
    response = auth_api.get("/api/v1/rates/quote/?from=USD&to=KZT&amount=100")
    assert response.status_code == 503
    assert response.json()["code"] == "rate_unavailable"


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("to=KZT&amount=1", "from"),
        ("from=USD&amount=1", "to"),
        ("from=USD&to=KZT", "amount"),
        ("from=XYZ&to=KZT&amount=1", "from"),
        ("from=USD&to=usd&amount=1", "to"),
        ("from=USD&to=KZT&amount=0", "amount"),
        ("from=USD&to=KZT&amount=-1", "amount"),
        ("from=USD&to=KZT&amount=1.001", "amount"),
        ("from=USD&to=KZT&amount=abc", "amount"),
        ("from=USD&to=KZT&amount=NaN", "amount"),
        ("from=USD&to=KZT&amount=1e999", "amount"),
    ],
)
def test_quote_with_bad_parameters_is_400(auth_api, rates, query, field):
    response = auth_api.get(f"/api/v1/rates/quote/?{query}")
    assert response.status_code == 400
    assert field in response.json()


def test_rates_need_a_token(api, rates):
    assert api.get("/api/v1/rates/").status_code == 401
    assert api.get("/api/v1/rates/quote/?from=USD&to=KZT&amount=1").status_code == 401
