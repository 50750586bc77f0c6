"""Fee reads, and the user's wallets read with their fee debt (the wallet API
shows the debt; the debt is the fees app's, so these reads live here, above
wallets, not in wallets.selectors)."""

import functools
from datetime import datetime
from decimal import Decimal
from typing import NamedTuple
from uuid import UUID

from django.db.models import QuerySet, Sum
from django.db.models.expressions import RawSQL

from accounts.models import User
from fees.models import FeeCharge
from wallet_project.db import prepared_fetchone
from wallets.models import Wallet
from wallets.money import quantum


def fee_charge_list_for_wallet(*, wallet: Wallet) -> QuerySet[FeeCharge]:
    """A wallet's fee charges, newest period first (scope the wallet to its
    owner first: `wallet_get_for_user`)."""
    return FeeCharge.objects.filter(wallet=wallet).order_by("-period_start")


def fee_debt_total(*, wallet: Wallet) -> Decimal:
    """The wallet's outstanding fee debt, in its currency (0.00 when none)."""
    total = FeeCharge.objects.filter(
        wallet=wallet, status=FeeCharge.Status.DEBT
    ).aggregate(total=Sum("amount"))["total"]
    return (total or Decimal(0)).quantize(quantum(wallet.currency))


def fee_due_count(*, as_of: datetime) -> int:
    """How many user wallets owe a fee by `as_of` (the command's progress bar)."""
    return Wallet.objects.filter(kind=Wallet.Kind.USER, next_fee_at__lte=as_of).count()


def fee_debt_total_sql(*, wallet_id_column: str) -> str:
    """`fee_debt_total` as a scalar SQL subquery (before quantizing) for the wallet
    whose id is in `wallet_id_column`: lets a wallet read carry its debt in the
    same query."""
    return (
        f"(SELECT COALESCE(SUM(fc.amount), 0) FROM {FeeCharge._meta.db_table} fc"  # noqa: S608 - model names
        f" WHERE fc.wallet_id = {wallet_id_column}"
        f" AND fc.status = '{FeeCharge.Status.DEBT.value}')"
    )


# --- Wallets with their fee debt (the wallet API) ---------------------------------------


def wallet_list_for_user(*, user: User) -> QuerySet[Wallet]:
    """The user's wallets, oldest first, each with its fee debt read in the same
    query (`debt_total`, before quantizing; WalletSerializer uses it)."""
    debt = fee_debt_total_sql(wallet_id_column=f'"{Wallet._meta.db_table}"."id"')
    return (
        Wallet.objects.filter(owner=user, kind=Wallet.Kind.USER)
        .annotate(debt_total=RawSQL(debt, ()))  # noqa: S611 - model names only
        .order_by("created_at")
    )


class WalletDetail(NamedTuple):
    """A user wallet as its owner sees it, with its outstanding fee debt."""

    id: UUID
    number: str
    name: str
    currency: str
    balance: Decimal
    held: Decimal
    status: str
    blocked_reason: str
    next_fee_at: datetime | None
    created_at: datetime
    updated_at: datetime
    debt: Decimal


@functools.cache
def _wallet_detail_sql() -> str:
    user_model = Wallet._meta.get_field("owner").related_model._meta  # type: ignore[union-attr]  # owner: a ForeignKey to the user model
    return (
        "SELECT w.id, w.number, w.name, w.currency, w.balance, w.held, w.status,"  # noqa: S608 - model names
        " w.blocked_reason, w.next_fee_at, w.created_at, w.updated_at, "
        f"{fee_debt_total_sql(wallet_id_column='w.id')}"
        f" FROM {Wallet._meta.db_table} w"
        f" JOIN {user_model.db_table} u ON u.id = w.owner_id"
        " WHERE w.id = %s AND w.owner_id = %s AND w.kind = %s AND u.is_active"
    )


def wallet_detail_for_user_id(
    *, user_id: UUID, wallet_id: UUID | str
) -> WalletDetail | None:
    """The wallet and its fee debt in one query, if it is a user wallet of
    `user_id` and that user is still active; else None (not found, someone
    else's, malformed id, or the user is gone or deactivated)."""
    try:
        wallet_uuid = wallet_id if isinstance(wallet_id, UUID) else UUID(wallet_id)
    except (TypeError, ValueError, AttributeError):
        return None
    row = prepared_fetchone(
        _wallet_detail_sql(), [wallet_uuid, user_id, Wallet.Kind.USER.value]
    )
    return None if row is None else WalletDetail._make(row)
