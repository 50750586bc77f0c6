"""Forms and the intermediate "why?" page shared by the back-office's actions.

Every operator action that changes something asks for a reason, and the reason
goes into the admin's LogEntry (who = user, when = action_time, what = the
object and the message, why = the reason): the audit log."""

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied
from django.db.models import Model, QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

from wallet_project.replica import ReplicaChangelistMixin


class ReasonForm(forms.Form):
    reason = forms.CharField(
        label=_("Reason"),
        max_length=255,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        help_text=_("Recorded in the audit log with your name and the time."),
    )

    def clean_reason(self) -> str:
        reason = self.cleaned_data["reason"].strip()
        if not reason:
            raise forms.ValidationError(_("A reason is required."))
        return reason


class AdjustmentForm(ReasonForm):
    amount = forms.DecimalField(
        label=_("Amount"),
        max_digits=20,
        decimal_places=2,
        help_text=_("Positive credits the wallet, negative debits it."),
    )
    field_order = ["amount", "reason"]

    def clean_amount(self) -> Decimal:
        amount = self.cleaned_data["amount"]
        if amount == 0:
            raise forms.ValidationError(_("The amount must not be zero."))
        return amount


def reason_action(
    modeladmin: admin.ModelAdmin,
    request: HttpRequest,
    queryset: QuerySet,
    *,
    action: str,
    title: str | Promise,
    intro: str | Promise,
    apply: Callable[[HttpRequest, QuerySet, ReasonForm], object],
) -> TemplateResponse | None:
    """An admin action in two steps: ask for a reason, then `apply` it.

    Returning None sends the operator back to the changelist with the messages
    `apply` left; returning the page shows the form (again, with its errors).
    """
    form = ReasonForm(request.POST if "apply" in request.POST else None)
    if form.is_bound and form.is_valid():
        apply(request, queryset, form)
        return None
    opts = modeladmin.model._meta
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": title,
        "intro": intro,
        "objects": queryset,
        "form": form,
        "action": action,
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        "opts": opts,
        "app_label": opts.app_label,
    }
    return TemplateResponse(request, "admin/action_reason.html", context)


class ServiceOnlyAdmin(ReplicaChangelistMixin, admin.ModelAdmin):
    """Rows that only a service creates and changes (through the admin's actions):
    no add or delete, a change page without save buttons, and saving refused."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(
        self, request: HttpRequest, obj: Model | None = None
    ) -> bool:
        return False

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        extra_context = {
            **(extra_context or {}),
            "show_save": False,
            "show_save_and_continue": False,
            "show_save_and_add_another": False,
        }
        return super().change_view(request, object_id, form_url, extra_context)

    def save_model(
        self, request: HttpRequest, obj: Model, form: Any, change: bool
    ) -> None:
        raise PermissionDenied
