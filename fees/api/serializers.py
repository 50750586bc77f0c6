from rest_framework import serializers

from fees.models import FeeCharge
from wallets.money import money_str


class FeeChargeSerializer(serializers.ModelSerializer):
    """One period's fee as the wallet's owner sees it. `period_start` is when it
    fell due; `transaction_id` is the ledger transaction that paid it (null for
    a debt or a waived charge)."""

    currency = serializers.CharField(read_only=True)
    amount = serializers.SerializerMethodField()
    rate = serializers.SerializerMethodField()
    transaction_id = serializers.UUIDField(read_only=True, allow_null=True)

    class Meta:
        model = FeeCharge
        fields = [
            "id",
            "period_start",
            "amount",
            "currency",
            "rate",
            "status",
            "transaction_id",
            "paid_at",
            "waived_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_amount(self, charge: FeeCharge) -> str:
        return money_str(charge.amount.amount, str(charge.currency))

    def get_rate(self, charge: FeeCharge) -> str | None:
        """1 FEE_CURRENCY = rate wallet currency, when the fee was converted."""
        return None if charge.rate is None else str(charge.rate)
