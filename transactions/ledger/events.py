"""The outbox: every change a wallet's owner cares about writes an event
(transactions.Event) in the SAME DB transaction as the change, so a rolled-back
change leaves none and a committed one always has its event, whatever happens
to the broker or the worker afterwards.

Two ways in, one numbering: the writer puts events into its one statement
(`transaction.posted` for every user-wallet entry, and what a posting's caller
adds with `Writes.add_event`), and `event_record_many` writes events for
changes that post nothing (a top-up rejected, a wallet blocked, a fee recorded
as debt). Both raise the wallet's `event_sequence` by the number of its new
events in the UPDATE that takes (or already holds) its row lock, and number the
events from the value before: 1, 2, 3... per wallet, no gaps, in lock order.

Readers see events in commit order: by (txid, id), and only those of writing
transactions older than every one still running (VISIBLE_SQL). A cursor on
(txid, id) then never skips an event that commits later.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from django.core.serializers.json import DjangoJSONEncoder

from transactions.models import Event, Payout, TopUp
from wallet_project.db import prepared_fetchone
from wallets.models import Wallet
from wallets.money import money_str

Type = Event.Type

# An event is visible once every transaction that could still write an older
# (txid, id) has ended.
VISIBLE_SQL = "txid < pg_snapshot_xmin(pg_current_snapshot())::text::bigint"


def _time(value: datetime | None) -> str | None:
    """As the API writes times: ISO 8601 in UTC, with "Z"."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def entry_event_data(
    *,
    transaction_id: UUID,
    wallet_id: UUID,
    kind: str,
    amount: Decimal,
    currency: str,
    balance_after: Decimal,
    metadata: dict,
    description: str,
    reverses_id: UUID | None = None,
    created_at: datetime,
) -> dict[str, Any]:
    """`transaction.posted`: the entry as the wallet's history shows it (the
    writer adds its `id`, which the database assigns)."""
    key = "to_wallet" if amount < 0 else "from_wallet"
    return {
        "transaction_id": str(transaction_id),
        "wallet_id": str(wallet_id),
        "kind": kind,
        "amount": money_str(amount, currency),
        "currency": currency,
        "balance_after": money_str(balance_after, currency),
        "counterparty": (metadata or {}).get(key),
        "description": description,
        "reverses": reverses_id and str(reverses_id),
        "created_at": _time(created_at),
    }


def topup_event_data(topup: TopUp) -> dict[str, Any]:
    currency = str(topup.amount.currency)
    commission = topup.commission
    return {
        "id": str(topup.id),
        "wallet_id": str(topup.wallet_id),
        "amount": money_str(topup.amount.amount, currency),
        "currency": currency,
        "status": topup.status,
        "commission": None if commission is None else money_str(commission, currency),
        "transaction_id": topup.transaction_id and str(topup.transaction_id),
        "created_at": _time(topup.created_at),
        "decided_at": _time(topup.decided_at),
    }


def payout_event_data(payout: Payout) -> dict[str, Any]:
    currency = str(payout.amount.currency)
    return {
        "id": str(payout.id),
        "wallet_id": str(payout.wallet_id),
        "amount": money_str(payout.amount.amount, currency),
        "currency": currency,
        "destination": payout.destination,
        "status": payout.status,
        "provider_reference": payout.provider_reference,
        "transaction_id": payout.transaction_id and str(payout.transaction_id),
        "created_at": _time(payout.created_at),
        "decided_at": _time(payout.decided_at),
    }


def wallet_event_data(
    *, wallet_id: UUID, number: str, currency: str, status: str, blocked_reason: str
) -> dict[str, Any]:
    return {
        "id": str(wallet_id),
        "number": number,
        "currency": currency,
        "status": status,
        "blocked_reason": blocked_reason,
    }


def fee_event_data(
    *,
    wallet_id: UUID,
    period_start: datetime,
    amount: Decimal,
    currency: str,
    status: str,
    transaction_id: UUID | None,
) -> dict[str, Any]:
    """`fee.charged`: one period's charge, `paid` or recorded as `debt`."""
    return {
        "wallet_id": str(wallet_id),
        "period_start": _time(period_start),
        "amount": money_str(amount, currency),
        "currency": currency,
        "status": status,
        "transaction_id": transaction_id and str(transaction_id),
    }


@dataclass(frozen=True)
class NewEvent:
    wallet_id: UUID
    type: str
    data: dict[str, Any]


@dataclass
class EventRows:
    """Events to insert in one statement, numbered within each wallet (`n`:
    1, 2... in the order added; the statement adds the wallet's sequence)."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[UUID, int] = field(default_factory=lambda: defaultdict(int))

    def add(
        self,
        wallet_id: UUID,
        type: str,
        data: dict[str, Any],
        *,
        entry_of: UUID | None = None,
        balance_after: Decimal | None = None,
    ) -> None:
        """With `entry_of` (a transaction id), the event of that transaction's
        entry on this wallet with this `balance_after`: the statement adds the
        entry's id to `data`."""
        self.counts[wallet_id] += 1
        self.rows.append(
            {
                "wallet_id": wallet_id,
                "type": type,
                "data": data,
                "n": self.counts[wallet_id],
                "txn": entry_of,
                "balance_after": balance_after,
            }
        )

    def json(self) -> str:
        return json.dumps(self.rows, cls=DjangoJSONEncoder)


_RECORD_SQL = """
WITH v AS (
    SELECT * FROM jsonb_to_recordset(%(events)s::jsonb)
           AS v (wallet_id uuid, type varchar, data jsonb, n int)
),
c AS (SELECT wallet_id, max(n) AS k FROM v GROUP BY wallet_id),
l AS MATERIALIZED (
    SELECT w.id FROM wallets_wallet AS w JOIN c ON c.wallet_id = w.id
     WHERE w.kind = 'user'
     ORDER BY w.id
       FOR UPDATE OF w
),
w AS (
    UPDATE wallets_wallet AS w
       SET event_sequence = w.event_sequence + c.k
      FROM c JOIN l ON l.id = c.wallet_id
     WHERE w.id = c.wallet_id
 RETURNING w.id, w.owner_id, w.event_sequence - c.k AS base
),
ev AS (
    INSERT INTO transactions_event (type, wallet_id, user_id, sequence, data, created_at)
    SELECT v.type, v.wallet_id, w.owner_id, w.base + v.n, v.data, %(now)s
      FROM v JOIN w ON w.id = v.wallet_id
     ORDER BY v.wallet_id, v.n
 RETURNING 1
)
SELECT count(*) FROM ev
"""


def event_record_many(events: Sequence[NewEvent], *, now: datetime) -> int:
    """Write `events` (on user wallets) in one statement, inside the caller's
    DB transaction, which its change is part of; how many were written (an
    event on a wallet that is not a user wallet is dropped). The wallets are
    locked in id order (`l`), as the writer locks them: a wallet the caller
    has not locked yet never makes two writers wait on each other in a
    cycle."""
    if not events:
        return 0
    rows = EventRows()
    for event in events:
        rows.add(event.wallet_id, event.type, event.data)
    row = prepared_fetchone(_RECORD_SQL, {"events": rows.json(), "now": now})
    assert row is not None  # the statement ends in an aggregate: one row
    (written,) = row
    return written


def wallet_status_event(wallet: Wallet) -> NewEvent:
    """`wallet.blocked` or `wallet.unblocked`, for the wallet as it is now."""
    blocked = wallet.status == Wallet.Status.BLOCKED
    return NewEvent(
        wallet.id,
        Type.WALLET_BLOCKED if blocked else Type.WALLET_UNBLOCKED,
        wallet_event_data(
            wallet_id=wallet.id,
            number=wallet.number,
            currency=str(wallet.currency),
            status=wallet.status,
            blocked_reason=wallet.blocked_reason,
        ),
    )
