"""The ledger's rules, stated once: what an amount may be, and when a leg on a
user wallet is refused (and why).

`leg_refusal` is the rule; every path words its refusals with it (a lone
posting, a group-commit batch, the fee run's set-based debits, holds) against
the wallet as it is under its row lock. Every debit needs the AVAILABLE balance:
the balance less the money held (Wallet.held). `GUARD_SQL` is the same rule for a wallet's
net change in SQL: the writer's UPDATE carries it, so a balance can only move
the way the rule allows even if a caller forgot to check (its statement then
rolls back; see writer.py).
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.utils.translation import gettext_lazy as _

from transactions.ledger.errors import (
    BalanceLimitExceeded,
    InsufficientFunds,
    InvalidAmount,
    WalletBlocked,
)
from wallet_project.errors import DomainError
from wallets.errors import UnsupportedCurrency, WalletNotFound
from wallets.money import minor_digits, quantum

ACTIVE = "active"  # Wallet.Status.ACTIVE (wallets.models), as the SQL spells it


def amount_validate(amount: Decimal, currency: str) -> Decimal:
    """A positive, finite amount with no more digits than the currency allows.

    Never rounds: `1.001` KZT is an error, not 1.00.
    """
    if currency not in settings.WALLET_CURRENCIES:
        raise UnsupportedCurrency()
    if not isinstance(amount, Decimal) or not amount.is_finite():
        raise InvalidAmount()
    if amount <= 0:
        raise InvalidAmount(_("The amount must be greater than zero."))
    if amount > settings.MAX_OPERATION_AMOUNT:
        raise InvalidAmount(
            _("The amount must not exceed %(max)s."), max=settings.MAX_OPERATION_AMOUNT
        )
    if amount.as_tuple().exponent < -minor_digits(currency):  # type: ignore[operator]  # finite (checked above): an int exponent
        raise InvalidAmount(
            _("%(currency)s amounts have at most %(digits)s decimal places."),
            currency=currency,
            digits=minor_digits(currency),
        )
    return amount.quantize(quantum(currency))


def leg_refusal(
    *,
    found: bool,
    balance: Decimal,
    held: Decimal,
    status: str,
    amount: Decimal,
    hold: Decimal = Decimal(0),
    allow_blocked: bool,
) -> DomainError | None:
    """Why a leg on a user wallet cannot move, or None. The leg changes the
    balance by `amount` and the money held by `hold` (both signed): a payment
    is `amount` < 0, a new hold `hold` > 0, a capture both negative.

    In this order: the wallet is missing (or not a user wallet); a debit or a
    new hold on a blocked wallet (unless `allow_blocked`: the fee, an operator's
    correction and the capture or release of money held before may take from
    one); the AVAILABLE balance (balance - held) would go below zero; the
    balance would pass MAX_WALLET_BALANCE. A credit to a blocked wallet is
    allowed: that is how it is replenished.
    """
    if not found:
        return WalletNotFound()
    if (amount < 0 or hold > 0) and status != ACTIVE and not allow_blocked:
        return WalletBlocked()
    if balance + amount - (held + hold) < 0:
        return InsufficientFunds()
    if balance + amount > settings.MAX_WALLET_BALANCE:
        return BalanceLimitExceeded()
    return None


# The same rule on a wallet's net change in one statement (`w` the wallet row,
# `d.delta` and `d.held_delta` the changes of its balance and of the money held,
# `d.allow_blocked` true when every debit and new hold on it may take from a
# blocked wallet), with %(max_balance)s = MAX_WALLET_BALANCE.
GUARD_SQL = f"""
       w.balance + d.delta - (w.held + d.held_delta) >= 0
       AND w.held + d.held_delta >= 0
       AND w.balance + d.delta <= %(max_balance)s
       AND (w.status = '{ACTIVE}' OR (d.delta >= 0 AND d.held_delta <= 0)
            OR d.allow_blocked)"""
