from django.conf import settings
from django.db import migrations

from wallets.numbers import generate_number

SYSTEM_CODES = ("external", "fees", "fx", "provider")


def create_system_wallets(apps, schema_editor):
    Wallet = apps.get_model("wallets", "Wallet")
    for currency in settings.WALLET_CURRENCIES:
        for code in SYSTEM_CODES:
            if not Wallet.objects.filter(
                kind="system", system_code=code, currency=currency
            ).exists():
                Wallet.objects.create(
                    kind="system",
                    system_code=code,
                    currency=currency,
                    balance=0,
                    number=generate_number(),
                    name=f"System: {code} {currency}",
                )


class Migration(migrations.Migration):
    dependencies = [("wallets", "0001_initial")]

    operations = [migrations.RunPython(create_system_wallets, migrations.RunPython.noop)]
