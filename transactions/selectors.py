from uuid import UUID

from django.core.exceptions import ValidationError
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
