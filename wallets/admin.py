"""Wallets in the back-office: found by number, owner email or id; balances, the
money held and what is available are shown and never editable; block, unblock
and adjust call the services, and each leaves a LogEntry with the operator's
reason."""

import uuid
from typing import Any, cast

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Model, Q, QuerySet, Sum
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_POST

from accounts.models import User
from transactions import ledger
from wallet_project.admin_forms import AdjustmentForm, ReasonForm, reason_action
from wallet_project.errors import DomainError
from wallet_project.replica import ReplicaChangelistMixin
from wallets import services
from wallets.models import ExchangeRate, Wallet


def wallet_transactions_url(wallet: Wallet) -> str:
    return f"{reverse('admin:transactions_transaction_changelist')}?wallet={wallet.pk}"


@admin.register(Wallet)
class WalletAdmin(ReplicaChangelistMixin, admin.ModelAdmin):
    list_display = [
        "number",
        "owner",
        "currency",
        "balance_display",
        "held_display",
        "available_display",
        "status",
        "kind",
        "system_code",
        "created_at",
    ]
    list_filter = ["currency", "status", "kind", "system_code"]
    list_select_related = ["owner"]
    search_fields = ["number", "owner__email"]
    search_help_text = _("Wallet number, owner email, or a wallet/owner id.")
    ordering = ["-created_at"]
    show_full_result_count = False
    actions = ["block_wallets", "unblock_wallets", "adjust_wallet"]
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "number",
                    "owner",
                    "kind",
                    "system_code",
                    "currency",
                    "name",
                    "balance_display",
                    "held_display",
                    "available_display",
                    "ledger_balance",
                ]
            },
        ),
        (
            _("Status"),
            {"fields": ["status", "blocked_reason", "next_fee_at", "transactions"]},
        ),
        (_("Dates"), {"fields": ["created_at", "updated_at"]}),
    ]
    readonly_fields = [
        "number",
        "owner",
        "kind",
        "system_code",
        "currency",
        "name",
        "balance_display",
        "held_display",
        "available_display",
        "ledger_balance",
        "status",
        "blocked_reason",
        "next_fee_at",
        "transactions",
        "created_at",
        "updated_at",
    ]

    # --- What operators see ------------------------------------------------------

    @admin.display(description=_("balance"), ordering="balance")
    def balance_display(self, wallet: Wallet) -> str:
        if wallet.kind == Wallet.Kind.SYSTEM:
            return str(_("(from entries)"))
        return f"{wallet.balance.amount:,.2f} {wallet.currency}"

    @admin.display(description=_("held"), ordering="held")
    def held_display(self, wallet: Wallet) -> str:
        """Reserved by active holds (payouts): still in the balance, not spendable."""
        if wallet.kind == Wallet.Kind.SYSTEM:
            return "—"
        return f"{wallet.held:,.2f} {wallet.currency}"

    @admin.display(description=_("available balance"))
    def available_display(self, wallet: Wallet) -> str:
        if wallet.kind == Wallet.Kind.SYSTEM:
            return "—"
        return f"{wallet.available_balance:,.2f} {wallet.currency}"

    @admin.display(description=_("sum of entries"))
    def ledger_balance(self, wallet: Wallet) -> str:
        """What the ledger says; equals the balance column on a user wallet."""
        total = wallet.entries.aggregate(total=Sum("amount"))["total"] or 0
        return f"{total:,.2f} {wallet.currency}"

    @admin.display(description=_("transactions"))
    def transactions(self, wallet: Wallet) -> str:
        return format_html(
            '<a href="{}">{}</a>', wallet_transactions_url(wallet), _("Transactions")
        )

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        try:
            wanted = uuid.UUID(search_term.strip())
        except ValueError:
            return super().get_search_results(request, queryset, search_term)
        return queryset.filter(Q(pk=wanted) | Q(owner_id=wanted)), False

    # --- Nobody edits a wallet row directly ------------------------------------------

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # wallets are opened by their owners (wallet_create)

    def has_delete_permission(
        self, request: HttpRequest, obj: Model | None = None
    ) -> bool:
        return False  # the ledger refers to them forever

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        wallet = self.get_object(request, object_id)
        extra_context = {
            **(extra_context or {}),
            "show_save": False,
            "show_save_and_continue": False,
            "show_save_and_add_another": False,
            "show_delete": False,
            "can_operate": wallet is not None
            and wallet.kind == Wallet.Kind.USER
            and self.has_change_permission(request, wallet),
        }
        return super().change_view(request, object_id, form_url, extra_context)

    def save_model(
        self, request: HttpRequest, obj: Model, form: Any, change: bool
    ) -> None:
        raise PermissionDenied  # every field is read-only; changes go through services

    # --- Operations: block, unblock, adjust ----------------------------------------

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view
        return [
            path(
                "<uuid:object_id>/block/",
                view(self.block_view),
                name="wallets_wallet_block",
            ),
            path(
                "<uuid:object_id>/unblock/",
                view(require_POST(self.unblock_view)),
                name="wallets_wallet_unblock",
            ),
            path(
                "<uuid:object_id>/adjust/",
                view(self.adjust_view),
                name="wallets_wallet_adjust",
            ),
            *super().get_urls(),
        ]

    def _user_wallet(self, request: HttpRequest, object_id: str) -> Wallet:
        wallet = get_object_or_404(Wallet, pk=object_id, kind=Wallet.Kind.USER)
        if not self.has_change_permission(request, wallet):
            raise PermissionDenied
        return wallet

    def _page(
        self, request: HttpRequest, wallet: Wallet, template: str, **context: Any
    ) -> HttpResponse:
        return TemplateResponse(
            request,
            template,
            {
                **self.admin_site.each_context(request),
                "opts": self.opts,
                "wallet": wallet,
                "original": wallet,
                **context,
            },
        )

    def _change_url(self, wallet: Wallet) -> str:
        return reverse("admin:wallets_wallet_change", args=[wallet.pk])

    def block_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        wallet = self._user_wallet(request, object_id)
        form = ReasonForm(request.POST if request.method == "POST" else None)
        if form.is_bound and form.is_valid():
            self._block(request, wallet, form.cleaned_data["reason"])
            return HttpResponseRedirect(self._change_url(wallet))
        return self._page(
            request,
            wallet,
            "admin/wallets/wallet/block.html",
            title=_("Block wallet %(number)s") % {"number": wallet.number},
            form=form,
        )

    def unblock_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        wallet = self._user_wallet(request, object_id)
        self._unblock(request, wallet)
        return HttpResponseRedirect(self._change_url(wallet))

    def adjust_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        wallet = self._user_wallet(request, object_id)
        form = AdjustmentForm(request.POST if request.method == "POST" else None)
        if form.is_bound and form.is_valid():
            amount = form.cleaned_data["amount"]
            reason = form.cleaned_data["reason"]
            try:
                pending = ledger.adjustment_request(
                    wallet=wallet,
                    amount=amount,
                    reason=reason,
                    requested_by=cast(User, request.user),  # admin_view: staff
                )
            except DomainError as error:
                form.add_error("amount", error.detail)
            else:
                self.log_change(
                    request,
                    wallet,
                    f"Requested adjustment {amount:+} {wallet.currency} "
                    f"(transaction {pending.pk}). Reason: {reason}",
                )
                self.message_user(
                    request,
                    _(
                        "Adjustment requested. It posts once a different operator "
                        "confirms it."
                    ),
                    messages.SUCCESS,
                )
                return HttpResponseRedirect(
                    reverse("admin:transactions_transaction_review", args=[pending.pk])
                )
        return self._page(
            request,
            wallet,
            "admin/wallets/wallet/adjust.html",
            title=_("Adjust wallet %(number)s") % {"number": wallet.number},
            form=form,
        )

    def _block(self, request: HttpRequest, wallet: Wallet, reason: str) -> None:
        ledger.wallet_block(wallet=wallet, reason=reason)
        self.log_change(request, wallet, f"Blocked. Reason: {reason}")
        self.message_user(
            request,
            _("Wallet %(number)s blocked.") % {"number": wallet.number},
            messages.SUCCESS,
        )

    def _unblock(self, request: HttpRequest, wallet: Wallet) -> None:
        if not wallet.is_blocked:
            self.message_user(
                request,
                _("Wallet %(number)s is not blocked.") % {"number": wallet.number},
                messages.WARNING,
            )
            return
        previous = wallet.blocked_reason
        ledger.wallet_unblock(wallet=wallet)
        self.log_change(request, wallet, f"Unblocked (was blocked: {previous}).")
        self.message_user(
            request,
            _("Wallet %(number)s unblocked.") % {"number": wallet.number},
            messages.SUCCESS,
        )

    @admin.action(description=_("Block selected wallets"), permissions=["change"])
    def block_wallets(
        self, request: HttpRequest, queryset: QuerySet[Any]
    ) -> TemplateResponse | None:
        def block(
            request: HttpRequest, wallets: QuerySet[Wallet], form: ReasonForm
        ) -> None:
            for wallet in wallets:
                self._block(request, wallet, form.cleaned_data["reason"])

        return reason_action(
            self,
            request,
            queryset.filter(kind=Wallet.Kind.USER),
            action="block_wallets",
            title=_("Block wallets"),
            intro=_(
                "A blocked wallet can receive money but cannot send it until it is "
                "unblocked."
            ),
            apply=block,
        )

    @admin.action(description=_("Unblock selected wallets"), permissions=["change"])
    def unblock_wallets(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        for wallet in queryset.filter(kind=Wallet.Kind.USER):
            self._unblock(request, wallet)

    @admin.action(
        description=_("Adjust the selected wallet (needs a second operator)"),
        permissions=["change"],
    )
    def adjust_wallet(
        self, request: HttpRequest, queryset: QuerySet[Any]
    ) -> HttpResponseRedirect | None:
        wallets = list(queryset.filter(kind=Wallet.Kind.USER)[:2])
        if len(wallets) != 1:
            self.message_user(
                request, _("Select exactly one user wallet to adjust."), messages.ERROR
            )
            return None
        return HttpResponseRedirect(
            reverse("admin:wallets_wallet_adjust", args=[wallets[0].pk])
        )


class ExchangeRateForm(forms.ModelForm):
    reason = forms.CharField(
        label=_("Reason"),
        max_length=200,
        help_text=_("Why this rate is set by hand; recorded in the audit log."),
    )

    class Meta:
        model = ExchangeRate
        fields = ["base", "quote", "rate"]
        widgets = {
            "base": forms.Select(choices=[(c, c) for c in settings.WALLET_CURRENCIES]),
            "quote": forms.Select(choices=[(c, c) for c in settings.WALLET_CURRENCIES]),
        }


@admin.register(ExchangeRate)
class ExchangeRateAdmin(admin.ModelAdmin):
    """Current rates. The provider refreshes them on a schedule; an operator may
    set one by hand (through `exchange_rate_set`, fresh from that moment)."""

    form = ExchangeRateForm
    list_display = ["pair", "rate", "source", "fetched_at", "is_fresh"]
    list_filter = ["base", "quote", "source"]
    ordering = ["base", "quote"]
    readonly_fields = ["source", "fetched_at"]
    actions = ["refresh_from_provider"]

    @admin.display(description=_("pair"), ordering="base")
    def pair(self, rate: ExchangeRate) -> str:
        return f"{rate.base}/{rate.quote}"

    @admin.display(description=_("fresh"), boolean=True)
    def is_fresh(self, rate: ExchangeRate) -> bool:
        return timezone.now() - rate.fetched_at <= settings.RATE_MAX_AGE

    def get_readonly_fields(
        self, request: HttpRequest, obj: Model | None = None
    ) -> list[str] | tuple[str, ...]:
        # A stored pair keeps its currencies: only its rate changes.
        return [*self.readonly_fields, "base", "quote"] if obj else self.readonly_fields

    def save_model(
        self, request: HttpRequest, obj: ExchangeRate, form: Any, change: bool
    ) -> None:
        stored = services.exchange_rate_set(
            base=obj.base,
            quote=obj.quote,
            rate=form.cleaned_data["rate"],
            source=f"manual: {cast(User, request.user).email}"[:100],
        )
        obj.pk, obj.source, obj.fetched_at = stored.pk, stored.source, stored.fetched_at

    # LogEntry keeps a str change message as it is (Django's own is a list).
    def construct_change_message(  # type: ignore[override]  # see above
        self, request: HttpRequest, form: Any, formsets: Any, add: bool = False
    ) -> str:
        rate = form.instance
        return (
            f"Set 1 {rate.base} = {form.cleaned_data['rate']} {rate.quote}. "
            f"Reason: {form.cleaned_data['reason']}"
        )

    @admin.action(
        description=_("Refresh all rates from the provider now"),
        permissions=["change"],
    )
    def refresh_from_provider(
        self, request: HttpRequest, queryset: QuerySet[Any]
    ) -> None:
        result = services.exchange_rates_refresh()
        if result.updated:
            self.message_user(
                request,
                _("Refreshed: %(pairs)s") % {"pairs": ", ".join(result.updated)},
                messages.SUCCESS,
            )
        for base, error in result.failed.items():
            self.message_user(request, f"{base}: {error}", messages.ERROR)
