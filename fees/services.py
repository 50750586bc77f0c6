"""The monthly fee: charging due wallets, blocking, debt collection and waivers.

Lock order everywhere: the wallet row first, then its fee charges. The ledger
takes the wallet row with its conditional UPDATE before it calls
`fee_debt_collect`, the charge run and `fee_charge_waive` take it with
`select_for_update()`, so no two of them wait on each other in a cycle.

Fee postings only ever DEBIT the user wallet (and credit the `fees` system
wallet, which the ledger never updates), so collecting a debt from inside the
ledger's credit hook cannot trigger the hook again.
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, cast
from uuid import UUID

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from djmoney.money import Money

from accounts.models import User
from fees.errors import FeeChargeNotWaivable
from fees.models import FeeCharge
from transactions.ledger import (
    Debit,
    Leg,
    NewEvent,
    event_record_many,
    fee_event_data,
    ledger_debit_many,
    ledger_post,
    wallet_event_data,
)
from transactions.models import Event, Transaction
from wallet_project import metrics
from wallets.errors import RateUnavailable
from wallets.models import Wallet
from wallets.money import quantum
from wallets.selectors import RATE_QUANTUM, rate_get, system_wallet

logger = logging.getLogger(__name__)

# Stored in Wallet.blocked_reason (data, not a UI string: the API shows it as is).
# Only a wallet blocked with exactly this reason is unblocked when its debt is
# gone; a wallet an operator blocked for another reason stays blocked.
FEE_BLOCK_REASON = "Unpaid monthly fee"


@dataclass(frozen=True)
class FeeQuote:
    """The fee in one wallet currency; `rate` is None when no conversion."""

    amount: Decimal
    currency: str
    rate: Decimal | None = None


def fee_quote(*, currency: str) -> FeeQuote:
    """FEE_AMOUNT FEE_CURRENCY in `currency`, at the current rate, rounded half
    to even to the minor unit. Raises RateUnavailable without a fresh rate."""
    if currency == settings.FEE_CURRENCY:
        return FeeQuote(settings.FEE_AMOUNT.quantize(quantum(currency)), currency)
    # Not conversion_quote: the fee is the house's own charge, so no spread, and it
    # rounds half to even (a user cannot repeat it to farm the rounding).
    rate = rate_get(base=settings.FEE_CURRENCY, quote=currency).rate
    rate = rate.quantize(RATE_QUANTUM)
    amount = (settings.FEE_AMOUNT * rate).quantize(
        quantum(currency), rounding=ROUND_HALF_EVEN
    )
    return FeeQuote(amount, currency, rate)


@dataclass
class FeeRunSummary:
    """What one run of `fee_charge_due` did (or, with dry_run, would do)."""

    as_of: datetime
    dry_run: bool = False
    wallets: int = 0  # wallets this run charged (one or more periods each)
    charged: int = 0  # periods paid on the spot
    debts: int = 0  # periods recorded as debt (nothing moved)
    blocked: int = 0  # wallets this run blocked
    collected: int = 0  # older debts the run collected before a new period
    skipped: int = 0  # wallets left due (no fresh rate): retried next run
    totals: dict[str, Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    debt_totals: dict[str, Decimal] = field(
        default_factory=lambda: defaultdict(Decimal)
    )

    def as_dict(self) -> dict[str, Any]:
        return {
            "as_of": self.as_of.isoformat(),
            "dry_run": self.dry_run,
            "wallets": self.wallets,
            "charged": self.charged,
            "debts": self.debts,
            "blocked": self.blocked,
            "collected": self.collected,
            "skipped": self.skipped,
            "totals": {c: str(a) for c, a in sorted(self.totals.items())},
            "debt_totals": {c: str(a) for c, a in sorted(self.debt_totals.items())},
        }


def fee_posting_text(
    *,
    period_start: datetime,
    amount: Decimal,
    currency: str,
    rate: Decimal | None,
    collected_debt: bool,
) -> tuple[str, dict[str, Any]]:
    """The description and metadata of one period's `fee` transaction: the one
    builder for a fee paid in the run (set-based) and a debt collected later."""
    return f"Monthly fee from {period_start:%Y-%m-%d}", {
        "fee_period_start": period_start.isoformat(),
        "fee_amount": str(settings.FEE_AMOUNT),
        "fee_currency": settings.FEE_CURRENCY,
        "amount": str(amount),
        "currency": currency,
        "rate": None if rate is None else str(rate),
        "collected_debt": collected_debt,
    }


@dataclass
class _Settlement:
    balance: Decimal
    paid: list[FeeCharge]
    outstanding: list[FeeCharge]


def _settle(
    wallet: Wallet, balance: Decimal, charges: Iterable[FeeCharge], now: datetime
) -> _Settlement:
    """Pay `charges` (oldest first) from the locked wallet while its available
    balance (`balance` less the money held) covers the next one; stop at the
    first it does not cover, so a newer fee is never paid before an older
    debt. Money held for a payout is out of the fee's reach."""
    fees_wallet = system_wallet(wallet.currency, Wallet.SystemCode.FEES)
    result = _Settlement(balance, [], [])
    for charge in charges:
        amount = charge.amount.amount
        if result.outstanding or amount > result.balance - wallet.held:
            result.outstanding.append(charge)
            continue
        description, metadata = fee_posting_text(
            period_start=charge.period_start,
            amount=amount,
            currency=wallet.currency,
            rate=charge.rate,
            collected_debt=charge.pk is not None,
        )
        posting = ledger_post(
            kind=Transaction.Kind.FEE,
            legs=[
                Leg(wallet, -amount, allow_blocked=True),
                Leg(fees_wallet, amount),
            ],
            description=description,
            metadata=metadata,
        )
        result.balance = posting.balances[wallet.id]
        charge.status = FeeCharge.Status.PAID
        charge.transaction = posting.transaction
        charge.paid_at = now
        result.paid.append(charge)
    return result


def _wallet_state_after(wallet: Wallet, has_debt: bool) -> tuple[str, str, bool]:
    """(status, blocked_reason, newly_blocked) once the debts are settled."""
    if has_debt:
        if wallet.status == Wallet.Status.ACTIVE:
            return Wallet.Status.BLOCKED, FEE_BLOCK_REASON, True
        return wallet.status, wallet.blocked_reason, False
    if wallet.status == Wallet.Status.BLOCKED and wallet.blocked_reason == (
        FEE_BLOCK_REASON
    ):
        return Wallet.Status.ACTIVE, "", False
    return wallet.status, wallet.blocked_reason, False


def _mark_paid(charges: Iterable[FeeCharge], now: datetime) -> None:
    for charge in charges:
        FeeCharge.objects.filter(pk=charge.pk).update(
            status=FeeCharge.Status.PAID,
            transaction=charge.transaction,
            paid_at=charge.paid_at,
            updated_at=now,
        )


def _collect_locked(wallet: Wallet) -> Decimal | None:
    """Collect the locked wallet's outstanding debt (oldest first) and unblock
    it when none is left. Returns the new balance when anything was paid."""
    debts = list(
        FeeCharge.objects.select_for_update()
        .filter(wallet=wallet, status=FeeCharge.Status.DEBT)
        .order_by("period_start")
    )
    now = timezone.now()
    settlement = _settle(wallet, wallet.balance.amount, debts, now)
    _mark_paid(settlement.paid, now)
    status, reason, _blocked = _wallet_state_after(wallet, bool(settlement.outstanding))
    if (status, reason) != (wallet.status, wallet.blocked_reason):
        Wallet.objects.filter(pk=wallet.pk).update(
            status=status, blocked_reason=reason, updated_at=now
        )
    _events(wallet, settlement.paid, status, reason, now)
    return settlement.balance if settlement.paid else None


def _charge_event(charge: FeeCharge) -> NewEvent:
    return NewEvent(
        charge.wallet_id,
        Event.Type.FEE_CHARGED,
        fee_event_data(
            wallet_id=charge.wallet_id,
            period_start=charge.period_start,
            amount=charge.amount.amount,
            currency=charge.amount.currency.code,
            status=charge.status,
            transaction_id=charge.transaction_id,
        ),
    )


def _events(
    wallet: Wallet,
    charges: Iterable[FeeCharge],
    status: str,
    reason: str,
    now: datetime,
) -> None:
    """`fee.charged` for each charge made or paid, then the wallet's
    `wallet.blocked`/`unblocked` if its status changed (it is locked)."""
    events = [_charge_event(charge) for charge in charges]
    if status != wallet.status:
        events.append(
            NewEvent(
                wallet.id,
                Event.Type.WALLET_BLOCKED
                if status == Wallet.Status.BLOCKED
                else Event.Type.WALLET_UNBLOCKED,
                wallet_event_data(
                    wallet_id=wallet.id,
                    number=wallet.number,
                    currency=str(wallet.currency),
                    status=status,
                    blocked_reason=reason,
                ),
            )
        )
    event_record_many(events, now=now)


def fee_debt_collect(*, wallet: Wallet) -> Decimal | None:
    """The ledger's hook after a credit to a blocked wallet: in the same DB
    transaction, pay the wallet's fee debts oldest first while the balance
    covers them, and unblock it once no debt is left (only when it was blocked
    for the fee). Returns the wallet's new balance, or None when nothing was
    collected."""
    with transaction.atomic(savepoint=False):
        locked = Wallet.objects.select_for_update().get(pk=wallet.pk)
        return _collect_locked(locked)


def fee_charge_waive(*, charge: FeeCharge, waived_by: User, reason: str) -> FeeCharge:
    """An operator forgives one outstanding debt: the charge becomes `waived`
    (who, why and when are kept on it), the wallet's remaining debts are
    collected if its balance now covers them, and it is unblocked once no debt
    is left. Raises FeeChargeNotWaivable unless the charge is a debt, and
    ValidationError without a reason."""
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError(_("A reason is required to waive a fee."))
    with transaction.atomic():
        wallet = Wallet.objects.select_for_update().get(pk=charge.wallet_id)
        locked = FeeCharge.objects.select_for_update().get(pk=charge.pk)
        if locked.status != FeeCharge.Status.DEBT:
            raise FeeChargeNotWaivable()
        now = timezone.now()
        locked.status = FeeCharge.Status.WAIVED
        locked.waived_by = waived_by
        locked.waived_reason = reason[:255]
        locked.waived_at = now
        locked.save(
            update_fields=[
                "status",
                "waived_by",
                "waived_reason",
                "waived_at",
                "updated_at",
            ]
        )
        _collect_locked(wallet)
    logger.info(
        "fee charge %s on wallet %s waived by %s: %s",
        locked.pk,
        wallet.number,
        waived_by,
        reason,
    )
    return locked


# --- The charge run -----------------------------------------------------------------------


class _Skip(Exception):
    """Leave this wallet due: it is retried next run."""


class _DryRun(Exception):
    """Roll back one wallet's work after measuring it."""


def _periods_due(
    next_fee_at: datetime, as_of: datetime
) -> tuple[list[datetime], datetime]:
    periods = []
    due = next_fee_at
    while due <= as_of:
        periods.append(due)
        due += settings.FEE_PERIOD
    return periods, due


def _charge_wallet(
    wallet_id: UUID,
    *,
    as_of: datetime,
    quote_for: Callable[[str], FeeQuote],
    summary: FeeRunSummary,
    wait: bool,
) -> bool | None:
    """Charge every period of one wallet due by `as_of`, in one DB transaction.

    Returns True when charged, False when the wallet is left due (no rate),
    None when another worker holds it (wait=False) or already charged it.
    """
    outcome = FeeRunSummary(as_of=as_of)
    try:
        with transaction.atomic(durable=True):
            wallet = (
                Wallet.objects.select_for_update(skip_locked=not wait)
                .filter(pk=wallet_id, kind=Wallet.Kind.USER, next_fee_at__lte=as_of)
                .first()
            )
            if wallet is None or wallet.next_fee_at is None:
                return None
            try:
                quote = quote_for(wallet.currency)
            except RateUnavailable:
                raise _Skip from None
            periods, next_fee_at = _periods_due(wallet.next_fee_at, as_of)
            # Older debts, and any charge already made for these periods (only
            # possible if next_fee_at was moved back by hand): never twice.
            existing = list(
                FeeCharge.objects.select_for_update()
                .filter(wallet=wallet)
                .filter(
                    Q(status=FeeCharge.Status.DEBT)
                    | Q(period_start__gte=wallet.next_fee_at)
                )
                .order_by("period_start")
            )
            done = {charge.period_start for charge in existing}
            new = [
                FeeCharge(
                    wallet=wallet,
                    period_start=period,
                    amount=Money(quote.amount, quote.currency),
                    rate=quote.rate,
                    status=FeeCharge.Status.DEBT,
                )
                for period in periods
                if period not in done
            ]
            debts = [c for c in existing if c.status == FeeCharge.Status.DEBT]
            now = timezone.now()
            settlement = _settle(wallet, wallet.balance.amount, [*debts, *new], now)
            collected = [c for c in settlement.paid if c.pk is not None]
            _mark_paid(collected, now)
            FeeCharge.objects.bulk_create(new)
            status, reason, newly_blocked = _wallet_state_after(
                wallet, bool(settlement.outstanding)
            )
            Wallet.objects.filter(pk=wallet.pk).update(
                next_fee_at=next_fee_at,
                status=status,
                blocked_reason=reason,
                updated_at=now,
            )
            _events(wallet, [*collected, *new], status, reason, now)
            outcome.wallets = 1
            outcome.blocked = int(newly_blocked)
            outcome.collected = len(collected)
            outcome.charged = len(settlement.paid) - len(collected)
            outcome.debts = sum(c.status == FeeCharge.Status.DEBT for c in new)
            for charge in settlement.paid:
                outcome.totals[charge.amount.currency.code] += charge.amount.amount
            for charge in new:
                if charge.status == FeeCharge.Status.DEBT:
                    outcome.debt_totals[quote.currency] += charge.amount.amount
            if summary.dry_run:
                raise _DryRun
    except _Skip:
        summary.skipped += 1
        return False
    except _DryRun:
        pass
    except IntegrityError as exc:
        if "feecharge_one_per_period" not in str(exc):
            raise
        # The unique (wallet, period_start) constraint: someone else charged a
        # period we computed. Nothing of ours was kept; the wallet is next run's.
        logger.warning("fee run: wallet %s was charged concurrently", wallet_id)
        return None
    _merge(summary, outcome)
    return True


def _merge(summary: FeeRunSummary, outcome: FeeRunSummary) -> None:
    summary.wallets += outcome.wallets
    summary.charged += outcome.charged
    summary.debts += outcome.debts
    summary.blocked += outcome.blocked
    summary.collected += outcome.collected
    for currency, amount in outcome.totals.items():
        summary.totals[currency] += amount
    for currency, amount in outcome.debt_totals.items():
        summary.debt_totals[currency] += amount


@dataclass(frozen=True)
class _Due:
    """A claimed wallet in the common case: active, exactly one period due, no
    debt and no charge made yet for that period."""

    wallet_id: UUID
    number: str
    period_start: datetime
    quote: FeeQuote


_INSERT_CHARGES_SQL = """
INSERT INTO fees_feecharge
       (wallet_id, period_start, currency, amount, rate, status, transaction_id,
        paid_at, waived_reason, created_at, updated_at)
SELECT v.wallet_id, v.period_start, v.currency, v.amount, v.rate, v.status,
       v.transaction_id, v.paid_at, '', %(now)s, %(now)s
  FROM jsonb_to_recordset(%(charges)s::jsonb)
       AS v (n int, wallet_id uuid, period_start timestamptz, currency varchar,
             amount numeric, rate numeric, status varchar, transaction_id uuid,
             paid_at timestamptz)
 ORDER BY v.n
"""

_ADVANCE_WALLETS_SQL = """
UPDATE wallets_wallet AS w
   SET next_fee_at = v.next_fee_at,
       status = CASE WHEN v.block THEN %(blocked)s ELSE w.status END,
       blocked_reason = CASE WHEN v.block THEN %(reason)s ELSE w.blocked_reason END,
       updated_at = %(now)s
  FROM jsonb_to_recordset(%(wallets)s::jsonb)
       AS v (id uuid, next_fee_at timestamptz, block boolean)
 WHERE w.id = v.id
"""


_WITH_CHARGES_SQL = """
SELECT v.id
  FROM unnest(string_to_array(%(ids)s, ',')::uuid[]) AS v (id)
  JOIN wallets_wallet w ON w.id = v.id
 WHERE EXISTS (SELECT 1 FROM fees_feecharge c
                WHERE c.wallet_id = w.id
                  AND (c.status = %(debt)s OR c.period_start >= w.next_fee_at))
"""


def _with_charges(wallet_ids: list[UUID]) -> set[UUID]:
    """Which of these (locked) wallets owe a fee or already have a charge for
    the period now due: the charges `_charge_wallet` looks at. Read under the
    row locks, because charges are only made or changed by someone holding the
    wallet's lock. Driven by the ids, one index probe each, whatever the
    planner knows about the charges table (a fresh one has no statistics)."""
    ids = ",".join(str(wallet_id) for wallet_id in wallet_ids)
    with connection.cursor() as cursor:
        cursor.execute(_WITH_CHARGES_SQL, {"ids": ids, "debt": FeeCharge.Status.DEBT})
        return {row[0] for row in cursor.fetchall()}


def _charge_batch(
    *,
    as_of: datetime,
    after: UUID | None,
    size: int,
    quote_for: Callable[[str], FeeQuote],
    summary: FeeRunSummary,
) -> tuple[list[UUID], list[UUID]]:
    """Claim the next `size` due wallets by id that no other worker holds (FOR
    UPDATE SKIP LOCKED) and, in that one DB transaction, charge every one in the
    common case (`_Due`) set-based: the payers through one `ledger_debit_many`
    statement, then one INSERT of all the charges (paid or debt) and one UPDATE
    of the wallets (next_fee_at, and blocked with FEE_BLOCK_REASON when it
    cannot pay). The rules are `_charge_wallet`'s; a wallet in a currency with
    no fresh rate is skipped.

    Returns (claimed ids, the ids left to `_charge_wallet`): any other case
    (several periods due, older debts, a charge already made for the period, a
    blocked wallet), or everything claimed when the unique (wallet,
    period_start) guard fired and the batch was rolled back.
    """
    outcome = FeeRunSummary(as_of=as_of)
    claimed: list[UUID] = []
    unusual: list[UUID] = []
    try:
        with transaction.atomic(durable=True):
            due = Wallet.objects.select_for_update(skip_locked=True).filter(
                kind=Wallet.Kind.USER, next_fee_at__lte=as_of
            )
            if after is not None:
                due = due.filter(pk__gt=after)
            # A MoneyField's column reads as its Decimal amount in values_list
            # (the stub types the attribute, a Money), and next_fee_at__lte
            # leaves no NULL next_fee_at.
            rows = cast(
                list[tuple[UUID, str, str, Decimal, Decimal, str, datetime]],
                list(
                    due.order_by("pk").values_list(
                        "pk",
                        "number",
                        "currency",
                        "balance",
                        "held",
                        "status",
                        "next_fee_at",
                    )[:size]
                ),
            )
            claimed = [row[0] for row in rows]
            if not claimed:
                return [], []
            with_charges = _with_charges(claimed)
            payers: list[_Due] = []
            debtors: list[_Due] = []
            for wallet_id, number, currency, balance, held, status, next_fee_at in rows:
                try:
                    quote = quote_for(currency)
                except RateUnavailable:
                    outcome.skipped += 1
                    continue
                if (
                    status != Wallet.Status.ACTIVE
                    or next_fee_at + settings.FEE_PERIOD <= as_of
                    or wallet_id in with_charges
                ):
                    unusual.append(wallet_id)
                    continue
                due_now = _Due(wallet_id, number, next_fee_at, quote)
                payer = quote.amount <= balance - held  # what is available
                (payers if payer else debtors).append(due_now)
            paid = _pay(payers, unusual)
            _record(paid, debtors)
            outcome.wallets = len(paid) + len(debtors)
            outcome.charged = len(paid)
            outcome.debts = outcome.blocked = len(debtors)
            for due_now, _txn in paid:
                outcome.totals[due_now.quote.currency] += due_now.quote.amount
            for due_now in debtors:
                outcome.debt_totals[due_now.quote.currency] += due_now.quote.amount
            if summary.dry_run:
                raise _DryRun
    except _DryRun:
        pass
    except IntegrityError as exc:
        if "feecharge_one_per_period" not in str(exc):
            raise
        logger.warning("fee run: a batch was charged concurrently; one by one now")
        return claimed, claimed
    _merge(summary, outcome)
    summary.skipped += outcome.skipped
    return claimed, unusual


def _pay(payers: list[_Due], unusual: list[UUID]) -> list[tuple[_Due, UUID]]:
    """Post the payers' fees (one `fee` transaction each, as `_settle` does);
    returns (payer, transaction id) for each one that moved. One that did not
    (impossible under the lock, but never assumed) goes to `unusual`."""
    debits = []
    for due_now in payers:
        quote = due_now.quote
        description, metadata = fee_posting_text(
            period_start=due_now.period_start,
            amount=quote.amount,
            currency=quote.currency,
            rate=quote.rate,
            collected_debt=False,
        )
        debits.append(
            Debit(
                wallet_id=due_now.wallet_id,
                amount=quote.amount,
                counterpart=system_wallet(quote.currency, Wallet.SystemCode.FEES),
                description=description,
                metadata=metadata,
            )
        )
    moved = ledger_debit_many(
        kind=Transaction.Kind.FEE, debits=debits, allow_blocked=True
    )
    paid = []
    for due_now, result in zip(payers, moved, strict=True):
        if result is None:
            unusual.append(due_now.wallet_id)
        else:
            paid.append((due_now, result.transaction_id))
    return paid


def _record(paid: list[tuple[_Due, UUID]], debtors: list[_Due]) -> None:
    """The charges of one batch (paid, or debt) and its wallets' next fee date;
    a debtor is blocked with FEE_BLOCK_REASON (they are all active here)."""
    charges: list[tuple[_Due, UUID | None]] = [(due_now, txn) for due_now, txn in paid]
    charges += [(due_now, None) for due_now in debtors]
    if not charges:
        return
    now = timezone.now()
    # Each statement takes its rows as one JSON document: array parameters are
    # quoted element by element on the client, which cost more than the work.
    rows = [
        {
            "n": n,
            "wallet_id": str(due_now.wallet_id),
            "period_start": due_now.period_start.isoformat(),
            "currency": due_now.quote.currency,
            "amount": str(due_now.quote.amount),
            "rate": None if due_now.quote.rate is None else str(due_now.quote.rate),
            "status": FeeCharge.Status.DEBT if txn is None else FeeCharge.Status.PAID,
            "transaction_id": None if txn is None else str(txn),
            "paid_at": None if txn is None else now.isoformat(),
        }
        for n, (due_now, txn) in enumerate(charges, start=1)
    ]
    wallets = [
        {
            "id": str(due_now.wallet_id),
            "next_fee_at": (due_now.period_start + settings.FEE_PERIOD).isoformat(),
            "block": txn is None,
        }
        for due_now, txn in charges
    ]
    with connection.cursor() as cursor:
        cursor.execute(_INSERT_CHARGES_SQL, {"now": now, "charges": json.dumps(rows)})
        cursor.execute(
            _ADVANCE_WALLETS_SQL,
            {
                "now": now,
                "blocked": Wallet.Status.BLOCKED,
                "reason": FEE_BLOCK_REASON,
                "wallets": json.dumps(wallets),
            },
        )
    event_record_many(
        [event for due_now, txn in charges for event in _batch_events(due_now, txn)],
        now=now,
    )


def _batch_events(due_now: _Due, txn: UUID | None) -> list[NewEvent]:
    """`fee.charged` (paid, or debt and then `wallet.blocked`) for one wallet
    of a batch, as `_events` writes them for one wallet alone."""
    quote = due_now.quote
    charged = NewEvent(
        due_now.wallet_id,
        Event.Type.FEE_CHARGED,
        fee_event_data(
            wallet_id=due_now.wallet_id,
            period_start=due_now.period_start,
            amount=quote.amount,
            currency=quote.currency,
            status=FeeCharge.Status.DEBT if txn is None else FeeCharge.Status.PAID,
            transaction_id=txn,
        ),
    )
    if txn is not None:
        return [charged]
    blocked = NewEvent(
        due_now.wallet_id,
        Event.Type.WALLET_BLOCKED,
        wallet_event_data(
            wallet_id=due_now.wallet_id,
            number=due_now.number,
            currency=quote.currency,
            status=Wallet.Status.BLOCKED,
            blocked_reason=FEE_BLOCK_REASON,
        ),
    )
    return [charged, blocked]


def fee_charge_due(
    *,
    as_of: datetime | None = None,
    batch_size: int | None = None,
    dry_run: bool = False,
    progress: Callable[[FeeRunSummary], None] | None = None,
) -> FeeRunSummary:
    """Charge every user wallet whose fee is due by `as_of` (default: now).

    Due wallets are claimed in batches ordered by id with `FOR UPDATE SKIP
    LOCKED`. In the claiming DB transaction the common case (active, one period
    due, nothing owed) is charged set-based, a few statements for the whole batch
    (`_charge_batch`); every other claimed wallet is then locked again (skip
    locked), re-checked and charged in its own DB transaction (`_charge_wallet`):
    every period due by `as_of` (a wallet several periods behind pays or owes
    each one, older debts first). Either way `next_fee_at` is advanced past
    `as_of`, and a wallet whose balance does not cover a fee is blocked and the
    fee recorded as debt.
    Several workers may run at once: a wallet one of them holds is passed over by
    the others, one already charged no longer matches `next_fee_at <= as_of`, and
    the unique (wallet, period_start) constraint is the last guard. Wallets passed
    over because they were locked (a payment in flight, another worker) are taken
    at the end of the run, waiting for their lock. A wallet in a currency with no
    fresh rate is left due and retried next run.

    With `dry_run` every wallet's work is done and rolled back: the summary says
    what would happen, nothing changes.
    """
    started = time.monotonic()
    as_of = as_of or timezone.now()
    batch_size = batch_size or settings.FEE_BATCH_SIZE
    summary = FeeRunSummary(as_of=as_of, dry_run=dry_run)
    quotes: dict[str, FeeQuote | RateUnavailable] = {}

    def quote_for(currency: str) -> FeeQuote:
        # One quote per currency per run: every wallet in a run pays the same.
        if currency not in quotes:
            try:
                quotes[currency] = fee_quote(currency=currency)
            except RateUnavailable as exc:
                quotes[currency] = exc
                logger.warning(
                    "fee run: no fresh %s->%s rate; %s wallets are skipped this "
                    "run and retried next run",
                    settings.FEE_CURRENCY,
                    currency,
                    currency,
                )
        quote = quotes[currency]
        if isinstance(quote, RateUnavailable):
            raise quote
        return quote

    handled: set[UUID] = set()  # charged or skipped by this run (dry runs too)
    after: UUID | None = None
    while True:
        claimed, unusual = _charge_batch(
            as_of=as_of,
            after=after,
            size=batch_size,
            quote_for=quote_for,
            summary=summary,
        )
        if not claimed:
            break
        handled.update(set(claimed).difference(unusual))
        for wallet_id in unusual:
            result = _charge_wallet(
                wallet_id, as_of=as_of, quote_for=quote_for, summary=summary, wait=False
            )
            if result is not None:
                handled.add(wallet_id)
        after = claimed[-1]
        if progress is not None:
            progress(summary)
    # Wallets that were locked when claimed or reached (a payment in flight, or
    # another fee worker) were passed over: take each one now, waiting for its
    # lock. One that another worker charged meanwhile is no longer due.
    leftover = Wallet.objects.filter(
        kind=Wallet.Kind.USER, next_fee_at__lte=as_of
    ).order_by("pk")
    for wallet_id in list(leftover.values_list("pk", flat=True)):
        if wallet_id not in handled:
            _charge_wallet(
                wallet_id, as_of=as_of, quote_for=quote_for, summary=summary, wait=True
            )
    if progress is not None:
        progress(summary)
    logger.info("fee run done: %s", summary.as_dict())
    if not dry_run:
        metrics.fee_run_observe(
            {
                "charged": summary.charged,
                "debt": summary.debts,
                "collected": summary.collected,
                "skipped": summary.skipped,
            },
            blocked=summary.blocked,
            seconds=time.monotonic() - started,
        )
    return summary
