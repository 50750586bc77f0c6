"""Reversals: a posted transaction is undone, in full or in part, by a new
`reversal` transaction that mirrors its legs (never by editing it).

- Full: every leg mirrored exactly, less what earlier partial reversals gave
  back, so the reversals of a transaction always add up to it exactly.
- Partial: `amount` is in the currency of the original's first leg (the user
  wallet of a deposit, withdrawal, top-up or fee; the source of a transfer);
  every leg is mirrored in proportion (amount / that leg's amount), rounded
  half-even to its currency, with the remainder of each currency on its last
  leg, so the reversal balances. Conversions are undone at the recorded rate
  (the original's own amounts), the spread included.
- Never above the original: the original's row is locked while a reversal is
  checked and posted, so two reversals racing are checked one after the other
  against what the first left (ReversalExceedsOriginal).
- The reversal points at the original (`reverses`, and in its metadata); the
  original's `reversals` are the way back. A reversal is not reversed
  (ReversalNotAllowed). A debit may come out of a blocked wallet (giving money
  back is not the user sending it) but never below its available balance:
  ReversalInsufficientFunds (409).

Who: operators, requested by one and confirmed by another like adjustments
(`reversal_request` / `reversal_approve` / `reversal_reject`), and the payment
provider for a paid top-up, a chargeback (`topup_reverse`), posted at once.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from uuid import UUID

from django.core.exceptions import ValidationError
from django.db import transaction

from accounts.models import User
from transactions.ledger.adjustments import pending_reject
from transactions.ledger.errors import (
    AdjustmentSameOperator,
    InsufficientFunds,
    InvalidAmount,
    ReasonRequired,
    ReversalExceedsOriginal,
    ReversalInsufficientFunds,
    ReversalNotAllowed,
    TopupNotFound,
    TransactionNotPending,
)
from transactions.ledger.posting import ledger_post
from transactions.ledger.rules import amount_validate
from transactions.ledger.writer import Leg, Posting
from transactions.models import Entry, TopUp, Transaction
from wallets.money import money_str, quantum


@dataclass(frozen=True)
class ReversalPlan:
    """What a reversal of `amount` would post: `legs` aligned with the
    original's entries (zero where nothing moves)."""

    original: Transaction
    entries: list[Entry]
    amount: Decimal
    currency: str
    remaining: Decimal
    legs: list[Decimal]

    def ledger_legs(self) -> list[Leg]:
        return [
            Leg(entry.wallet, amount, allow_blocked=True)
            for entry, amount in zip(self.entries, self.legs, strict=True)
            if amount
        ]

    def metadata(self) -> dict:
        return {
            "reverses": str(self.original.id),
            "reversed_kind": self.original.kind,
            "reversed_amount": money_str(self.amount, self.currency),
            "currency": self.currency,
            "legs": [str(amount) for amount in self.legs],
        }


def _reversed_so_far(original: Transaction) -> list[dict]:
    return list(
        Transaction.objects.filter(
            reverses=original, status=Transaction.Status.POSTED
        ).values_list("metadata", flat=True)
    )


def reversal_plan(original: Transaction, amount: Decimal | None = None) -> ReversalPlan:
    """The legs of a reversal of `amount` (None: everything left) of a posted
    transaction, checked against what its earlier reversals gave back."""
    if original.status != Transaction.Status.POSTED or (
        original.kind == Transaction.Kind.REVERSAL
    ):
        raise ReversalNotAllowed()
    entries = list(original.entries.select_related("wallet").order_by("id"))
    first = entries[0]
    currency, base = str(first.currency), abs(first.amount.amount)
    done = _reversed_so_far(original)
    given_back = [
        sum((Decimal(m["legs"][i]) for m in done), Decimal(0))
        for i in range(len(entries))
    ]
    left = [
        -entry.amount.amount - back
        for entry, back in zip(entries, given_back, strict=True)
    ]
    remaining = base - sum((Decimal(m["reversed_amount"]) for m in done), Decimal(0))
    amount = remaining if amount is None else amount_validate(amount, currency)
    if amount <= 0 or amount > remaining:
        raise ReversalExceedsOriginal(
            remaining=money_str(remaining, currency), currency=currency
        )
    if amount == remaining:
        legs = left
    else:
        legs = _in_proportion(entries, amount / base)
        # Never more back on a leg than is left of it (rounding on many small
        # partial reversals could otherwise pass it by a minor unit).
        if any(
            abs(m) > abs(rest) or m * rest < 0
            for m, rest in zip(legs, left, strict=True)
        ):
            raise InvalidAmount()
    return ReversalPlan(original, entries, amount, currency, remaining, legs)


def _in_proportion(entries: list[Entry], ratio: Decimal) -> list[Decimal]:
    """Each leg mirrored times `ratio`, half-even to its currency; each
    currency's remainder on its last leg, so every currency sums to zero."""
    legs = [
        (-entry.amount.amount * ratio).quantize(
            quantum(str(entry.currency)), ROUND_HALF_EVEN
        )
        for entry in entries
    ]
    by_currency: dict[str, list[int]] = defaultdict(list)
    for i, entry in enumerate(entries):
        by_currency[str(entry.currency)].append(i)
    for indexes in by_currency.values():
        last = indexes[-1]
        legs[last] -= sum(legs[i] for i in indexes)
    return legs


def _lock_original(transaction_id: UUID | str) -> Transaction:
    """The original's row, locked: reversals of one transaction one at a time."""
    try:
        return Transaction.objects.select_for_update().get(pk=transaction_id)
    except (Transaction.DoesNotExist, ValidationError, ValueError):
        raise ReversalNotAllowed() from None


def _post(
    plan: ReversalPlan,
    *,
    initiator: User | None,
    reason: str,
    metadata: dict,
    pending: Transaction | None = None,
) -> Posting:
    try:
        return ledger_post(
            kind=Transaction.Kind.REVERSAL,
            legs=plan.ledger_legs(),
            initiator=initiator,
            description=f"Reversal: {reason}"[:255],
            metadata={**metadata, **plan.metadata(), "reason": reason},
            pending=pending,
            reverses=plan.original,
        )
    except InsufficientFunds:
        raise ReversalInsufficientFunds() from None


def _reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise ReasonRequired()
    return reason


# --- Operators: requested by one, confirmed by another -----------------------------------


def reversal_request(
    *,
    original: Transaction,
    reason: str,
    requested_by: User,
    amount: Decimal | None = None,
) -> Transaction:
    """A PENDING reversal of `amount` (None: all that is left) of `original`;
    nothing moves until a different operator approves it."""
    reason = _reason(reason)
    plan = reversal_plan(original, amount)
    return Transaction.objects.create(
        kind=Transaction.Kind.REVERSAL,
        status=Transaction.Status.PENDING,
        initiator=requested_by,
        description=f"Reversal: {reason}"[:255],
        reverses=original,
        metadata={
            **plan.metadata(),
            "reason": reason,
            "requested_by": str(requested_by.pk),
            "requested_by_email": requested_by.email,
        },
    )


@transaction.atomic(durable=True)
def reversal_approve(*, transaction: Transaction, approved_by: User) -> Posting:
    """Post a pending reversal, checked again against the original as it is
    now (another reversal may have been posted since the request)."""
    if transaction.kind != Transaction.Kind.REVERSAL or transaction.reverses_id is None:
        raise TransactionNotPending()
    metadata = transaction.metadata
    if metadata.get("requested_by") == str(approved_by.pk):
        raise AdjustmentSameOperator()
    original = _lock_original(transaction.reverses_id)
    plan = reversal_plan(original, Decimal(metadata["reversed_amount"]))
    return _post(
        plan,
        initiator=transaction.initiator,
        reason=metadata.get("reason", ""),
        metadata={
            **metadata,
            "approved_by": str(approved_by.pk),
            "approved_by_email": approved_by.email,
        },
        pending=transaction,
    )


def reversal_reject(
    *, transaction: Transaction, rejected_by: User, note: str = ""
) -> Transaction:
    """Decline a pending reversal (the requester may withdraw their own)."""
    return pending_reject(
        transaction, kind=Transaction.Kind.REVERSAL, rejected_by=rejected_by, note=note
    )


# --- The payment provider: a chargeback of a paid top-up ---------------------------------


def topup_reverse(
    *,
    topup_id: UUID | str,
    reason: str,
    initiator: User | None,
    amount: Decimal | None = None,
) -> Posting:
    """Reverse `amount` (None: all that is left) of a paid top-up's
    transaction, posted at once. Not paid (yet): ReversalNotAllowed. Runs in
    the caller's durable block (idempotency_execute) or its own."""
    reason = _reason(reason)
    with transaction.atomic():
        try:
            topup = TopUp.objects.get(pk=topup_id)
        except (TopUp.DoesNotExist, ValidationError, ValueError):
            raise TopupNotFound() from None
        if topup.transaction_id is None:
            raise ReversalNotAllowed()
        original = _lock_original(topup.transaction_id)
        plan = reversal_plan(original, amount)
        return _post(
            plan,
            initiator=initiator,
            reason=reason,
            metadata={"topup_id": str(topup.id), "chargeback": True},
        )
