"""Cash in / cash out (the classic wallet operation) against the currency's
`external` system wallet."""

from __future__ import annotations

from decimal import Decimal

from accounts.models import User
from transactions.ledger.posting import ledger_post
from transactions.ledger.rules import amount_validate
from transactions.ledger.writer import Leg, Posting
from transactions.models import Transaction
from wallets.models import Wallet
from wallets.selectors import system_wallet


def cash_legs(
    wallet: Wallet, amount: Decimal, *, deposit: bool
) -> tuple[str, list[Leg]]:
    """The kind and legs of a DEPOSIT (cash in) or WITHDRAW (cash out) of a
    positive `amount`: the one builder the lone path and the group commit use."""
    amount = amount_validate(amount, wallet.currency)
    signed = amount if deposit else -amount
    external = system_wallet(wallet.currency, Wallet.SystemCode.EXTERNAL)
    kind = Transaction.Kind.DEPOSIT if deposit else Transaction.Kind.WITHDRAWAL
    return kind, [Leg(wallet, signed), Leg(external, -signed)]


def wallet_deposit(
    *, wallet: Wallet, amount: Decimal, initiator: User | None = None
) -> Posting:
    kind, legs = cash_legs(wallet, amount, deposit=True)
    return ledger_post(kind=kind, legs=legs, initiator=initiator)


def wallet_withdraw(
    *, wallet: Wallet, amount: Decimal, initiator: User | None = None
) -> Posting:
    kind, legs = cash_legs(wallet, amount, deposit=False)
    return ledger_post(kind=kind, legs=legs, initiator=initiator)
