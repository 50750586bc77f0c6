from decimal import Decimal
from typing import Any

from django.conf import settings
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from rest_framework import serializers

from fees.selectors import WalletDetail, fee_debt_total
from wallet_project.api import AmountField
from wallet_project.fields import StrictCharField
from wallet_project.lean import drf_datetime
from wallets.models import Wallet
from wallets.money import money_str, quantum, to_minor


def wallet_data(
    wallet: Wallet | WalletDetail, *, balance: Decimal, debt: Decimal
) -> dict:
    """WalletSerializer's representation, built directly (the same keys, order and
    values as its declared fields give; a test holds the two together)."""
    currency = str(wallet.currency)
    tz = timezone.get_current_timezone()
    return {
        "id": str(wallet.id),
        "number": wallet.number,
        "name": wallet.name,
        "currency": currency,
        "balance": money_str(balance, currency),
        "balance_minor": to_minor(balance, currency),
        "held": money_str(wallet.held, currency),
        "available_balance": money_str(balance - wallet.held, currency),
        "status": str(wallet.status),
        "blocked_reason": wallet.blocked_reason,
        "debt": money_str(debt.quantize(quantum(currency)), currency),
        "next_fee_at": drf_datetime(wallet.next_fee_at, tz),
        "created_at": drf_datetime(wallet.created_at, tz),
        "updated_at": drf_datetime(wallet.updated_at, tz),
    }


class WalletSerializer(serializers.ModelSerializer):
    currency = serializers.CharField(read_only=True)
    balance = serializers.SerializerMethodField()
    balance_minor = serializers.SerializerMethodField()
    held = serializers.SerializerMethodField(
        help_text="Money reserved by pending payouts: in `balance`, not spendable."
    )
    available_balance = serializers.SerializerMethodField(
        help_text="What a debit may take: `balance` less `held`."
    )
    debt = serializers.SerializerMethodField()

    class Meta:
        model = Wallet
        fields = [
            "id",
            "number",
            "name",
            "currency",
            "balance",
            "balance_minor",
            "held",
            "available_balance",
            "status",
            "blocked_reason",
            "debt",
            "next_fee_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_balance(self, wallet: Wallet) -> str:
        return money_str(wallet.balance.amount, wallet.currency)

    def get_balance_minor(self, wallet: Wallet) -> int:
        return to_minor(wallet.balance.amount, wallet.currency)

    def get_held(self, wallet: Wallet) -> str:
        return money_str(wallet.held, wallet.currency)

    def get_available_balance(self, wallet: Wallet) -> str:
        return money_str(wallet.available_balance, wallet.currency)

    def get_debt(self, wallet: Wallet) -> str:
        """Outstanding monthly fee debt, in the wallet's currency."""
        return money_str(_debt(wallet), wallet.currency)

    def to_representation(self, wallet: Wallet) -> dict:
        # The declared fields document the schema; building the dict directly
        # costs a fraction of DRF's field-by-field walk.
        return wallet_data(wallet, balance=wallet.balance.amount, debt=_debt(wallet))


def _debt(wallet: Wallet) -> Decimal:
    """The debt the wallet was read with (wallet_list_for_user), else a query."""
    debt = getattr(wallet, "debt_total", None)
    return fee_debt_total(wallet=wallet) if debt is None else debt


class WalletCreateSerializer(serializers.Serializer):
    currency = serializers.ChoiceField(choices=[])
    name = StrictCharField(max_length=100, required=False, allow_blank=True)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["currency"].choices = settings.WALLET_CURRENCIES


class WalletUpdateSerializer(serializers.Serializer):
    """PATCH wallets/{id}/: only what is sent changes (nothing, for `{}`)."""

    name = StrictCharField(max_length=100, allow_blank=True, required=False)


OPERATION_TYPES = ("DEPOSIT", "WITHDRAW")


class OperationSerializer(serializers.Serializer):
    """`operation_type` or its camelCase twin `operationType`, and an amount."""

    operation_type = serializers.ChoiceField(choices=OPERATION_TYPES, required=False)
    operationType = serializers.ChoiceField(choices=OPERATION_TYPES, required=False)
    amount = AmountField()

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        snake, camel = attrs.get("operation_type"), attrs.get("operationType")
        if snake and camel and snake != camel:
            raise serializers.ValidationError(
                {"operation_type": [_("operation_type and operationType disagree.")]}
            )
        if not (snake or camel):
            raise serializers.ValidationError(
                {"operation_type": [_("This field is required.")]}
            )
        return {"operation_type": snake or camel, "amount": attrs["amount"]}


class OperationResultSerializer(serializers.Serializer):
    operation_id = serializers.UUIDField()
    status = serializers.CharField()
    operation_type = serializers.ChoiceField(choices=OPERATION_TYPES)
    amount = serializers.CharField()
    currency = serializers.CharField()
    new_balance = serializers.CharField()
