from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from accounts import jwt_keys
        from accounts.roles import roles_post_migrate

        # Old JWT signing keys that still verify (JWT_SIGNING_KEY_FALLBACKS).
        jwt_keys.install()

        # The back-office groups (support, finance), rebuilt after every migrate.
        post_migrate.connect(roles_post_migrate, dispatch_uid="accounts.roles")

        from django.db.backends.signals import connection_created

        from wallet_project.db import connection_lost_is_unavailable

        connection_created.connect(
            connection_lost_is_unavailable, dispatch_uid="wallet_project.db.lost"
        )
