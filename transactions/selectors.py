from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from uuid import UUID

from django.core.exceptions import ValidationError
from django.db import connection
from django.db.models import Prefetch, QuerySet

from accounts.models import User
from transactions.models import Entry, Transaction
from wallet_project.errors import NotFound
from wallets.models import Wallet


def entry_list_for_wallet(*, wallet: Wallet) -> QuerySet[Entry]:
    """One wallet's legs, newest first (keyset-paginated by id)."""
    return (
        Entry.objects.filter(wallet=wallet)
        .select_related("transaction")
        .order_by("-id")
    )


def entry_list_for_user(*, user: User) -> QuerySet[Entry]:
    """All legs on the user's wallets, newest first."""
    wallet_ids = Wallet.objects.filter(owner=user, kind=Wallet.Kind.USER).values("id")
    return (
        Entry.objects.filter(wallet_id__in=wallet_ids)
        .select_related("transaction")
        .order_by("-id")
    )


def transaction_get_for_user(*, user: User, transaction_id: UUID | str) -> Transaction:
    """A transaction with a leg on one of the user's wallets, with only those
    legs; any other is a 404."""
    own = Entry.objects.filter(wallet__owner=user).select_related("wallet")
    try:
        return (
            Transaction.objects.filter(pk=transaction_id, entries__wallet__owner=user)
            .prefetch_related(Prefetch("entries", queryset=own, to_attr="own_entries"))
            .distinct()
            .get()
        )
    except (Transaction.DoesNotExist, ValidationError, ValueError):
        raise NotFound() from None


# --- Reconciliation ---------------------------------------------------------------------


@dataclass
class ReconcileReport:
    wallets_checked: int = 0
    balance_mismatches: list[str] = field(default_factory=list)
    unbalanced_transactions: list[str] = field(default_factory=list)
    negative_balances: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (
            self.balance_mismatches
            or self.unbalanced_transactions
            or self.negative_balances
        )


_WALLET_BATCH_SQL = """
SELECT w.id, w.number, w.kind, w.currency, w.balance, COALESCE(SUM(e.amount), 0)
  FROM wallets_wallet w
  LEFT JOIN transactions_entry e ON e.wallet_id = w.id
 WHERE w.id > %s
 GROUP BY w.id, w.number, w.kind, w.currency, w.balance
 ORDER BY w.id
 LIMIT %s
"""

_UNBALANCED_SQL = """
SELECT transaction_id, currency, SUM(amount)
  FROM transactions_entry
 GROUP BY transaction_id, currency
HAVING SUM(amount) <> 0
"""


def ledger_reconcile(
    *, batch_size: int = 2000, progress: Callable[[int], None] | None = None
) -> ReconcileReport:
    """Check the ledger's invariants: every user wallet's cached balance equals
    the sum of its entries and is not negative, system wallets keep no cached
    balance, and every transaction balances per currency."""
    report = ReconcileReport()
    last_id: Any = _db_uuid(UUID(int=0))
    with connection.cursor() as cursor:
        while True:
            cursor.execute(_WALLET_BATCH_SQL, [last_id, batch_size])
            rows = cursor.fetchall()
            if not rows:
                break
            for _wallet_id, number, kind, currency, balance, total in rows:
                balance, total = Decimal(str(balance)), Decimal(str(total))
                expected = total if kind == Wallet.Kind.USER else Decimal(0)
                if balance != expected:
                    report.balance_mismatches.append(
                        f"wallet {number} ({kind}, {currency}): balance {balance}, "
                        f"entries sum to {total}"
                    )
                if kind == Wallet.Kind.USER and balance < 0:
                    report.negative_balances.append(
                        f"wallet {number} ({currency}): balance {balance}"
                    )
            report.wallets_checked += len(rows)
            last_id = rows[-1][0]
            if progress:
                progress(report.wallets_checked)
        cursor.execute(_UNBALANCED_SQL)
        for transaction_id, currency, total in cursor.fetchall():
            report.unbalanced_transactions.append(
                f"transaction {transaction_id}: {currency} legs sum to {total}"
            )
    return report


def _db_uuid(value: UUID) -> Any:
    return Wallet._meta.pk.get_db_prep_value(value, connection)  # type: ignore[union-attr]
