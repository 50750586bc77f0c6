from django.apps import AppConfig


class FeesConfig(AppConfig):
    name = "fees"
    verbose_name = "Fees"

    def ready(self) -> None:
        # Fees build on the ledger: the ledger calls this after a credit to a
        # blocked wallet (in the same DB transaction) to collect its fee debt.
        from fees.services import fee_debt_collect
        from transactions.ledger import credit_to_blocked_hook_register

        credit_to_blocked_hook_register(lambda wallet: fee_debt_collect(wallet=wallet))
