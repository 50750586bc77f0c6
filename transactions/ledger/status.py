"""Blocking and unblocking a wallet: a change of the status that the one rule
reads (a blocked wallet cannot send money), with its event."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from transactions.ledger.events import event_record_many, wallet_status_event
from wallets.models import Wallet


def wallet_block(*, wallet: Wallet, reason: str) -> Wallet:
    """Block the wallet (`reason` shown to its owner); `wallet.blocked` once."""
    return _status_set(wallet, Wallet.Status.BLOCKED, reason)


def wallet_unblock(*, wallet: Wallet) -> Wallet:
    """Unblock the wallet; `wallet.unblocked` if it was blocked."""
    return _status_set(wallet, Wallet.Status.ACTIVE, "")


def _status_set(wallet: Wallet, status: str, reason: str) -> Wallet:
    now = timezone.now()
    with transaction.atomic():
        locked = Wallet.objects.select_for_update().get(pk=wallet.pk)
        changed = locked.status != status
        if changed or locked.blocked_reason != reason:
            Wallet.objects.filter(pk=wallet.pk).update(
                status=status, blocked_reason=reason, updated_at=now
            )
        wallet.refresh_from_db()
        if changed:
            event_record_many([wallet_status_event(wallet)], now=now)
    return wallet
