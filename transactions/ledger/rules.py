"""The ledger's rules, stated once: what an amount may be, and when a leg on a
user wallet is refused (and why).

`leg_refusal` is the rule; every path words its refusals with it (a lone
posting, a group-commit batch, the fee run's set-based debits) against the
wallet as it is under its row lock. `GUARD_SQL` is the same rule for a wallet's
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
    if amount.as_tuple().exponent < -minor_digits(currency):  # type: ignore[operator]
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
    status: str,
    amount: Decimal,
    allow_blocked: bool,
) -> DomainError | None:
    """Why a leg of `amount` (signed) on a user wallet cannot move, or None.

    In this order: the wallet is missing (or not a user wallet); a debit from a
    blocked wallet (unless `allow_blocked`: the fee and an operator's
    correction may take from one); the balance would go below zero; it would
    pass MAX_WALLET_BALANCE. A credit to a blocked wallet is allowed: that is how
    it is replenished.
    """
    if not found:
        return WalletNotFound()
    if amount < 0 and status != ACTIVE and not allow_blocked:
        return WalletBlocked()
    if balance + amount < 0:
        return InsufficientFunds()
    if balance + amount > settings.MAX_WALLET_BALANCE:
        return BalanceLimitExceeded()
    return None


# The same rule on a wallet's net change `d.delta` in one statement (`w` the
# wallet row, `d.allow_blocked` true when every debit on it may take from a
# blocked wallet), with %(max_balance)s = MAX_WALLET_BALANCE.
GUARD_SQL = f"""
       w.balance + d.delta >= 0 AND w.balance + d.delta <= %(max_balance)s
       AND (w.status = '{ACTIVE}' OR d.delta >= 0 OR d.allow_blocked)"""
