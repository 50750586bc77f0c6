"""Fee charges in the back-office: read-only, except that an operator may waive
an outstanding debt (through `fee_charge_waive`, with a reason); a paid fee is
refunded by reversing its transaction."""

from typing import Any, cast

from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from accounts.models import User
from fees.models import FeeCharge
from fees.services import fee_charge_waive
from wallet_project.admin_forms import ServiceOnlyAdmin, reason_action
from wallet_project.errors import DomainError


@admin.register(FeeCharge)
class FeeChargeAdmin(ServiceOnlyAdmin):
    """Charges are created by the fee run; only the waive action changes one."""

    list_display = [
        "wallet",
        "period_start",
        "amount",
        "status",
        "paid_at",
        "waived_by",
        "waived_reason",
    ]
    list_filter = ["status", "currency", ("period_start", admin.DateFieldListFilter)]
    list_select_related = ["wallet", "waived_by"]
    search_fields = ["wallet__number", "wallet__owner__email"]
    search_help_text = _("Wallet number or owner email.")
    ordering = ["-period_start"]
    show_full_result_count = False
    actions = ["waive"]
    readonly_fields = (
        "wallet",
        "period_start",
        "amount",
        "rate",
        "status",
        "transaction",
        "paid_at",
        "waived_at",
        "waived_by",
        "waived_reason",
        "refund",
        "created_at",
        "updated_at",
    )
    fields = readonly_fields

    @admin.display(description=_("refund"))
    def refund(self, charge: FeeCharge) -> str:
        """A paid fee is refunded by reversing its transaction (two operators,
        on the transaction's page); a debt is waived instead (the action)."""
        if charge.transaction_id is None:
            return str(_("A debt is not refunded: waive it."))
        url = reverse(
            "admin:transactions_transaction_reverse", args=[charge.transaction_id]
        )
        return format_html(
            '<a href="{}" id="refund-link">{}</a>', url, _("Refund (reverse the fee)")
        )

    @admin.action(description=_("Waive selected fee debts"), permissions=["change"])
    def waive(
        self, request: HttpRequest, queryset: QuerySet[Any]
    ) -> TemplateResponse | None:
        return reason_action(
            self,
            request,
            queryset.select_related("wallet"),
            action="waive",
            title=_("Waive fee debts"),
            intro=_(
                "A waived debt is forgiven: nothing is collected for it, and the "
                "wallet is unblocked once it owes nothing else."
            ),
            apply=self._waive,
        )

    def _waive(self, request: HttpRequest, charges: QuerySet[Any], form: Any) -> None:
        reason = form.cleaned_data["reason"]
        for charge in charges:
            try:
                fee_charge_waive(
                    charge=charge, waived_by=cast(User, request.user), reason=reason
                )
            except (DomainError, ValidationError) as error:
                detail = (
                    error.detail
                    if isinstance(error, DomainError)
                    else "; ".join(error.messages)
                )
                self.message_user(
                    request, f"{charge.wallet.number}: {detail}", messages.ERROR
                )
                continue
            self.log_change(
                request,
                charge,
                f"Waived fee of {charge.amount} for the period from "
                f"{charge.period_start:%Y-%m-%d}. Reason: {reason}",
            )
            self.message_user(
                request,
                _("Fee debt of %(amount)s on %(number)s waived.")
                % {"amount": charge.amount, "number": charge.wallet.number},
                messages.SUCCESS,
            )
