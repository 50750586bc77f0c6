from uuid import UUID

from django.core.exceptions import ValidationError
from django.db.models import QuerySet

from accounts.models import User
from wallet_project.errors import WalletNotFound
from wallets.models import Wallet

_system_wallets: dict[tuple[str, str], Wallet] = {}


def wallet_list_for_user(*, user: User) -> QuerySet[Wallet]:
    return Wallet.objects.filter(owner=user, kind=Wallet.Kind.USER).order_by(
        "created_at"
    )


def wallet_get_for_user(*, user: User, wallet_id: UUID | str) -> Wallet:
    """The caller's own wallet; anyone else's (or a malformed id) is a 404."""
    try:
        return Wallet.objects.get(pk=wallet_id, owner=user, kind=Wallet.Kind.USER)
    except (Wallet.DoesNotExist, ValidationError, ValueError):
        raise WalletNotFound() from None


def wallet_get_by_number(*, number: str) -> Wallet:
    try:
        return Wallet.objects.get(number=number, kind=Wallet.Kind.USER)
    except Wallet.DoesNotExist:
        raise WalletNotFound() from None


def system_wallet(currency: str, code: str) -> Wallet:
    """The system wallet for (currency, code). Rows never change once created,
    so each process keeps them after the first read."""
    key = (currency, code)
    wallet = _system_wallets.get(key)
    if wallet is None:
        from wallets.services import system_wallets_ensure

        system_wallets_ensure(currencies=[currency])
        wallet = Wallet.objects.get(
            kind=Wallet.Kind.SYSTEM, currency=currency, system_code=code
        )
        _system_wallets[key] = wallet
    return wallet
