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
        PAYOUT = "payout", _("payout")

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
    # The exact JSON bytes of the first answer (text, not jsonb, which reorders
    # keys): a replay sends them again byte for byte.
    response_body = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["user", "key"], name="idempotency_key_per_user"
            ),
        ]

    def __str__(self) -> str:
        return self.key


class TopUp(models.Model):
    """A top-up through the external payment provider.

    It waits `pending` until the provider decides: `paid` posts one `topup`
    transaction (provider -> wallet, and the commission wallet -> fees), recorded
    in `transaction`; `rejected` moves nothing; a pending top-up older than
    TOPUP_TTL becomes `expired`. Every decision is final.
    """

    class Status(models.TextChoices):
        PENDING = "pending", _("pending")
        PAID = "paid", _("paid")
        REJECTED = "rejected", _("rejected")
        EXPIRED = "expired", _("expired")

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    wallet = models.ForeignKey(
        "wallets.Wallet", on_delete=models.PROTECT, related_name="topups"
    )
    amount = MoneyField(
        _("amount"),
        max_digits=20,
        decimal_places=2,
        default_currency=None,
        currency_field_name="currency",
    )
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.PENDING
    )
    # In the top-up's currency; set when it is paid.
    commission = models.DecimalField(
        _("commission"), max_digits=20, decimal_places=2, null=True, blank=True
    )
    provider_reference = models.CharField(
        _("provider reference"), max_length=255, blank=True
    )
    transaction = models.OneToOneField(
        Transaction,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="topup",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    created_at = models.DateTimeField(default=timezone.now)
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("top-up")
        verbose_name_plural = _("top-ups")
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(amount__gt=0), name="topup_amount_positive"
            ),
            models.CheckConstraint(
                condition=Q(commission__isnull=True)
                | (Q(commission__gte=0) & Q(commission__lte=models.F("amount"))),
                name="topup_commission_within_amount",
            ),
            # Paid <=> it has its ledger transaction.
            models.CheckConstraint(
                condition=(Q(status="paid") & Q(transaction__isnull=False))
                | (~Q(status="paid") & Q(transaction__isnull=True)),
                name="topup_paid_has_transaction",
            ),
        ]
        indexes = [
            # The provider's queue and the expiry sweep: pending, oldest first.
            models.Index(fields=["status", "created_at"], name="topup_status_idx"),
            models.Index(fields=["wallet", "-created_at"], name="topup_wallet_idx"),
        ]

    def __str__(self) -> str:
        return f"top-up {self.amount} ({self.status})"

    @property
    def expires_at(self):
        """When a pending top-up stops accepting a decision (None once decided)."""
        if self.status != self.Status.PENDING:
            return None
        return self.created_at + settings.TOPUP_TTL


class Hold(models.Model):
    """Money reserved on a user wallet without posting it (the first phase of a
    two-phase movement: a payout). While active its amount is in the wallet's
    `held` and out of every debit's reach. It resolves exactly once: captured
    (part or all of it posted by one transaction, the rest released), voided
    (released, with a reason) or expired (released at `expires_at`, never
    before; an expired hold cannot be captured). Only the ledger writes it
    (transactions.ledger.holds), under the wallet's row lock.
    """

    class Status(models.TextChoices):
        ACTIVE = "active", _("active")
        CAPTURED = "captured", _("captured")
        VOIDED = "voided", _("voided")
        EXPIRED = "expired", _("expired")

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    wallet = models.ForeignKey(
        "wallets.Wallet", on_delete=models.PROTECT, related_name="holds"
    )
    amount = models.DecimalField(_("amount"), max_digits=20, decimal_places=2)
    currency = models.CharField(_("currency"), max_length=3)
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.ACTIVE
    )
    captured_amount = models.DecimalField(
        _("captured amount"), max_digits=20, decimal_places=2, null=True, blank=True
    )
    transaction = models.OneToOneField(
        Transaction,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="hold",
    )
    description = models.CharField(_("description"), max_length=255, blank=True)
    reason = models.CharField(_("reason"), max_length=255, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(_("expires at"))
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("hold")
        verbose_name_plural = _("holds")
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(amount__gt=0), name="hold_amount_positive"
            ),
            # Captured <=> posted by its transaction, for at most the amount held.
            models.CheckConstraint(
                condition=(
                    Q(status="captured")
                    & Q(transaction__isnull=False)
                    & Q(captured_amount__gt=0)
                    & Q(captured_amount__lte=models.F("amount"))
                )
                | (
                    ~Q(status="captured")
                    & Q(transaction__isnull=True)
                    & Q(captured_amount__isnull=True)
                ),
                name="hold_captured_has_transaction",
            ),
            models.CheckConstraint(
                condition=Q(status="active", resolved_at__isnull=True)
                | (~Q(status="active") & Q(resolved_at__isnull=False)),
                name="hold_resolved_has_time",
            ),
        ]
        indexes = [
            # The expiry sweep: active holds, the oldest expiry first.
            models.Index(
                fields=["expires_at"],
                condition=Q(status="active"),
                name="hold_active_expiry_idx",
            ),
            models.Index(fields=["wallet", "status"], name="hold_wallet_status_idx"),
        ]

    def __str__(self) -> str:
        return f"hold {self.amount} {self.currency} ({self.status})"


class Payout(models.Model):
    """Money out through the payment provider, two-phase: created `pending`
    with its amount held on the wallet (`hold`) at once; the provider then
    decides: `paid` captures the hold into one `payout` transaction (wallet ->
    the `provider` system wallet), `failed` releases it. The owner may cancel a
    pending payout (released); a pending payout older than PAYOUT_TTL expires
    (released). Every decision is final.
    """

    class Status(models.TextChoices):
        PENDING = "pending", _("pending")
        PAID = "paid", _("paid")
        FAILED = "failed", _("failed")
        CANCELED = "canceled", _("canceled")
        EXPIRED = "expired", _("expired")

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    wallet = models.ForeignKey(
        "wallets.Wallet", on_delete=models.PROTECT, related_name="payouts"
    )
    hold = models.OneToOneField(Hold, on_delete=models.PROTECT, related_name="payout")
    amount = MoneyField(
        _("amount"),
        max_digits=20,
        decimal_places=2,
        default_currency=None,
        currency_field_name="currency",
    )
    destination = models.CharField(_("destination"), max_length=64)
    description = models.CharField(_("description"), max_length=255, blank=True)
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.PENDING
    )
    provider_reference = models.CharField(
        _("provider reference"), max_length=255, blank=True
    )
    failure_reason = models.CharField(_("failure reason"), max_length=255, blank=True)
    transaction = models.OneToOneField(
        Transaction,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="payout",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(_("expires at"))
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("payout")
        verbose_name_plural = _("payouts")
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(amount__gt=0), name="payout_amount_positive"
            ),
            models.CheckConstraint(
                condition=(Q(status="paid") & Q(transaction__isnull=False))
                | (~Q(status="paid") & Q(transaction__isnull=True)),
                name="payout_paid_has_transaction",
            ),
        ]
        indexes = [
            # The provider's queue and the expiry sweep: pending, oldest first.
            models.Index(fields=["status", "created_at"], name="payout_status_idx"),
            models.Index(fields=["wallet", "-created_at"], name="payout_wallet_idx"),
        ]

    def __str__(self) -> str:
        return f"payout {self.amount} ({self.status})"
