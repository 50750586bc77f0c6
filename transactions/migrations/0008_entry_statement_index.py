# Balances in the past and statements (transactions.statements): an index on
# (wallet_id, created_at DESC, id DESC). Built CONCURRENTLY: a plain CREATE INDEX
# would block every posting (writes to transactions_entry) for as long as it
# takes to build on a production ledger.

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("transactions", "0007_transaction_reverses"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="entry",
            index=models.Index(
                fields=["wallet", "-created_at", "-id"],
                name="entry_wallet_created_idx",
            ),
        ),
    ]
