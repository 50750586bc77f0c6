from datetime import tzinfo
from typing import Any

from rest_framework import serializers

from transactions.models import Entry, Transaction
from transactions.selectors import EntryRow
from wallet_project.lean import drf_datetime
from wallets.money import minor_digits, money_str


def entry_page_data(
    rows: list[EntryRow], *, wallet_id: str, tz: tzinfo | None
) -> list[dict[str, Any]]:
    """EntrySerializer's representation of legs read as `EntryRow`s (the same
    keys, order and values; a test holds the two together)."""
    places: dict[str, int] = {}
    page = []
    for row in rows:
        currency = row.currency
        digits = places.get(currency)
        if digits is None:
            digits = places[currency] = minor_digits(currency)
        balance_after = row.balance_after
        # f"{amount:.{digits}f}" is money_str(), its digits looked up once a page.
        page.append(
            {
                "id": row.id,
                "transaction_id": row.transaction_id,
                "wallet_id": wallet_id,
                "kind": row.kind,
                "amount": f"{row.amount:.{digits}f}",
                "currency": currency,
                "balance_after": None
                if balance_after is None
                else f"{balance_after:.{digits}f}",
                "counterparty": row.counterparty,
                "description": row.description,
                "reverses": row.reverses,
                "created_at": drf_datetime(row.created_at, tz),
            }
        )
    return page


class EntrySerializer(serializers.ModelSerializer):
    """One leg as its wallet's owner sees it: a signed amount in that wallet's
    currency and the balance right after it."""

    transaction_id = serializers.UUIDField(source="transaction.id")
    currency = serializers.CharField(read_only=True)
    kind = serializers.CharField(source="transaction.kind")
    description = serializers.CharField(source="transaction.description")
    amount = serializers.SerializerMethodField()
    balance_after = serializers.SerializerMethodField()
    counterparty = serializers.SerializerMethodField()
    reverses = serializers.UUIDField(
        source="transaction.reverses_id",
        allow_null=True,
        help_text="On a `reversal`: the transaction it reverses.",
    )

    class Meta:
        model = Entry
        fields = [
            "id",
            "transaction_id",
            "wallet_id",
            "kind",
            "amount",
            "currency",
            "balance_after",
            "counterparty",
            "description",
            "reverses",
            "created_at",
        ]
        read_only_fields = fields

    def get_amount(self, entry: Entry) -> str:
        return money_str(entry.amount.amount, str(entry.currency))

    def get_balance_after(self, entry: Entry) -> str | None:
        if entry.balance_after is None:
            return None
        return money_str(entry.balance_after, str(entry.currency))

    def get_counterparty(self, entry: Entry) -> str | None:
        """The other user's wallet number, for transfers and exchanges."""
        metadata = entry.transaction.metadata or {}
        key = "to_wallet" if entry.amount.amount < 0 else "from_wallet"
        return metadata.get(key)


class TransactionEntrySerializer(serializers.ModelSerializer):
    wallet_number = serializers.CharField(source="wallet.number")
    currency = serializers.CharField(read_only=True)
    amount = serializers.SerializerMethodField()
    balance_after = serializers.SerializerMethodField()

    class Meta:
        model = Entry
        fields = [
            "id",
            "wallet_id",
            "wallet_number",
            "amount",
            "currency",
            "balance_after",
        ]
        read_only_fields = fields

    def get_amount(self, entry: Entry) -> str:
        return money_str(entry.amount.amount, str(entry.currency))

    def get_balance_after(self, entry: Entry) -> str | None:
        if entry.balance_after is None:
            return None
        return money_str(entry.balance_after, str(entry.currency))


class TransactionSerializer(serializers.ModelSerializer):
    entries = TransactionEntrySerializer(source="own_entries", many=True)
    reverses = serializers.UUIDField(
        source="reverses_id",
        allow_null=True,
        help_text="On a `reversal`: the transaction it reverses.",
    )
    reversed_by = serializers.SerializerMethodField(
        help_text="The posted reversals of this transaction, oldest first."
    )

    class Meta:
        model = Transaction
        fields = [
            "id",
            "kind",
            "status",
            "description",
            "metadata",
            "reverses",
            "reversed_by",
            "created_at",
            "posted_at",
            "entries",
        ]
        read_only_fields = fields

    def get_reversed_by(self, txn: Transaction) -> list[str]:
        return [str(r.id) for r in txn.reversals.all()]
