from django.core.management.base import BaseCommand, CommandError

from wallets.services import exchange_rates_refresh


class Command(BaseCommand):
    help = (
        "Fetch exchange rates between the wallet currencies from the provider "
        "(EXCHANGE_RATES_URL). A base currency that fails keeps its last good rates; "
        "the command then exits with status 1."
    )

    def handle(self, *args, **options):
        result = exchange_rates_refresh()
        for pair in result.updated:
            self.stdout.write(f"updated {pair}")
        if result.failed:
            raise CommandError(
                "rates not refreshed for "
                + "; ".join(f"{base}: {why}" for base, why in result.failed.items())
            )
        self.stdout.write(self.style.SUCCESS(f"{len(result.updated)} rates updated"))
