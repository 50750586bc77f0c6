"""Wallet reads. Read-only: nothing here writes, the system wallets included
(they are created by migrate, wallets.apps). A wallet read with its fee debt is
the fees app's (fees.selectors), a layer above this one."""

import functools
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_DOWN, Decimal, localcontext
from uuid import UUID

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.db.models import QuerySet
from django.utils import timezone

from accounts.models import User
from wallets.errors import RateUnavailable, WalletNotFound
from wallets.models import ExchangeRate, Wallet
from wallets.money import quantum

# (currency, code) -> the system wallet; cleared by the test suite's fixture when
# a transaction=True test's flush has replaced the rows.
_system_wallets: dict[tuple[str, str], Wallet] = {}


@functools.cache
def _wallet_for_user_sql() -> str:
    columns = ", ".join(f.column for f in Wallet._meta.concrete_fields)
    return (
        f"SELECT {columns} FROM {Wallet._meta.db_table} "  # noqa: S608 - model names
        "WHERE id = %s AND owner_id = %s AND kind = %s"
    )


def wallet_get_for_user(*, user: User, wallet_id: UUID | str) -> Wallet:
    """The caller's own wallet; anyone else's (or a malformed id) is a 404.

    Every authenticated wallet request starts here, so it is one plain SELECT by
    primary key: the ORM's `get()` (through django-money's manager) costs twice
    the CPU for the same query (make bench).
    """
    try:
        wallet_uuid = wallet_id if isinstance(wallet_id, UUID) else UUID(wallet_id)
    except (TypeError, ValueError, AttributeError):
        raise WalletNotFound() from None
    pk = Wallet._meta.pk
    params = [
        pk.get_db_prep_value(wallet_uuid, connection),
        pk.get_db_prep_value(user.pk, connection),
        Wallet.Kind.USER.value,
    ]
    wallet = next(iter(Wallet._base_manager.raw(_wallet_for_user_sql(), params)), None)
    if wallet is None:
        raise WalletNotFound()
    return wallet


def wallet_get_by_number(*, number: str) -> Wallet:
    try:
        return Wallet.objects.get(number=number, kind=Wallet.Kind.USER)
    except Wallet.DoesNotExist:
        raise WalletNotFound() from None


def system_wallet(currency: str, code: str) -> Wallet:
    """The system wallet for (currency, code). Every currency in
    WALLET_CURRENCIES has one of each code from migrate on (the post_migrate
    handler, wallets.apps); a missing one is a setup error, never created here.
    Rows never change once created, so each process keeps them after the first
    read."""
    key = (currency, code)
    wallet = _system_wallets.get(key)
    if wallet is None:
        wallet = Wallet.objects.filter(
            kind=Wallet.Kind.SYSTEM, currency=currency, system_code=code
        ).first()
        if wallet is None:
            raise ImproperlyConfigured(
                f"There is no {code} system wallet in {currency}: `manage.py "
                "migrate` creates them for every currency in WALLET_CURRENCIES."
            )
        _system_wallets[key] = wallet
    return wallet


# --- Exchange rates ---------------------------------------------------------------------

RATE_QUANTUM = Decimal("1e-10")  # rates are kept with 10 decimal places
# A converted amount is rounded toward zero, in the house's favour: half-even let a
# user farm money (7.50 KZT -> 0.02 USD -> 10.00 KZT). The monthly fee's conversion
# (fees.services.fee_quote) is not a conversion a user can repeat and stays half-even.
CONVERSION_ROUNDING = ROUND_DOWN
_BPS = Decimal(10000)


@dataclass(frozen=True)
class Conversion:
    """`amount` of `source_currency` is `amount_out` of `target_currency`.

    `gross` is amount x `rate` (1 source = rate target) rounded toward zero to the
    target's minor unit; the house keeps `spread` of it (FX_SPREAD_BPS of the
    converted amount, plus what rounding `amount_out` toward zero leaves), so
    `gross == amount_out + spread`. `as_of` is when the rate was fetched.
    """

    source_currency: str
    target_currency: str
    amount: Decimal
    rate: Decimal
    spread_bps: int
    gross: Decimal
    spread: Decimal
    amount_out: Decimal
    as_of: datetime


def rate_list() -> QuerySet[ExchangeRate]:
    """Every stored rate, fresh or not (callers show `fetched_at`)."""
    return ExchangeRate.objects.order_by("base", "quote")


def rate_get(*, base: str, quote: str, now: datetime | None = None) -> ExchangeRate:
    """The current rate for the pair: one lookup on the (base, quote) unique
    index. No row, or one older than RATE_MAX_AGE, raises RateUnavailable: a
    conversion never uses a guessed or stale rate."""
    rate = ExchangeRate.objects.filter(base=base, quote=quote).first()
    now = now or timezone.now()
    if rate is None or rate.fetched_at < now - settings.RATE_MAX_AGE:
        raise RateUnavailable()
    return rate


def conversion_quote(
    *, source_currency: str, target_currency: str, amount: Decimal
) -> Conversion:
    """Convert `amount` at the current rate, less the spread, rounded toward zero.

    Within one currency: rate 1, no spread. The one place a conversion is
    computed: quotes, transfers and exchanges all come here.
    """
    if source_currency == target_currency:
        rate = Decimal(1).quantize(RATE_QUANTUM)
        return Conversion(
            source_currency=source_currency,
            target_currency=target_currency,
            amount=amount,
            rate=rate,
            spread_bps=0,
            gross=amount,
            spread=Decimal(0).quantize(quantum(target_currency)),
            amount_out=amount,
            as_of=timezone.now(),
        )
    stored = rate_get(base=source_currency, quote=target_currency)
    rate = stored.rate.quantize(RATE_QUANTUM)
    spread_bps = settings.FX_SPREAD_BPS
    unit = quantum(target_currency)
    # Enough digits for the largest amount times the largest rate, exactly: the
    # default 28 would round the product (half-even) before our rounding does.
    with localcontext(prec=80):
        exact = amount * rate
        gross = exact.quantize(unit, rounding=CONVERSION_ROUNDING)
        net = exact * (_BPS - spread_bps) / _BPS
        amount_out = net.quantize(unit, rounding=CONVERSION_ROUNDING)
    return Conversion(
        source_currency=source_currency,
        target_currency=target_currency,
        amount=amount,
        rate=rate,
        spread_bps=spread_bps,
        gross=gross,
        spread=gross - amount_out,
        amount_out=amount_out,
        as_of=stored.fetched_at,
    )


def wallet_reference(reference: str) -> tuple[UUID | None, str | None]:
    """(id, None) or (None, number) for a wallet given by its id or its 16-digit
    number; anything else is WalletNotFound."""
    if len(reference) == 16 and reference.isdigit():
        return None, reference
    try:
        return UUID(reference), None
    except ValueError:
        raise WalletNotFound() from None


def wallet_get_own(*, user: User, reference: str) -> Wallet:
    """The caller's own wallet by id or by its 16-digit number; 404 otherwise."""
    wallet_id, number = wallet_reference(reference)
    if wallet_id is not None:
        return wallet_get_for_user(user=user, wallet_id=wallet_id)
    try:
        return Wallet.objects.get(number=number, owner=user, kind=Wallet.Kind.USER)
    except Wallet.DoesNotExist:
        raise WalletNotFound() from None
