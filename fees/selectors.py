from datetime import datetime
from decimal import Decimal

from django.db.models import QuerySet, Sum

from fees.models import FeeCharge
from transactions.money import quantum
from wallets.models import Wallet


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
