from typing import ClassVar

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _
from djmoney.models.fields import MoneyField


class FeeCharge(models.Model):
    """One wallet's monthly fee for one period.

    `period_start` is the instant the fee fell due (the wallet's `next_fee_at`
    when it was charged); the fee pays for the FEE_PERIOD that starts there. The
    unique (wallet, period_start) pair means a period is charged at most once,
    whatever retries, duplicate beat runs or parallel workers do.

    `amount` is in the wallet's currency, converted once when the charge is made
    (`rate`: 1 FEE_CURRENCY = rate wallet currency), so a debt keeps its amount
    until it is paid or waived.
    """

    class Status(models.TextChoices):
        PAID = "paid", _("paid")
        DEBT = "debt", _("debt")
        WAIVED = "waived", _("waived")

    id = models.BigAutoField(primary_key=True)
    wallet = models.ForeignKey(
        "wallets.Wallet",
        on_delete=models.PROTECT,
        related_name="fee_charges",
        db_index=False,  # the (wallet, period_start) unique index serves lookups
    )
    period_start = models.DateTimeField(_("period start"))
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
    objects: ClassVar[models.Manager["FeeCharge"]]
    _default_manager: ClassVar[models.Manager["FeeCharge"]]
    rate = models.DecimalField(
        _("rate"), max_digits=30, decimal_places=10, null=True, blank=True
    )
    status = models.CharField(_("status"), max_length=8, choices=Status.choices)
    transaction = models.OneToOneField(
        "transactions.Transaction",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="fee_charge",
    )
    paid_at = models.DateTimeField(_("paid at"), null=True, blank=True)
    waived_at = models.DateTimeField(_("waived at"), null=True, blank=True)
    waived_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("waived by"),
    )
    waived_reason = models.CharField(_("waive reason"), max_length=255, blank=True)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("fee charge")
        verbose_name_plural = _("fee charges")
        ordering = ["-period_start"]
        constraints = [
            models.UniqueConstraint(
                fields=["wallet", "period_start"], name="feecharge_one_per_period"
            ),
            models.CheckConstraint(
                condition=Q(amount__gt=0), name="feecharge_amount_positive"
            ),
            # Paid <=> it has the ledger transaction that paid it.
            models.CheckConstraint(
                condition=(Q(status="paid") & Q(transaction__isnull=False))
                | (~Q(status="paid") & Q(transaction__isnull=True)),
                name="feecharge_paid_has_transaction",
            ),
            models.CheckConstraint(
                condition=~Q(status="waived") | Q(waived_at__isnull=False),
                name="feecharge_waived_has_time",
            ),
        ]
        indexes = [
            # A wallet's outstanding debt, oldest first (collection, wallet detail).
            models.Index(
                fields=["wallet", "period_start"],
                condition=Q(status="debt"),
                name="feecharge_debt_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.amount} {self.status} ({self.period_start:%Y-%m-%d})"
