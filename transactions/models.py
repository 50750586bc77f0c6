import uuid
from datetime import datetime
from typing import ClassVar

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
    # A `reversal` names the posted transaction it (partly) undoes; the
    # original's `reversals` are those (it is never edited to point back).
    reverses = models.ForeignKey(
        "self",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="reversals",
    )

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
    # Declared for the type checker only (bare annotations make no field): the
    # currency column this MoneyField adds beside itself, and the default manager,
    # which django-money replaces with a class it builds at run time that the
    # django-stubs plugin cannot resolve (typings/djmoney/models/fields.pyi).
    currency: str
    objects: ClassVar[models.Manager["Entry"]]
    _default_manager: ClassVar[models.Manager["Entry"]]
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
            # Balances in the past and statements (transactions.statements): the
            # last entry at or before a time is one index probe, a period one
            # range scan, whatever the wallet's size.
            models.Index(
                fields=["wallet", "-created_at", "-id"],
                name="entry_wallet_created_idx",
            ),
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
    # Declared for the type checker only (bare annotations make no field): the
    # currency column this MoneyField adds beside itself, and the default manager,
    # which django-money replaces with a class it builds at run time that the
    # django-stubs plugin cannot resolve (typings/djmoney/models/fields.pyi).
    currency: str
    objects: ClassVar[models.Manager["TopUp"]]
    _default_manager: ClassVar[models.Manager["TopUp"]]
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
    def expires_at(self) -> datetime | None:
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
    # Declared for the type checker only (bare annotations make no field): the
    # currency column this MoneyField adds beside itself, and the default manager,
    # which django-money replaces with a class it builds at run time that the
    # django-stubs plugin cannot resolve (typings/djmoney/models/fields.pyi).
    currency: str
    objects: ClassVar[models.Manager["Payout"]]
    _default_manager: ClassVar[models.Manager["Payout"]]
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


class CurrentTxid(models.Func):
    """The writing transaction's id (`pg_current_xact_id()`), as a bigint."""

    template = "(pg_current_xact_id()::text::bigint)"
    output_field = models.BigIntegerField()


class Event(models.Model):
    """Something a wallet's owner cares about, written in the SAME DB
    transaction as the change it reports (the outbox): a rolled-back change
    leaves no event. `sequence` counts the wallet's events 1, 2, 3... with no
    gaps (the wallet's `event_sequence`, raised under its row lock).

    Readers (the events list, the webhook dispatcher) take events in commit
    order by (`txid`, `id`) and only those whose writing transaction is older
    than every one still running (`transactions.events.VISIBLE_SQL`): an id
    alone is not commit order (a transaction may take id 5 and commit after
    the one that took 6), and a cursor on it would skip 5.
    """

    class Type(models.TextChoices):
        TRANSACTION_POSTED = "transaction.posted"
        TOPUP_PAID = "topup.paid"
        TOPUP_REJECTED = "topup.rejected"
        TOPUP_EXPIRED = "topup.expired"
        PAYOUT_PENDING = "payout.pending"
        PAYOUT_PAID = "payout.paid"
        PAYOUT_FAILED = "payout.failed"
        PAYOUT_CANCELED = "payout.canceled"
        PAYOUT_EXPIRED = "payout.expired"
        WALLET_BLOCKED = "wallet.blocked"
        WALLET_UNBLOCKED = "wallet.unblocked"
        FEE_CHARGED = "fee.charged"

    id = models.BigAutoField(primary_key=True)
    type = models.CharField(_("type"), max_length=32, choices=Type.choices)
    wallet = models.ForeignKey(
        "wallets.Wallet", on_delete=models.PROTECT, related_name="+", db_index=False
    )
    # The wallet's owner, denormalised: the events list and the dispatcher
    # select by owner.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="+",
        db_index=False,
    )
    sequence = models.BigIntegerField(_("sequence"))
    data = models.JSONField(encoder=DjangoJSONEncoder)
    created_at = models.DateTimeField(_("created at"))
    txid = models.BigIntegerField(db_default=CurrentTxid(), editable=False)

    class Meta:
        verbose_name = _("event")
        verbose_name_plural = _("events")
        constraints = [
            models.UniqueConstraint(
                fields=["wallet", "sequence"], name="event_wallet_sequence"
            ),
        ]
        indexes = [
            models.Index(fields=["user", "txid", "id"], name="event_user_order_idx"),
            models.Index(fields=["txid", "id"], name="event_order_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.type} #{self.sequence}"


class OutboxCursor(models.Model):
    """How far a reader of the outbox (the webhook dispatcher) has got, in
    commit order: the last (`txid`, `event_id`) it handled."""

    name = models.CharField(max_length=32, primary_key=True)
    txid = models.BigIntegerField(default=0)
    event_id = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.name} at ({self.txid}, {self.event_id})"


class WebhookEndpoint(models.Model):
    """A URL of a user's (or a service account's) that receives that user's
    events, signed with `secret` (and, for 24 h after a rotation, with
    `previous_secret` too)."""

    class Status(models.TextChoices):
        ENABLED = "enabled", _("enabled")
        DISABLED = "disabled", _("disabled")

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="webhook_endpoints",
    )
    url = models.URLField(_("URL"), max_length=2048)
    # ["*"] or a list of Event.Type values.
    event_types = models.JSONField(_("event types"), default=list)
    status = models.CharField(
        _("status"), max_length=16, choices=Status.choices, default=Status.ENABLED
    )
    secret = models.CharField(max_length=64, editable=False)
    previous_secret = models.CharField(max_length=64, blank=True, editable=False)
    previous_secret_expires_at = models.DateTimeField(
        null=True, blank=True, editable=False
    )
    # Since when every delivery to it has failed (None once one succeeds).
    failing_since = models.DateTimeField(_("failing since"), null=True, blank=True)
    disabled_at = models.DateTimeField(_("disabled at"), null=True, blank=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("webhook endpoint")
        verbose_name_plural = _("webhook endpoints")
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["user", "status"], name="webhook_endpoint_user_idx"),
        ]

    def __str__(self) -> str:
        return self.url


class WebhookDelivery(models.Model):
    """One event to one endpoint, delivered at least once: `pending` until a
    2xx (`delivered`) or until retries run out (`failed`). `next_attempt_at`
    is when the next try is due; the beat sweep sends what is due, so a lost
    broker message only delays it."""

    class Status(models.TextChoices):
        PENDING = "pending", _("pending")
        DELIVERED = "delivered", _("delivered")
        FAILED = "failed", _("failed")

    id = models.BigAutoField(primary_key=True)
    endpoint = models.ForeignKey(
        WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries"
    )
    event = models.ForeignKey(Event, on_delete=models.PROTECT, related_name="+")
    status = models.CharField(
        _("status"), max_length=16, choices=Status.choices, default=Status.PENDING
    )
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    next_attempt_at = models.DateTimeField(_("next attempt at"), null=True, blank=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    delivered_at = models.DateTimeField(_("delivered at"), null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)

    class Meta:
        verbose_name = _("webhook delivery")
        verbose_name_plural = _("webhook deliveries")
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["endpoint", "event"], name="webhook_delivery_once"
            ),
        ]
        indexes = [
            # The sweep: pending deliveries, the earliest due first.
            models.Index(
                fields=["next_attempt_at"],
                condition=Q(status="pending"),
                name="webhook_delivery_due_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"delivery {self.id} ({self.status})"


class WebhookAttempt(models.Model):
    """One HTTP try of a delivery, as the admin shows it."""

    id = models.BigAutoField(primary_key=True)
    delivery = models.ForeignKey(
        WebhookDelivery, on_delete=models.CASCADE, related_name="attempt_set"
    )
    started_at = models.DateTimeField(_("started at"))
    duration_ms = models.PositiveIntegerField(_("duration (ms)"))
    status_code = models.PositiveSmallIntegerField(
        _("status code"), null=True, blank=True
    )
    # Why it failed without a status (timeout, refused, URL not allowed...).
    error = models.CharField(_("error"), max_length=255, blank=True)
    response_excerpt = models.TextField(_("response excerpt"), blank=True)

    class Meta:
        verbose_name = _("webhook attempt")
        verbose_name_plural = _("webhook attempts")
        ordering = ["id"]

    def __str__(self) -> str:
        return f"attempt {self.id}: {self.status_code or self.error}"
