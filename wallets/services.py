import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from django.apps import apps as global_apps
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, IntegrityError, transaction
from django.utils import timezone
from djmoney.money import Money

from accounts.models import User
from wallets.errors import UnsupportedCurrency, WalletExists
from wallets.models import ExchangeRate, Wallet
from wallets.numbers import generate_number
from wallets.rates import RateProviderError, rates_fetch
from wallets.selectors import RATE_QUANTUM

logger = logging.getLogger(__name__)

_NUMBER_ATTEMPTS = 5
# A new user's first wallet, opened by the sign-up (the hook in wallets.apps).
SIGNUP_WALLET_CURRENCY = "KZT"


def wallet_create(
    *, owner: User, currency: str, name: str = "", now: datetime | None = None
) -> Wallet:
    """Open the owner's wallet in `currency` (one per currency); the first fee is
    due one fee period after creation."""
    if currency not in settings.WALLET_CURRENCIES:
        raise UnsupportedCurrency()
    now = now or timezone.now()
    for attempt in range(_NUMBER_ATTEMPTS):
        try:
            with transaction.atomic():
                return Wallet.objects.create(
                    owner=owner,
                    kind=Wallet.Kind.USER,
                    currency=currency,
                    balance=Money(0, currency),
                    name=name,
                    number=generate_number(),
                    next_fee_at=now + settings.FEE_PERIOD,
                )
        except IntegrityError as exc:
            if "wallet_one_user_wallet_per_currency" in str(exc) or (
                Wallet.objects.filter(
                    owner=owner, currency=currency, kind=Wallet.Kind.USER
                ).exists()
            ):
                raise WalletExists() from None
            if attempt == _NUMBER_ATTEMPTS - 1:  # a number collision every time
                raise
    raise AssertionError("unreachable")


def wallet_update(*, wallet: Wallet, name: str | None = None) -> Wallet:
    """Change the given fields (None: unchanged); with none given, nothing is
    written and `updated_at` stays as it was."""
    if name is None:
        return wallet
    wallet.name = name
    wallet.save(update_fields=["name", "updated_at"])
    return wallet


def system_wallets_ensure(
    *, currencies: Iterable[str], using: str = DEFAULT_DB_ALIAS
) -> None:
    """Create the missing system wallets (external, fees, fx, provider) per
    currency; one query when none is missing."""
    currencies = list(currencies)
    wallets = Wallet.objects.using(using)
    existing = set(
        wallets.filter(kind=Wallet.Kind.SYSTEM, currency__in=currencies).values_list(
            "currency", "system_code"
        )
    )
    for currency in currencies:
        for code in Wallet.SystemCode.values:
            if (currency, code) in existing:
                continue
            try:
                with transaction.atomic(using=using):
                    wallets.create(
                        kind=Wallet.Kind.SYSTEM,
                        system_code=code,
                        currency=currency,
                        balance=Money(0, currency),
                        number=generate_number(),
                        name=f"System: {code} {currency}",
                    )
            except IntegrityError:  # created concurrently
                pass


def system_wallets_post_migrate(
    sender, using: str = DEFAULT_DB_ALIAS, apps=global_apps, **kwargs
) -> None:
    """post_migrate (wallets.apps): every currency in WALLET_CURRENCIES has its
    system wallets after any migrate, and after any flush, which sends
    post_migrate too (a transaction=True test's teardown). Skipped while the
    wallets app has no tables yet (migrate to zero)."""
    try:
        apps.get_model("wallets", "Wallet")
    except LookupError:
        return
    system_wallets_ensure(currencies=settings.WALLET_CURRENCIES, using=using)


# --- Exchange rates ---------------------------------------------------------------------


def exchange_rates_store(
    *,
    base: str,
    rates: Mapping[str, Decimal],
    source: str,
    fetched_at: datetime | None = None,
) -> list[ExchangeRate]:
    """Replace the stored rates base -> quote for every quote in `rates`, in one
    statement (an upsert on the (base, quote) unique index)."""
    fetched_at = fetched_at or timezone.now()
    rows = [
        ExchangeRate(
            base=base,
            quote=quote,
            rate=Decimal(rate).quantize(RATE_QUANTUM),
            source=source,
            fetched_at=fetched_at,
        )
        for quote, rate in sorted(rates.items())
    ]
    with transaction.atomic():
        return ExchangeRate.objects.bulk_create(
            rows,
            update_conflicts=True,
            unique_fields=["base", "quote"],
            update_fields=["rate", "source", "fetched_at"],
        )


def exchange_rate_set(
    *, base: str, quote: str, rate: Decimal, source: str = "manual"
) -> ExchangeRate:
    """An operator's rate for one pair, fresh from now (the admin's write path)."""
    return exchange_rates_store(base=base, rates={quote: rate}, source=source)[0]


@dataclass
class RatesRefresh:
    """What one refresh did: pairs updated and, per base that failed, why."""

    updated: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failed


def exchange_rates_refresh(*, currencies: Iterable[str] | None = None) -> RatesRefresh:
    """Fetch the provider's rates between the wallet currencies and store them.

    One request per base currency. A base whose fetch fails is logged and keeps
    its last good rates (which expire after RATE_MAX_AGE); the others are stored.
    `manage.py refresh_rates` and the beat task both call this.
    """
    currencies = list(currencies or settings.WALLET_CURRENCIES)
    result = RatesRefresh()
    for base in currencies:
        try:
            fetched = rates_fetch(base=base, quotes=currencies)
        except RateProviderError as exc:
            logger.error(
                "exchange rate refresh failed for %s, keeping the last good rates: %s",
                base,
                exc,
            )
            result.failed[base] = str(exc)
            continue
        stored = exchange_rates_store(
            base=base, rates=fetched.rates, source=fetched.source
        )
        result.updated.extend(f"{r.base}/{r.quote}" for r in stored)
    if result.updated:
        logger.info("exchange rates refreshed: %s", ", ".join(result.updated))
    return result
