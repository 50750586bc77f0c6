"""Adjustments: an operator's correction, requested by one and approved by
another (the four-eyes rule), posted against the currency's `external` wallet."""

from __future__ import annotations

from decimal import Decimal

from django.db import transaction

from accounts.models import User
from transactions.ledger.errors import (
    AdjustmentSameOperator,
    InsufficientFunds,
    InvalidAmount,
    ReasonRequired,
    TransactionNotPending,
)
from transactions.ledger.posting import ledger_post
from transactions.ledger.rules import amount_validate
from transactions.ledger.writer import Leg, Posting
from transactions.models import Transaction
from wallets.errors import WalletNotFound
from wallets.models import Wallet
from wallets.selectors import system_wallet

# --- Adjustments (operators' two-person corrections, posted from the admin) ---------------
#
# An operator requests an adjustment: a PENDING `adjustment` transaction with no
# entries, whose metadata says what it will do. A different operator approves it,
# and only then does it post (the same row becomes POSTED with its entries and the
# balance change, in one DB transaction) -- or rejects it. The other side of every
# adjustment is the currency's `external` system wallet.


def adjustment_request(
    *, wallet: Wallet, amount: Decimal, reason: str, requested_by: User
) -> Transaction:
    """Ask for a signed `amount` (credit > 0, debit < 0) on a user wallet.

    Nothing moves until another operator approves. A debit larger than the
    current balance is refused now (and checked again when it posts).
    """
    reason = reason.strip()
    if not reason:
        raise ReasonRequired()
    if wallet.kind != Wallet.Kind.USER:
        raise WalletNotFound()
    if not isinstance(amount, Decimal) or not amount.is_finite() or amount == 0:
        raise InvalidAmount()
    amount = amount_validate(abs(amount), wallet.currency).copy_sign(amount)
    wallet.refresh_from_db(fields=["balance", "currency"])
    if amount < 0 and wallet.balance.amount + amount < 0:
        raise InsufficientFunds()
    return Transaction.objects.create(
        kind=Transaction.Kind.ADJUSTMENT,
        status=Transaction.Status.PENDING,
        initiator=requested_by,
        description=reason[:255],
        metadata={
            "wallet_id": str(wallet.pk),
            "wallet_number": wallet.number,
            "amount": str(amount),
            "currency": wallet.currency,
            "reason": reason,
            "requested_by": str(requested_by.pk),
            "requested_by_email": requested_by.email,
        },
    )


@transaction.atomic(durable=True)
def adjustment_approve(*, transaction: Transaction, approved_by: User) -> Posting:
    """Post a pending adjustment: wallet += amount, external -= amount.

    The approver must not be the requester. A debit may come out of a blocked
    wallet (an operator's correction is not the user sending money) but never
    below zero.
    """
    if transaction.kind != Transaction.Kind.ADJUSTMENT:
        raise TransactionNotPending()
    metadata = transaction.metadata
    if metadata.get("requested_by") == str(approved_by.pk):
        raise AdjustmentSameOperator()
    wallet = Wallet.objects.get(pk=metadata["wallet_id"], kind=Wallet.Kind.USER)
    amount = Decimal(metadata["amount"])
    external = system_wallet(wallet.currency, Wallet.SystemCode.EXTERNAL)
    return ledger_post(
        kind=Transaction.Kind.ADJUSTMENT,
        legs=[Leg(wallet, amount, allow_blocked=True), Leg(external, -amount)],
        initiator=transaction.initiator,
        description=transaction.description,
        metadata={
            **metadata,
            "approved_by": str(approved_by.pk),
            "approved_by_email": approved_by.email,
        },
        pending=transaction,
    )


def adjustment_reject(
    *, transaction: Transaction, rejected_by: User, note: str = ""
) -> Transaction:
    """Decline a pending adjustment (the requester may withdraw their own)."""
    return pending_reject(
        transaction,
        kind=Transaction.Kind.ADJUSTMENT,
        rejected_by=rejected_by,
        note=note,
    )


def pending_reject(
    transaction: Transaction, *, kind: str, rejected_by: User, note: str
) -> Transaction:
    """Decline a pending four-eyes request of `kind` (an adjustment or a
    reversal): REJECTED with who and why in its metadata; nothing is posted.
    TransactionNotPending if it is of another kind or no longer pending."""
    if transaction.kind != kind:
        raise TransactionNotPending()
    metadata = {
        **transaction.metadata,
        "rejected_by": str(rejected_by.pk),
        "rejected_by_email": rejected_by.email,
        "rejection_note": note.strip(),
    }
    rejected = Transaction.objects.filter(
        pk=transaction.pk, status=Transaction.Status.PENDING
    ).update(status=Transaction.Status.REJECTED, metadata=metadata)
    if not rejected:
        raise TransactionNotPending()
    transaction.refresh_from_db()
    return transaction
