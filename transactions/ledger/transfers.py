"""Transfers and exchanges: to any user wallet by number, converted across
currencies (wallets.selectors.conversion_quote: the rate less the spread,
rounded toward zero)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.utils.translation import gettext_lazy as _

from accounts.models import User
from transactions.ledger.errors import InvalidAmount, SameWallet
from transactions.ledger.posting import ledger_post
from transactions.ledger.rules import amount_validate
from transactions.ledger.writer import Leg, Posting
from transactions.models import Transaction
from wallets.models import Wallet
from wallets.money import money_str
from wallets.selectors import (
    CONVERSION_ROUNDING,
    Conversion,
    conversion_quote,
    system_wallet,
    wallet_get_by_number,
)


def transfer_create(
    *,
    source: Wallet,
    destination_number: str,
    amount: Decimal,
    initiator: User | None = None,
    description: str = "",
) -> Posting:
    """Send `amount` (in the source's currency) to any user wallet by number.

    Across currencies the amount is converted at the current rate (never a stale
    or guessed one: RateUnavailable) less FX_SPREAD_BPS, rounded toward zero
    (`conversion_quote`); see `transfer_legs` for the legs. Between two wallets
    of one owner that is an `exchange`, otherwise a `transfer`. A blocked source
    cannot send (WalletBlocked); a blocked destination receives, which is how it
    is replenished. Both user wallets change in this one DB transaction, in id
    order (ledger_post).
    """
    amount = amount_validate(amount, source.currency)
    destination = wallet_get_by_number(number=destination_number)
    if destination.id == source.id:
        raise SameWallet()
    conversion = conversion_quote(
        source_currency=source.currency,
        target_currency=destination.currency,
        amount=amount,
    )
    kind, legs, metadata = transfer_legs(source, destination, conversion)
    return ledger_post(
        kind=kind,
        legs=legs,
        initiator=initiator,
        description=description,
        metadata=metadata,
    )


def transfer_legs(
    source: Wallet, destination: Wallet, conversion: Conversion
) -> tuple[str, list[Leg], dict[str, Any]]:
    """The kind, legs (in entry order) and metadata of a transfer or exchange:
    the one builder both the lone path and the group commit use.

    Within one currency: source -> destination. Across currencies each currency
    balances on its own through its `fx` system wallet, and the spread is a leg
    of its own to the target currency's `fees` system wallet:
    source -amount, fx(source) +amount, fx(target) -gross,
    fees(target) +spread, destination +amount_out.
    """
    amount, credited = conversion.amount, conversion.amount_out
    if credited <= 0:
        raise InvalidAmount(
            _("The amount is too small to convert to %(currency)s."),
            currency=destination.currency,
        )
    converted = source.currency != destination.currency
    target = destination.currency
    if converted:
        legs = [
            Leg(source, -amount),
            Leg(system_wallet(source.currency, Wallet.SystemCode.FX), amount),
            Leg(system_wallet(target, Wallet.SystemCode.FX), -conversion.gross),
        ]
        if conversion.spread:
            fees = system_wallet(target, Wallet.SystemCode.FEES)
            legs.append(Leg(fees, conversion.spread))
        legs.append(Leg(destination, credited))
    else:
        legs = [Leg(source, -amount), Leg(destination, amount)]
    kind = (
        Transaction.Kind.EXCHANGE
        if converted and source.owner_id == destination.owner_id
        else Transaction.Kind.TRANSFER
    )
    metadata = {
        "from_wallet": source.number,
        "to_wallet": destination.number,
        "amount": money_str(amount, source.currency),
        "currency": source.currency,
        "credited_amount": money_str(credited, target),
        "credited_currency": target,
        "rate": str(conversion.rate),
        "spread_bps": conversion.spread_bps,
        "spread": money_str(conversion.spread, target),
    }
    if converted:
        metadata["rate_as_of"] = conversion.as_of.isoformat()
        metadata["rounding"] = CONVERSION_ROUNDING
    return kind, legs, metadata
