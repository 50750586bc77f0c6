"""Top-ups through the payment provider."""

from __future__ import annotations

from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal
from uuid import UUID

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from djmoney.money import Money

from accounts.models import User
from transactions.ledger.errors import (
    InvalidCommission,
    TopupAlreadyDecided,
    TopupExpired,
    TopupNotFound,
)
from transactions.ledger.events import NewEvent, event_record_many, topup_event_data
from transactions.ledger.posting import ledger_post
from transactions.ledger.rules import amount_validate
from transactions.ledger.writer import Leg
from transactions.models import TopUp, Transaction
from wallets.models import Wallet
from wallets.money import minor_digits, money_str, quantum
from wallets.selectors import system_wallet

# --- Top-ups (payment provider) -------------------------------------------------------------
#
# A top-up waits `pending` until the provider decides. `paid` posts ONE `topup`
# transaction: provider -> wallet for the amount and, when there is a commission,
# wallet -> fees for it, so the wallet receives the net amount atomically (and a
# blocked wallet's fee debt is collected from that net amount by ledger_post's hook).
# Decisions lock the top-up row (select_for_update): of two racing decisions exactly
# one wins, the other sees the outcome.

TOPUP_DECISIONS = (TopUp.Status.PAID, TopUp.Status.REJECTED)


def topup_create(
    *, wallet: Wallet, amount: Decimal, initiator: User | None = None
) -> TopUp:
    """A pending top-up of `wallet`; no money moves until the provider pays it.
    A blocked wallet may be topped up: that is how it gets replenished."""
    amount = amount_validate(amount, wallet.currency)
    return TopUp.objects.create(
        wallet=wallet,
        amount=Money(amount, wallet.currency),
        created_by=initiator,
        created_at=timezone.now(),
    )


def topup_commission(
    *, amount: Decimal, currency: str, commission: Decimal | None = None
) -> Decimal:
    """The provider's commission on `amount`: the one it stated, or else
    TOPUP_COMMISSION_PERCENT of the amount, rounded half even to the minor unit.

    A stated commission must lie in [0, amount] and have no more digits than the
    currency allows (never rounded).
    """
    if commission is None:
        percent = settings.TOPUP_COMMISSION_PERCENT
        return (amount * percent / 100).quantize(
            quantum(currency), rounding=ROUND_HALF_EVEN
        )
    if not isinstance(commission, Decimal) or not commission.is_finite():
        raise InvalidCommission()
    if commission < 0 or commission > amount:
        raise InvalidCommission()
    if commission.as_tuple().exponent < -minor_digits(currency):  # type: ignore[operator]  # finite (checked above): an int exponent
        raise InvalidCommission(
            _("%(currency)s amounts have at most %(digits)s decimal places."),
            currency=currency,
            digits=minor_digits(currency),
        )
    return commission.quantize(quantum(currency))


def topup_is_stale(topup: TopUp, now: datetime | None = None) -> bool:
    """Pending for longer than TOPUP_TTL: it may no longer be paid."""
    return topup.created_at < (now or timezone.now()) - settings.TOPUP_TTL


def topup_decide(
    *,
    topup_id: UUID | str,
    status: str,
    decided_by: User | None,
    commission: Decimal | None = None,
    provider_reference: str = "",
) -> TopUp:
    """Record the provider's (or an operator's) decision on a top-up.

    - `paid`: credits the wallet from the `provider` system wallet and moves the
      commission (see `topup_commission`) to the `fees` system wallet, in one
      `topup` transaction recorded on the top-up.
    - `rejected`: nothing moves.
    - The same decision again returns the top-up unchanged (nothing moves, the
      commission and reference of the first decision stand); the other decision
      raises TopupAlreadyDecided (409); any decision on an expired top-up, or on a
      pending one past TOPUP_TTL (which is then expired), raises TopupExpired (409).

    Durable: call it outside any transaction (a view, an admin action, a task).
    """
    if status not in TOPUP_DECISIONS:
        raise ValueError(f"not a top-up decision: {status!r}")
    now = timezone.now()
    with transaction.atomic(durable=True):
        topup = _topup_lock(topup_id)
        if topup.status == status:
            return topup
        if topup.status == TopUp.Status.EXPIRED:
            raise TopupExpired()
        if topup.status != TopUp.Status.PENDING:
            raise TopupAlreadyDecided(status=topup.get_status_display())
        if not topup_is_stale(topup, now):
            if status == TopUp.Status.PAID:
                _topup_pay(topup, commission, provider_reference, decided_by)
            topup.status = status
            topup.provider_reference = provider_reference or topup.provider_reference
            topup.decided_by = decided_by
            topup.decided_at = now
            topup.save(
                update_fields=[
                    "status",
                    "commission",
                    "transaction",
                    "provider_reference",
                    "decided_by",
                    "decided_at",
                ]
            )
            _events([topup], now)
            return topup
        # Past its TTL but not yet swept: expire it now (committed), then refuse.
        topup.status = TopUp.Status.EXPIRED
        topup.decided_at = now
        topup.save(update_fields=["status", "decided_at"])
        _events([topup], now)
    raise TopupExpired()


def _events(topups: list[TopUp], now: datetime) -> None:
    """`topup.<its status>` for each, with the change."""
    event_record_many(
        [
            NewEvent(topup.wallet_id, f"topup.{topup.status}", topup_event_data(topup))
            for topup in topups
        ],
        now=now,
    )


def _topup_lock(topup_id: UUID | str) -> TopUp:
    try:
        # of=("self",): lock the top-up row only; the wallet moves by its own UPDATE.
        return (
            TopUp.objects.select_for_update(of=("self",))
            .select_related("wallet")
            .get(pk=topup_id)
        )
    except (TopUp.DoesNotExist, ValidationError, ValueError):  # or a malformed id
        raise TopupNotFound() from None


def _topup_pay(
    topup: TopUp,
    commission: Decimal | None,
    provider_reference: str,
    decided_by: User | None,
) -> None:
    wallet = topup.wallet
    currency = wallet.currency
    amount = topup.amount.amount
    fee = topup_commission(amount=amount, currency=currency, commission=commission)
    provider = system_wallet(currency, Wallet.SystemCode.PROVIDER)
    legs = [Leg(wallet, amount), Leg(provider, -amount)]
    if fee:
        # Taken from the money arriving in this same transaction (ledger_post
        # applies credits before debits), so a blocked wallet pays it too.
        fees = system_wallet(currency, Wallet.SystemCode.FEES)
        legs += [Leg(wallet, -fee, allow_blocked=True), Leg(fees, fee)]
    posting = ledger_post(
        kind=Transaction.Kind.TOPUP,
        legs=legs,
        initiator=decided_by,
        description="Top-up",
        metadata={
            "topup_id": str(topup.id),
            "provider_reference": provider_reference,
            "amount": money_str(amount, currency),
            "commission": money_str(fee, currency),
            "credited_amount": money_str(amount - fee, currency),
        },
    )
    topup.commission = fee
    topup.transaction = posting.transaction


def topup_expire_stale(*, now: datetime | None = None, batch_size: int = 1000) -> int:
    """Expire every pending top-up older than TOPUP_TTL; returns how many.

    Batches of rows claimed with SKIP LOCKED, each in its own transaction: a
    top-up that a decision holds right now is left to that decision (which
    expires it itself if it is stale).
    """
    now = now or timezone.now()
    cutoff = now - settings.TOPUP_TTL
    expired = 0
    while True:
        with transaction.atomic():
            topups = list(
                TopUp.objects.select_for_update(skip_locked=True)
                .filter(status=TopUp.Status.PENDING, created_at__lt=cutoff)
                .order_by("created_at")[:batch_size]
            )
            if not topups:
                return expired
            expired += TopUp.objects.filter(
                id__in=[topup.id for topup in topups], status=TopUp.Status.PENDING
            ).update(status=TopUp.Status.EXPIRED, decided_at=now)
            for topup in topups:
                topup.status, topup.decided_at = TopUp.Status.EXPIRED, now
            _events(topups, now)
