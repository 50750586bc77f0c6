"""Client for the exchange-rate provider (exchangerate-api v6 "latest" format).

    GET {EXCHANGE_RATES_URL}/{BASE}
    {"result": "success", "base_code": "USD", "conversion_rates": {"KZT": 500.0, ...}}

Numbers are parsed as Decimal, never float. Network failures, timeouts and 5xx/429
answers are retried with exponential backoff; a 4xx or a malformed answer is not
(retrying will not fix it). Every failure raises RateProviderError with a message
fit for the log; the caller keeps the last good rates.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from urllib.parse import quote, urlsplit

from django.conf import settings

logger = logging.getLogger(__name__)

USER_AGENT = "wallet-rates/1.0"
MAX_RESPONSE_BYTES = 1024 * 1024
# What ExchangeRate.rate (30 digits, 10 decimal places) can hold without rounding to 0.
MIN_RATE = Decimal("0.00000000005")
MAX_RATE = Decimal("1e20")


class RateProviderError(Exception):
    """The provider gave no usable rates for a base currency."""

    def __init__(self, message: str, *, retryable: bool = False):
        super().__init__(message)
        self.retryable = retryable


@dataclass(frozen=True)
class ProviderRates:
    """1 `base` = `rates[quote]` quote, as the provider `source` said."""

    base: str
    rates: dict[str, Decimal]
    source: str


def provider_name(url: str) -> str:
    """The provider's host: the URL's path may hold an API key, never logged."""
    return urlsplit(url).netloc or "rate provider"


def rates_fetch(
    *,
    base: str,
    quotes: Iterable[str],
    url: str | None = None,
    timeout: float | None = None,
    attempts: int | None = None,
    backoff: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> ProviderRates:
    """The provider's rates from `base` to each of `quotes` it knows.

    Tries up to `attempts` times, waiting backoff, 2*backoff, ... between tries.
    """
    url = settings.EXCHANGE_RATES_URL if url is None else url
    timeout = settings.EXCHANGE_RATES_TIMEOUT if timeout is None else timeout
    attempts = settings.EXCHANGE_RATES_ATTEMPTS if attempts is None else attempts
    backoff = settings.EXCHANGE_RATES_BACKOFF if backoff is None else backoff
    if not url:
        raise RateProviderError("EXCHANGE_RATES_URL is not configured")
    if urlsplit(url).scheme not in ("http", "https"):
        raise RateProviderError("EXCHANGE_RATES_URL must be an http(s) URL")
    source = provider_name(url)
    endpoint = f"{url.rstrip('/')}/{quote(base)}"
    wanted = {q for q in quotes if q != base}

    for attempt in range(1, max(attempts, 1) + 1):
        try:
            payload = _get_json(endpoint, timeout)
            return ProviderRates(
                base=base, rates=_parse(payload, base, wanted), source=source
            )
        except RateProviderError as exc:
            if not exc.retryable or attempt >= attempts:
                raise RateProviderError(
                    f"{source}, base {base}: {exc} (attempt {attempt} of {attempts})"
                ) from exc
            delay = backoff * 2 ** (attempt - 1)
            logger.warning(
                "rate provider %s, base %s: %s; retrying in %.1fs (attempt %d of %d)",
                source,
                base,
                exc,
                delay,
                attempt,
                attempts,
            )
            sleep(delay)
    raise AssertionError("unreachable")


def _get_json(endpoint: str, timeout: float) -> object:
    # rates_fetch admits only http(s) URLs
    request = urllib.request.Request(  # noqa: S310
        endpoint, headers={"Accept": "application/json", "User-Agent": USER_AGENT}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            body = response.read(MAX_RESPONSE_BYTES + 1)
    except urllib.error.HTTPError as exc:
        raise RateProviderError(
            f"HTTP {exc.code}", retryable=exc.code >= 500 or exc.code == 429
        ) from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise RateProviderError(
            f"unreachable ({reason or type(exc).__name__})", retryable=True
        ) from None
    if len(body) > MAX_RESPONSE_BYTES:
        raise RateProviderError("response too large")
    try:
        return json.loads(body, parse_float=Decimal, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError):
        raise RateProviderError("response is not valid JSON") from None


def _reject_constant(name: str) -> Decimal:
    raise ValueError(f"{name} is not a rate")


def _parse(payload: object, base: str, wanted: set[str]) -> dict[str, Decimal]:
    if not isinstance(payload, dict):
        raise RateProviderError("response is not a JSON object")
    if payload.get("result") != "success":
        error_type = payload.get("error-type") or payload.get("result")
        raise RateProviderError(f"provider error: {error_type}")
    if payload.get("base_code") != base:
        raise RateProviderError(
            f"asked for base {base}, got {payload.get('base_code')!r}"
        )
    conversion_rates = payload.get("conversion_rates")
    if not isinstance(conversion_rates, dict):
        raise RateProviderError("conversion_rates is missing")
    rates: dict[str, Decimal] = {}
    for code in sorted(wanted):
        value = conversion_rates.get(code)
        if value is None:
            logger.warning("rate provider: no %s -> %s rate in the answer", base, code)
            continue
        if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
            raise RateProviderError(f"{base} -> {code} rate is not a number")
        rate = Decimal(value)
        if not rate.is_finite() or rate <= 0:
            raise RateProviderError(f"{base} -> {code} rate {value} is not positive")
        if not MIN_RATE <= rate < MAX_RATE:
            raise RateProviderError(f"{base} -> {code} rate {value} is out of range")
        rates[code] = rate
    if not rates:
        raise RateProviderError("no usable rates in the answer")
    return rates
