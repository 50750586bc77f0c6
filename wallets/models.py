import uuid
from typing import ClassVar

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _
from djmoney.models.fields import MoneyField


class Wallet(models.Model):
    """A ledger account: a user's wallet or a system wallet (one per code and currency).

    A user wallet's `balance` is a cached column that only the ledger service
    changes, in the same DB transaction as its entries. A system wallet's balance
    is derived from its entries and its column stays 0: no single row is touched
    by every operation.
    """

    class Kind(models.TextChoices):
        USER = "user", _("user")
        SYSTEM = "system", _("system")

    class Status(models.TextChoices):
        ACTIVE = "active", _("active")
        BLOCKED = "blocked", _("blocked")

    class SystemCode(models.TextChoices):
        EXTERNAL = "external", _("external (cash in/out)")
        FEES = "fees", _("fees")
        FX = "fx", _("currency exchange")
        PROVIDER = "provider", _("payment provider")

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    number = models.CharField(_("number"), max_length=16, unique=True, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="wallets",
    )
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.USER)
    system_code = models.CharField(
        max_length=16, choices=SystemCode.choices, blank=True, default=""
    )
    name = models.CharField(_("name"), max_length=100, blank=True)
    balance = MoneyField(
        _("balance"),
        max_digits=20,
        decimal_places=2,
        default_currency=None,
        currency_field_name="currency",
        editable=False,
    )
    # Declared for the type checker only (bare annotations make no field): the
    # currency column this MoneyField adds beside itself, and the default manager,
    # which django-money replaces with a class it builds at run time that the
    # django-stubs plugin cannot resolve (typings/djmoney/models/fields.pyi).
    currency: str
    objects: ClassVar[models.Manager["Wallet"]]
    _default_manager: ClassVar[models.Manager["Wallet"]]
    # The sum of the wallet's active holds (transactions.Hold), in its currency:
    # money reserved, still in `balance`, not available to any debit. Written
    # only by the ledger's writer, in the same UPDATE as the balance.
    held = models.DecimalField(
        _("held"), max_digits=20, decimal_places=2, default=0, editable=False
    )
    status = models.CharField(
        max_length=8, choices=Status.choices, default=Status.ACTIVE, editable=False
    )
    # How many events (transactions.Event) this wallet has had: the last one's
    # `sequence`. Raised only with the wallet's row locked, in the statement that
    # inserts the events, so the sequence has no gaps.
    event_sequence = models.BigIntegerField(default=0, editable=False)
    blocked_reason = models.CharField(max_length=255, blank=True, editable=False)
    next_fee_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["owner", "currency"],
                condition=Q(kind="user"),
                name="wallet_one_user_wallet_per_currency",
            ),
            models.UniqueConstraint(
                fields=["system_code", "currency"],
                condition=Q(kind="system"),
                name="wallet_one_system_wallet_per_code",
            ),
            models.CheckConstraint(
                condition=Q(kind="system") | Q(balance__gte=0),
                name="wallet_user_balance_non_negative",
            ),
            models.CheckConstraint(
                condition=Q(held=0)
                | (Q(kind="user") & Q(held__gt=0) & Q(balance__gte=models.F("held"))),
                name="wallet_held_within_balance",
            ),
            models.CheckConstraint(
                condition=(Q(kind="user") & Q(owner__isnull=False) & Q(system_code=""))
                | (Q(kind="system") & Q(owner__isnull=True) & ~Q(system_code="")),
                name="wallet_kind_matches_owner",
            ),
        ]
        indexes = [
            models.Index(
                fields=["next_fee_at"],
                condition=Q(kind="user"),
                name="wallet_fee_due_idx",
            ),
        ]

    def __str__(self) -> str:
        if self.kind == self.Kind.SYSTEM:
            return f"{self.system_code} {self.currency}"
        return f"{self.number} ({self.currency})"

    @property
    def available_balance(self):
        """What a debit may take: the balance less the money held."""
        return self.balance.amount - self.held

    @property
    def is_blocked(self) -> bool:
        return self.status == self.Status.BLOCKED


class ExchangeRate(models.Model):
    """The latest known rate for one currency pair: 1 `base` = `rate` `quote`.

    One row per pair, replaced on every successful refresh (the unique index on
    (base, quote) makes the lookup one indexed query). A transaction keeps the
    rate it used in its metadata, so the ledger needs no rate history.
    """

    base = models.CharField(_("base currency"), max_length=3)
    quote = models.CharField(_("quote currency"), max_length=3)
    rate = models.DecimalField(_("rate"), max_digits=30, decimal_places=10)
    source = models.CharField(_("source"), max_length=100, default="manual")
    fetched_at = models.DateTimeField(_("fetched at"))

    class Meta:
        verbose_name = _("exchange rate")
        verbose_name_plural = _("exchange rates")
        ordering = ["base", "quote"]
        constraints = [
            models.UniqueConstraint(
                fields=["base", "quote"], name="exchangerate_one_row_per_pair"
            ),
            models.CheckConstraint(
                condition=Q(rate__gt=0), name="exchangerate_rate_positive"
            ),
            models.CheckConstraint(
                condition=~Q(base=models.F("quote")),
                name="exchangerate_distinct_currencies",
            ),
        ]

    def __str__(self) -> str:
        return f"1 {self.base} = {self.rate} {self.quote}"
