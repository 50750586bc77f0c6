"""The rate provider client and the refresh, against a real HTTP server on
loopback speaking exchangerate-api's v6 "latest" format."""

import json
import logging
import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.conf import settings as django_settings
from django.core.management import CommandError, call_command
from django.utils import timezone
from werkzeug import Response

from wallets.models import ExchangeRate
from wallets.rates import RateProviderError, rates_fetch
from wallets.services import exchange_rates_refresh, exchange_rates_store
from wallets.tasks import exchange_rates_refresh_task

pytestmark = pytest.mark.django_db

PREFIX = "/v6/secret-key/latest"

RATES = {
    "KZT": {"KZT": "1", "USD": "0.00199600798403193612", "EUR": "0.0018", "RUB": "0.2"},
    "USD": {"USD": "1", "KZT": "123456789012.3456789012", "EUR": "0.92"},
    "EUR": {"EUR": "1", "KZT": "550.5", "USD": "1.087", "GBP": "0.85"},
}


def payload(base: str, rates: dict | None = None) -> str:
    """The provider's body, numbers written as JSON numbers (not strings)."""
    numbers = ", ".join(
        f'"{code}": {value}' for code, value in (rates or RATES[base]).items()
    )
    return (
        f'{{"result": "success", "base_code": "{base}", '
        f'"time_last_update_unix": 1700000000, "conversion_rates": {{{numbers}}}}}'
    )


@pytest.fixture
def provider(httpserver, settings):
    """EXCHANGE_RATES_URL pointed at the local server, retries without waiting."""
    settings.EXCHANGE_RATES_URL = httpserver.url_for(PREFIX)
    settings.EXCHANGE_RATES_TIMEOUT = 2.0
    settings.EXCHANGE_RATES_ATTEMPTS = 3
    settings.EXCHANGE_RATES_BACKOFF = 0
    return httpserver


def serve_all(httpserver):
    for base in RATES:
        httpserver.expect_request(f"{PREFIX}/{base}").respond_with_data(
            payload(base), content_type="application/json"
        )


def stored() -> dict[tuple[str, str], Decimal]:
    return {(r.base, r.quote): r.rate for r in ExchangeRate.objects.all()}


def test_refresh_stores_every_pair_between_wallet_currencies_as_exact_decimals(
    provider,
):
    serve_all(provider)
    result = exchange_rates_refresh()
    assert result.ok
    assert stored() == {
        ("KZT", "USD"): Decimal("0.0019960080"),
        ("KZT", "EUR"): Decimal("0.0018000000"),
        # a float would have lost the digits after ...012.34567
        ("USD", "KZT"): Decimal("123456789012.3456789012"),
        ("USD", "EUR"): Decimal("0.9200000000"),
        ("EUR", "KZT"): Decimal("550.5000000000"),
        ("EUR", "USD"): Decimal("1.0870000000"),
    }
    assert sorted(result.updated) == sorted(f"{b}/{q}" for b, q in stored())
    host = f"{provider.host}:{provider.port}"
    assert set(ExchangeRate.objects.values_list("source", flat=True)) == {host}
    # the API key in the URL's path never ends up in the data
    assert "secret-key" not in host


def test_a_server_error_is_retried_and_then_succeeds(provider):
    provider.expect_ordered_request(f"{PREFIX}/USD").respond_with_data("", status=502)
    provider.expect_ordered_request(f"{PREFIX}/USD").respond_with_data("", status=503)
    provider.expect_ordered_request(f"{PREFIX}/USD").respond_with_data(
        payload("USD"), content_type="application/json"
    )
    fetched = rates_fetch(base="USD", quotes=["KZT", "EUR", "USD"])
    assert fetched.rates == {
        "KZT": Decimal("123456789012.3456789012"),
        "EUR": Decimal("0.92"),
    }
    provider.check_assertions()
    assert len(provider.log) == 3


def test_retries_wait_with_exponential_backoff(provider):
    provider.expect_request(f"{PREFIX}/USD").respond_with_data("", status=500)
    waits: list[float] = []
    with pytest.raises(RateProviderError):
        rates_fetch(
            base="USD", quotes=["KZT"], attempts=4, backoff=0.5, sleep=waits.append
        )
    assert waits == [0.5, 1.0, 2.0]
    assert len(provider.log) == 4


def test_a_failed_refresh_keeps_the_last_good_rates_and_logs_why(provider, caplog):
    exchange_rates_store(
        base="USD", rates={"KZT": Decimal("500")}, source="earlier refresh"
    )
    before = ExchangeRate.objects.get(base="USD", quote="KZT")
    provider.expect_request(f"{PREFIX}/USD").respond_with_data("", status=500)
    for base in ("KZT", "EUR"):
        provider.expect_request(f"{PREFIX}/{base}").respond_with_data(
            payload(base), content_type="application/json"
        )

    with caplog.at_level(logging.WARNING):
        result = exchange_rates_refresh()

    assert set(result.failed) == {"USD"}
    assert "HTTP 500" in result.failed["USD"]
    after = ExchangeRate.objects.get(base="USD", quote="KZT")
    assert (after.rate, after.source, after.fetched_at) == (
        before.rate,
        before.source,
        before.fetched_at,
    )
    assert ("EUR", "USD") in stored()  # the other bases were refreshed
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "exchange rate refresh failed for USD" in errors[0]
    assert "keeping the last good rates" in errors[0]
    assert "attempt 3 of 3" in errors[0]
    assert len(provider.log) == 3 + 2


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (404, "not found", "HTTP 404"),
        (200, "<html>oops</html>", "not valid JSON"),
        (200, '{"result": "error", "error-type": "invalid-key"}', "invalid-key"),
        (200, payload("EUR"), "asked for base USD, got 'EUR'"),
        (200, '{"result": "success", "base_code": "USD"}', "conversion_rates"),
        (200, payload("USD", {"KZT": "NaN"}), "not valid JSON"),
        (200, payload("USD", {"KZT": '"500"'}), "not a number"),
        (200, payload("USD", {"KZT": "0"}), "not positive"),
        (200, payload("USD", {"KZT": "-5"}), "not positive"),
        (200, payload("USD", {"KZT": "1e-12"}), "out of range"),
        (200, payload("USD", {"KZT": "1e25"}), "out of range"),
        (200, payload("USD", {"JPY": "150"}), "no usable rates"),
    ],
)
def test_a_bad_answer_is_not_retried_and_stores_nothing(
    provider, status, body, message
):
    provider.expect_request(f"{PREFIX}/USD").respond_with_data(
        body, status=status, content_type="application/json"
    )
    with pytest.raises(RateProviderError, match=message):
        rates_fetch(base="USD", quotes=["KZT", "EUR"])
    assert len(provider.log) == 1
    assert not ExchangeRate.objects.exists()


def test_a_slow_provider_times_out_and_is_retried(provider):
    def slow(request):
        time.sleep(1.0)
        return Response(payload("USD"), content_type="application/json")

    provider.expect_request(f"{PREFIX}/USD").respond_with_handler(slow)
    with pytest.raises(RateProviderError, match=r"unreachable.*attempt 2 of 2"):
        rates_fetch(base="USD", quotes=["KZT"], timeout=0.2, attempts=2)


def test_an_unreachable_provider_fails_cleanly(settings):
    settings.EXCHANGE_RATES_URL = "http://127.0.0.1:9/latest"  # discard port: closed
    settings.EXCHANGE_RATES_BACKOFF = 0
    with pytest.raises(RateProviderError, match="unreachable"):
        rates_fetch(base="USD", quotes=["KZT"])


def test_only_http_urls_are_fetched(settings):
    settings.EXCHANGE_RATES_URL = "file:///etc"
    with pytest.raises(RateProviderError, match="http"):
        rates_fetch(base="USD", quotes=["KZT"])


def test_without_a_configured_url_nothing_is_fetched_or_guessed(settings, caplog):
    settings.EXCHANGE_RATES_URL = ""
    with caplog.at_level(logging.ERROR):
        result = exchange_rates_refresh()
    assert set(result.failed) == set(django_settings.WALLET_CURRENCIES)
    assert "EXCHANGE_RATES_URL is not configured" in caplog.text
    assert not ExchangeRate.objects.exists()


def test_refresh_rates_command(provider):
    serve_all(provider)
    call_command("refresh_rates")
    assert len(stored()) == 6


def test_refresh_rates_command_fails_loudly_when_the_provider_does(provider):
    provider.expect_request(f"{PREFIX}/KZT").respond_with_data("", status=500)
    for base in ("USD", "EUR"):
        provider.expect_request(f"{PREFIX}/{base}").respond_with_data(
            payload(base), content_type="application/json"
        )
    with pytest.raises(CommandError, match=r"KZT: .*HTTP 500"):
        call_command("refresh_rates")
    assert len(stored()) == 4


def test_the_beat_task_runs_the_same_refresh(provider):
    serve_all(provider)
    old = timezone.now() - timedelta(days=3)
    exchange_rates_store(
        base="USD", rates={"KZT": Decimal("1")}, source="old", fetched_at=old
    )
    outcome = exchange_rates_refresh_task.apply().get()
    assert outcome["failed"] == {}
    assert ExchangeRate.objects.get(base="USD", quote="KZT").fetched_at > old
    assert len(stored()) == 6


def test_the_refresh_is_scheduled_hourly_by_default():
    entry = django_settings.CELERY_BEAT_SCHEDULE["wallets-refresh-exchange-rates"]
    assert entry["task"] == exchange_rates_refresh_task.name
    assert entry["schedule"] == timedelta(hours=1)


def test_payload_helper_writes_json_numbers():
    assert isinstance(json.loads(payload("USD"))["conversion_rates"]["EUR"], float)
