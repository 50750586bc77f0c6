import uuid

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from djmoney.models.fields import MoneyField


class Transaction(models.Model):
    """One business event in the ledger; its entries (legs) carry the amounts.

    For every posted transaction the entries of each currency sum to zero. On
    PostgreSQL a deferred constraint trigger enforces it at commit, and posted
    transactions and entries are append-only (see sql/ledger_triggers.sql).
    """

    class Kind(models.TextChoices):
        DEPOSIT = "deposit", _("deposit")
        WITHDRAWAL = "withdrawal", _("withdrawal")
        TRANSFER = "transfer", _("transfer")
        EXCHANGE = "exchange", _("exchange")
        FEE = "fee", _("fee")
        TOPUP = "topup", _("top-up")
        COMMISSION = "commission", _("commission")
        ADJUSTMENT = "adjustment", _("adjustment")
        REVERSAL = "reversal", _("reversal")

    class Status(models.TextChoices):
        PENDING = "pending", _("pending")
        POSTED = "posted", _("posted")
        REJECTED = "rejected", _("rejected")

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.POSTED
    )
    initiator = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    description = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    posted_at = models.DateTimeField(null=True, blank=True)
    metadata = models.JSONField(default=dict, blank=True, encoder=DjangoJSONEncoder)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.kind} {self.id}"


class Entry(models.Model):
    """A leg: a signed amount on one wallet. `balance_after` is the user wallet's
    balance right after this entry (empty on system wallets)."""

    id = models.BigAutoField(primary_key=True)
    transaction = models.ForeignKey(
        Transaction, on_delete=models.PROTECT, related_name="entries"
    )
    wallet = models.ForeignKey(
        "wallets.Wallet", on_delete=models.PROTECT, related_name="entries"
    )
    amount = MoneyField(
        max_digits=20,
        decimal_places=2,
        default_currency=None,
        currency_field_name="currency",
    )
    balance_after = models.DecimalField(
        max_digits=20, decimal_places=2, null=True, blank=True
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "entries"
        constraints = [
            models.CheckConstraint(
                condition=~Q(amount=0), name="entry_amount_not_zero"
            ),
        ]
        indexes = [
            # Keyset pagination of a wallet's history, newest first.
            models.Index(fields=["wallet", "-id"], name="entry_wallet_history_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.amount} on {self.wallet_id}"


class IdempotencyKey(models.Model):
    """A money-moving request's key, stored with its response in the same DB
    transaction as the movement it made."""

    id = models.BigAutoField(primary_key=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+"
    )
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64)
    response_status = models.PositiveSmallIntegerField()
    response_body = models.JSONField(encoder=DjangoJSONEncoder)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["user", "key"], name="idempotency_key_per_user"
            ),
        ]

    def __str__(self) -> str:
        return self.key
