from django.apps import AppConfig


class WalletsConfig(AppConfig):
    name = "wallets"
    verbose_name = "Wallets"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from accounts.services import signup_hook_register
        from wallets.services import (
            SIGNUP_WALLET_CURRENCY,
            system_wallets_post_migrate,
            wallet_create,
        )

        # The system wallets of every currency, (re)created after every migrate
        # and flush; selectors only read them (wallets.selectors.system_wallet).
        post_migrate.connect(
            system_wallets_post_migrate, sender=self, dispatch_uid="wallets.system"
        )
        # Wallets build on accounts: a sign-up opens the user's first wallet, in
        # the same DB transaction.
        signup_hook_register(
            lambda user: wallet_create(owner=user, currency=SIGNUP_WALLET_CURRENCY)
        )
