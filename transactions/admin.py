"""The ledger in the back-office: read-only for everyone, superusers included.

The ledger is corrected only by new transactions (adjustments, reversals), never
by editing or deleting one. Adjustments are requested on a wallet's page and
confirmed (or rejected) here by a different operator.
"""

import json
import uuid
from collections import defaultdict
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, cast

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Model, Prefetch, Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.functional import Promise
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _

from accounts.models import User
from transactions import ledger
from transactions.models import Entry, Hold, Payout, TopUp, Transaction
from wallet_project.admin_forms import ReasonForm, ServiceOnlyAdmin, reason_action
from wallet_project.errors import DomainError
from wallet_project.replica import ReplicaChangelistMixin
from wallets.models import Wallet
from wallets.money import money_str

if TYPE_CHECKING:
    from django_stubs_ext import StrOrPromise

ADJUST_PERMISSION = "wallets.change_wallet"


def _as_uuid(value: str | None) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value).strip())
    except ValueError:
        return None


class _ByIdFilter(admin.SimpleListFilter):
    """A filter set by links elsewhere in the admin (`?wallet=<id>`), shown in the
    sidebar only while it is in use, so it can be cleared."""

    model: type[Model]

    def lookups(
        self, request: HttpRequest, model_admin: admin.ModelAdmin
    ) -> "list[tuple[str, StrOrPromise]]":
        # A filter with no choices is dropped by the changelist: while in use it
        # always has one, so an unknown id lists nothing instead of everything.
        value = self.value()
        if value is None:
            return []
        wanted = _as_uuid(self.value())
        obj = wanted and self.model._default_manager.filter(pk=wanted).first()
        return [(value, str(obj) if obj else _("unknown"))]

    def queryset(
        self, request: HttpRequest, queryset: QuerySet[Any]
    ) -> QuerySet[Any] | None:
        if self.value() is None:
            return queryset
        wanted = _as_uuid(self.value())
        if wanted is None:
            return queryset.none()
        return queryset.filter(pk__in=self.entries(wanted).values("transaction_id"))

    def entries(self, wanted: uuid.UUID) -> QuerySet[Entry]:
        raise NotImplementedError


class WalletFilter(_ByIdFilter):
    title = _("wallet")
    parameter_name = "wallet"
    model = Wallet

    def entries(self, wanted: uuid.UUID) -> QuerySet[Entry]:
        return Entry.objects.filter(wallet_id=wanted)


class OwnerFilter(_ByIdFilter):
    title = _("user")
    parameter_name = "owner"
    model = User

    def entries(self, wanted: uuid.UUID) -> QuerySet[Entry]:
        return Entry.objects.filter(wallet__owner_id=wanted)


class EntryInline(admin.TabularInline):
    model = Entry
    fields = ("wallet", "amount", "balance_after", "created_at")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return super().get_queryset(request).select_related("wallet")

    def has_add_permission(
        self, request: HttpRequest, obj: Model | None = None
    ) -> bool:
        return False

    def has_change_permission(
        self, request: HttpRequest, obj: Model | None = None
    ) -> bool:
        return False

    def has_delete_permission(
        self, request: HttpRequest, obj: Model | None = None
    ) -> bool:
        return False


@admin.register(Transaction)
class TransactionAdmin(ReplicaChangelistMixin, admin.ModelAdmin):
    list_display = (
        "id",
        "kind",
        "status",
        "amounts",
        "description",
        "initiator",
        "created_at",
        "posted_at",
    )
    list_filter = [
        "kind",
        "status",
        ("created_at", admin.DateFieldListFilter),
        WalletFilter,
        OwnerFilter,
    ]
    list_select_related = ["initiator"]
    search_fields = ["id"]  # see get_search_results
    search_help_text = _("A transaction id, or a wallet number or id.")
    show_full_result_count = False
    inlines = [EntryInline]
    fields = (*list_display, "reverses_link", "reversals_links", "metadata_pretty")
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return (
            super()
            .get_queryset(request)
            .prefetch_related(
                Prefetch("entries", queryset=Entry.objects.order_by("id"))
            )
        )

    @admin.display(description=_("amount"))
    def amounts(self, txn: Transaction) -> str:
        """The money moved, per currency (the sum of the credit legs); a pending
        adjustment shows what it would move."""
        moved: dict[str, Decimal] = defaultdict(Decimal)
        for entry in txn.entries.all():
            if entry.amount.amount > 0:
                moved[entry.currency] += entry.amount.amount
        if not moved and "amount" in txn.metadata:
            return f"{txn.metadata['amount']} {txn.metadata.get('currency', '')}"
        return ", ".join(f"{amount:,.2f} {cur}" for cur, amount in moved.items())

    @admin.display(description=_("reverses"))
    def reverses_link(self, txn: Transaction) -> str:
        if txn.reverses_id is None:
            return "—"
        url = reverse("admin:transactions_transaction_change", args=[txn.reverses_id])
        return format_html('<a href="{}">{}</a>', url, txn.reverses_id)

    @admin.display(description=_("reversed by"))
    def reversals_links(self, txn: Transaction) -> str:
        links = [
            format_html(
                '<a href="{}">{}</a> ({})',
                reverse("admin:transactions_transaction_change", args=[r.pk]),
                r.pk,
                r.get_status_display(),
            )
            for r in txn.reversals.order_by("created_at")
        ]
        return (
            format_html_join(", ", "{}", ((link,) for link in links)) if links else "—"
        )

    @admin.display(description=_("metadata"))
    def metadata_pretty(self, txn: Transaction) -> str:
        return format_html(
            "<pre>{}</pre>", json.dumps(txn.metadata, indent=2, sort_keys=True)
        )

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        """A transaction id; a wallet id or number finds that wallet's transactions."""
        term = search_term.strip()
        if not term:
            return queryset, False
        wanted = _as_uuid(term)
        if wanted is not None:
            in_wallet = Entry.objects.filter(wallet_id=wanted).values("transaction_id")
            return queryset.filter(Q(pk=wanted) | Q(pk__in=in_wallet)), False
        by_number = Entry.objects.filter(wallet__number=term.replace(" ", ""))
        return queryset.filter(pk__in=by_number.values("transaction_id")), False

    # --- The ledger is append-only: no add/change/delete for anyone -----------------

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(
        self, request: HttpRequest, obj: Model | None = None
    ) -> bool:
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
        txn = self.get_object(request, object_id)
        extra_context = {
            **(extra_context or {}),
            "is_pending_adjustment": txn is not None
            and txn.kind == Transaction.Kind.ADJUSTMENT
            and txn.status == Transaction.Status.PENDING,
            "is_pending_reversal": txn is not None
            and txn.kind == Transaction.Kind.REVERSAL
            and txn.status == Transaction.Status.PENDING,
            "may_reverse": txn is not None
            and txn.status == Transaction.Status.POSTED
            and txn.kind != Transaction.Kind.REVERSAL
            and request.user.has_perm(ADJUST_PERMISSION),
        }
        return super().change_view(request, object_id, form_url, extra_context)

    # --- Two-person adjustments ---------------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        return [
            path(
                "<uuid:object_id>/review/",
                self.admin_site.admin_view(self.review_view),
                name="transactions_transaction_review",
            ),
            path(
                "<uuid:object_id>/reverse/",
                self.admin_site.admin_view(self.reverse_view),
                name="transactions_transaction_reverse",
            ),
            *super().get_urls(),
        ]

    def review_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Confirm or reject a pending adjustment. Whoever requested it may only
        withdraw it (reject); a different operator confirms it."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        txn = get_object_or_404(
            Transaction,
            pk=object_id,
            kind__in=[Transaction.Kind.ADJUSTMENT, Transaction.Kind.REVERSAL],
        )
        if txn.kind == Transaction.Kind.REVERSAL:
            return self._reversal_review(request, txn)
        may_decide = request.user.has_perm(ADJUST_PERMISSION)
        if request.method == "POST":
            if not may_decide:
                raise PermissionDenied
            self._decide(request, txn, request.POST.get("decision", ""))
            return HttpResponseRedirect(request.path)
        metadata = txn.metadata
        wallet = Wallet.objects.filter(pk=metadata.get("wallet_id")).first()
        amount = Decimal(metadata.get("amount", "0"))
        own_request = metadata.get("requested_by") == str(request.user.pk)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": _("Adjustment %(id)s") % {"id": txn.pk},
            "txn": txn,
            "original": txn,
            "wallet": wallet,
            "amount": amount,
            "balance_after": (wallet.balance.amount + amount) if wallet else None,
            "is_pending": txn.status == Transaction.Status.PENDING,
            "may_decide": may_decide,
            "may_approve": may_decide and not own_request,
            "own_request": own_request,
        }
        return TemplateResponse(
            request, "admin/transactions/transaction/review.html", context
        )

    # --- Two-person reversals -----------------------------------------------------------

    def reverse_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Request a reversal of a posted transaction (all of what is left, or
        an amount in its first leg's currency) with a reason; a different
        operator confirms it on the review page."""
        if not request.user.has_perm(ADJUST_PERMISSION):
            raise PermissionDenied
        original = get_object_or_404(Transaction, pk=object_id)
        error: str | Promise | None = None
        try:
            plan = ledger.reversal_plan(original)
        except DomainError as refusal:
            self.message_user(request, refusal.detail, messages.ERROR)
            return HttpResponseRedirect(
                reverse("admin:transactions_transaction_change", args=[original.pk])
            )
        if request.method == "POST":
            raw = request.POST.get("amount", "").strip()
            try:
                amount = Decimal(raw) if raw else None
                if amount is not None and not amount.is_finite():
                    raise ValueError
                pending = ledger.reversal_request(
                    original=original,
                    amount=amount,
                    reason=request.POST.get("reason", ""),
                    requested_by=cast(User, request.user),  # admin_view: staff
                )
            except (ArithmeticError, ValueError):
                error = _("Write the amount as digits, e.g. 100.50.")
            except DomainError as refusal:
                error = refusal.detail
            else:
                message = (
                    f"Requested a reversal of {pending.metadata['reversed_amount']} "
                    f"{pending.metadata['currency']} of {original.kind} {original.pk}. "
                    f"Reason: {pending.metadata['reason']}"
                )
                self.log_change(request, original, message)
                self.message_user(request, message, messages.SUCCESS)
                return HttpResponseRedirect(
                    reverse("admin:transactions_transaction_review", args=[pending.pk])
                )
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": _("Reverse %(kind)s %(id)s")
            % {"kind": original.get_kind_display(), "id": original.pk},
            "original": original,
            "txn": original,
            "remaining": money_str(plan.remaining, plan.currency),
            "currency": plan.currency,
            "error": error,
            "amount": request.POST.get("amount", ""),
            "reason": request.POST.get("reason", ""),
        }
        return TemplateResponse(
            request, "admin/transactions/transaction/reverse.html", context
        )

    def _reversal_review(self, request: HttpRequest, txn: Transaction) -> HttpResponse:
        may_decide = request.user.has_perm(ADJUST_PERMISSION)
        if request.method == "POST":
            if not may_decide:
                raise PermissionDenied
            self._decide_reversal(request, txn, request.POST.get("decision", ""))
            return HttpResponseRedirect(request.path)
        own_request = txn.metadata.get("requested_by") == str(request.user.pk)
        is_pending = txn.status == Transaction.Status.PENDING
        legs = []
        if is_pending and txn.reverses is not None:  # a reversal reverses one
            entries = txn.reverses.entries.select_related("wallet").order_by("id")
            amounts = [Decimal(a) for a in txn.metadata.get("legs", [])]
            legs = [
                (entry.wallet, money_str(amount, str(entry.currency)), entry.currency)
                for entry, amount in zip(entries, amounts, strict=False)
                if amount
            ]
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": _("Reversal %(id)s") % {"id": txn.pk},
            "txn": txn,
            "original": txn,
            "legs": legs,
            "is_pending": is_pending,
            "may_decide": may_decide,
            "may_approve": may_decide and not own_request,
            "own_request": own_request,
        }
        return TemplateResponse(
            request, "admin/transactions/transaction/reversal_review.html", context
        )

    def _decide_reversal(
        self, request: HttpRequest, txn: Transaction, decision: str
    ) -> None:
        metadata = txn.metadata
        self._decide_pending(
            request,
            txn,
            decision,
            what=(
                f"reversal of {metadata['reversed_amount']} {metadata['currency']} "
                f"of transaction {metadata['reverses']}"
            ),
            approve=ledger.reversal_approve,
            reject=ledger.reversal_reject,
            also_logged=txn.reverses,
        )

    def _decide(self, request: HttpRequest, txn: Transaction, decision: str) -> None:
        metadata = txn.metadata
        self._decide_pending(
            request,
            txn,
            decision,
            what=(
                f"adjustment {Decimal(metadata['amount']):+} {metadata['currency']} "
                f"on wallet {metadata['wallet_number']}"
            ),
            approve=ledger.adjustment_approve,
            reject=ledger.adjustment_reject,
            also_logged=Wallet.objects.filter(pk=metadata["wallet_id"]).first(),
        )

    def _decide_pending(
        self,
        request: HttpRequest,
        txn: Transaction,
        decision: str,
        *,
        what: str,
        approve: Callable[..., object],
        reject: Callable[..., object],
        also_logged: Model | None,
    ) -> None:
        """A second operator's decision on a four-eyes request: approve or
        reject through the ledger, the outcome in the audit log of the request
        and of `also_logged` (the reversed transaction, the adjusted wallet)."""
        try:
            if decision == "approve":
                approve(transaction=txn, approved_by=cast(User, request.user))
                message = f"Approved {what}. Reason: {txn.metadata['reason']}"
            elif decision == "reject":
                note = request.POST.get("note", "").strip()
                reject(transaction=txn, rejected_by=cast(User, request.user), note=note)
                message = f"Rejected {what}. Note: {note or '-'}"
            else:
                self.message_user(request, _("Unknown decision."), messages.ERROR)
                return
        except DomainError as error:
            self.message_user(request, error.detail, messages.ERROR)
            return
        txn.refresh_from_db()
        self.log_change(request, txn, message)
        if also_logged is not None:
            self.log_change(request, also_logged, message)
        self.message_user(request, message, messages.SUCCESS)


@admin.register(TopUp)
class TopUpAdmin(ServiceOnlyAdmin):
    """Top-ups awaiting the payment provider. An operator may decide one when
    the provider's callback never came: approve (paid) or reject, each through
    `topup_decide`, with a reason in the audit log."""

    list_display = [
        "id",
        "wallet",
        "amount",
        "status",
        "commission",
        "provider_reference",
        "created_at",
        "decided_by",
        "decided_at",
        "transaction_link",
    ]
    list_filter = ["status", "currency", ("created_at", admin.DateFieldListFilter)]
    list_select_related = ["wallet", "decided_by", "transaction"]
    search_fields = ["wallet__number", "provider_reference", "wallet__owner__email"]
    search_help_text = _(
        "A top-up id, wallet number, owner email or provider reference."
    )
    show_full_result_count = False
    actions = ["approve_topups", "reject_topups"]
    fields = (
        "id",
        "wallet",
        "amount",
        "status",
        "commission",
        "provider_reference",
        "created_by",
        "created_at",
        "decided_by",
        "decided_at",
        "transaction_link",
    )
    readonly_fields = fields

    @admin.display(description=_("transaction"))
    def transaction_link(self, topup: TopUp) -> str:
        if topup.transaction_id is None:
            return "—"
        url = reverse(
            "admin:transactions_transaction_change", args=[topup.transaction_id]
        )
        return format_html('<a href="{}">{}</a>', url, topup.transaction_id)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        wanted = _as_uuid(search_term)
        if wanted is not None:
            return queryset.filter(pk=wanted), False
        return super().get_search_results(request, queryset, search_term)

    def _decide(
        self,
        request: HttpRequest,
        topups: QuerySet[TopUp],
        form: ReasonForm,
        status: str,
        verb: str,
    ) -> None:
        reason = form.cleaned_data["reason"]
        for topup in topups:
            try:
                ledger.topup_decide(
                    topup_id=topup.pk,
                    status=status,
                    decided_by=cast(User, request.user),
                )
            except DomainError as error:
                self.message_user(
                    request, f"{topup.wallet.number}: {error.detail}", messages.ERROR
                )
                continue
            topup.refresh_from_db()
            self.log_change(
                request, topup, f"{verb} top-up of {topup.amount}. Reason: {reason}"
            )
            self.message_user(
                request,
                _("Top-up of %(amount)s to %(number)s: %(status)s.")
                % {
                    "amount": topup.amount,
                    "number": topup.wallet.number,
                    "status": topup.get_status_display(),
                },
                messages.SUCCESS,
            )

    @admin.action(
        description=_("Approve selected top-ups (paid)"), permissions=["change"]
    )
    def approve_topups(
        self, request: HttpRequest, queryset: QuerySet[Any]
    ) -> TemplateResponse | None:
        return reason_action(
            self,
            request,
            queryset.select_related("wallet"),
            action="approve_topups",
            title=_("Approve top-ups"),
            intro=_(
                "Each top-up is marked paid: the wallet is credited from the provider "
                "and the provider's commission is taken, in one ledger transaction."
            ),
            apply=lambda request, topups, form: self._decide(
                request, topups, form, TopUp.Status.PAID, "Approved"
            ),
        )

    @admin.action(description=_("Reject selected top-ups"), permissions=["change"])
    def reject_topups(
        self, request: HttpRequest, queryset: QuerySet[Any]
    ) -> TemplateResponse | None:
        return reason_action(
            self,
            request,
            queryset.select_related("wallet"),
            action="reject_topups",
            title=_("Reject top-ups"),
            intro=_("Rejected top-ups move no money."),
            apply=lambda request, topups, form: self._decide(
                request, topups, form, TopUp.Status.REJECTED, "Rejected"
            ),
        )


# --- Holds and payouts --------------------------------------------------------------
#
# Money reserved on a wallet (holds) and money going out through the provider
# (payouts, each on its own hold). Rows written only by the ledger; an operator
# may void a hold or fail a payout, each through its service, with a reason in
# the audit log. A payout's hold is resolved through the payout, never directly.


class AgeFilter(admin.SimpleListFilter):
    """How long ago the row was created: what is stuck shows up as "older"."""

    title = _("age")
    parameter_name = "age"

    def lookups(
        self, request: HttpRequest, model_admin: admin.ModelAdmin
    ) -> "list[tuple[str, StrOrPromise]]":
        return [
            ("hour", _("Last hour")),
            ("day", _("Last 24 hours")),
            ("older", _("Older than a day")),
        ]

    def queryset(
        self, request: HttpRequest, queryset: QuerySet[Any]
    ) -> QuerySet[Any] | None:
        now = timezone.now()
        if self.value() == "hour":
            return queryset.filter(created_at__gte=now - timedelta(hours=1))
        if self.value() == "day":
            return queryset.filter(created_at__gte=now - timedelta(days=1))
        if self.value() == "older":
            return queryset.filter(created_at__lt=now - timedelta(days=1))
        return queryset


def _link(viewname: str, pk: Any, text: str | None = None) -> str:
    if pk is None:
        return "—"
    return format_html(
        '<a href="{}">{}</a>',
        reverse(viewname, args=[pk]),
        pk if text is None else text,
    )


def _wallet_link(wallet: Wallet) -> str:
    return _link("admin:wallets_wallet_change", wallet.pk, wallet.number)


@admin.register(Hold)
class HoldAdmin(ServiceOnlyAdmin):
    """Holds: active ones are in their wallet's `held`. An operator may void an
    active hold (released, nothing posted) through `hold_void`, with a reason;
    a payout's hold is refused there: fail the payout instead."""

    list_display = [
        "id",
        "wallet_link",
        "amount_display",
        "status",
        "description",
        "reason",
        "payout_link",
        "created_at",
        "expires_at",
        "resolved_by",
        "resolved_at",
        "transaction_link",
    ]
    list_filter = ["status", "currency", AgeFilter]
    list_select_related = ["wallet", "resolved_by", "payout"]
    search_fields = ["wallet__number", "wallet__owner__email"]
    search_help_text = _("A hold or payout id, wallet number or owner email.")
    show_full_result_count = False
    actions = ["void_holds"]
    fields = (
        "id",
        "wallet",
        "amount_display",
        "status",
        "description",
        "reason",
        "payout_link",
        "created_by",
        "created_at",
        "expires_at",
        "resolved_by",
        "resolved_at",
        "captured_amount",
        "transaction_link",
    )
    readonly_fields = fields

    @admin.display(description=_("wallet"), ordering="wallet__number")
    def wallet_link(self, hold: Hold) -> str:
        return _wallet_link(hold.wallet)

    @admin.display(description=_("amount"), ordering="amount")
    def amount_display(self, hold: Hold) -> str:
        return f"{money_str(hold.amount, hold.currency)} {hold.currency}"

    @admin.display(description=_("payout"))
    def payout_link(self, hold: Hold) -> str:
        payout = getattr(hold, "payout", None)  # the reverse one-to-one may be absent
        return _link("admin:transactions_payout_change", payout and payout.pk)

    @admin.display(description=_("transaction"))
    def transaction_link(self, hold: Hold) -> str:
        return _link("admin:transactions_transaction_change", hold.transaction_id)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        wanted = _as_uuid(search_term)
        if wanted is not None:
            return queryset.filter(Q(pk=wanted) | Q(payout__pk=wanted)), False
        return super().get_search_results(request, queryset, search_term.strip())

    def _void(self, request: HttpRequest, holds: QuerySet[Any], form: Any) -> None:
        reason = form.cleaned_data["reason"]
        for hold in holds:
            what = f"{money_str(hold.amount, hold.currency)} {hold.currency}"
            try:
                ledger.hold_void(
                    hold_id=hold.pk, reason=reason, resolved_by=cast(User, request.user)
                )
            except DomainError as error:
                self.message_user(
                    request, f"{hold.wallet.number}: {error.detail}", messages.ERROR
                )
                continue
            self.log_change(request, hold, f"Voided hold of {what}. Reason: {reason}")
            self.message_user(
                request,
                _("Hold of %(amount)s on %(number)s voided: the money is available.")
                % {"amount": what, "number": hold.wallet.number},
                messages.SUCCESS,
            )

    @admin.action(description=_("Void selected holds"), permissions=["change"])
    def void_holds(
        self, request: HttpRequest, queryset: QuerySet[Any]
    ) -> TemplateResponse | None:
        return reason_action(
            self,
            request,
            queryset.select_related("wallet"),
            action="void_holds",
            title=_("Void holds"),
            intro=_(
                "Each hold is released: its money is available to the wallet again "
                "and nothing is posted. A payout's hold is not voided here: fail "
                "the payout instead."
            ),
            apply=self._void,
        )


@admin.register(Payout)
class PayoutAdmin(ServiceOnlyAdmin):
    """Payouts awaiting the payment provider. An operator may fail a pending one
    (its hold is released, nothing posted) through `payout_decide`, with a
    reason kept on the payout and in the audit log."""

    list_display = [
        "id",
        "wallet_link",
        "amount",
        "status",
        "destination",
        "provider_reference",
        "failure_reason",
        "created_at",
        "expires_at",
        "decided_by",
        "decided_at",
        "hold_link",
        "transaction_link",
    ]
    list_filter = ["status", "currency", AgeFilter]
    list_select_related = ["wallet", "decided_by"]
    search_fields = [
        "wallet__number",
        "destination",
        "provider_reference",
        "wallet__owner__email",
    ]
    search_help_text = _(
        "A payout id, wallet number, destination, provider reference or owner email."
    )
    show_full_result_count = False
    actions = ["fail_payouts"]
    fields = (
        "id",
        "wallet",
        "amount",
        "status",
        "destination",
        "description",
        "provider_reference",
        "failure_reason",
        "created_by",
        "created_at",
        "expires_at",
        "decided_by",
        "decided_at",
        "hold_link",
        "transaction_link",
    )
    readonly_fields = fields

    @admin.display(description=_("wallet"), ordering="wallet__number")
    def wallet_link(self, payout: Payout) -> str:
        return _wallet_link(payout.wallet)

    @admin.display(description=_("hold"))
    def hold_link(self, payout: Payout) -> str:
        return _link("admin:transactions_hold_change", payout.hold_id)

    @admin.display(description=_("transaction"))
    def transaction_link(self, payout: Payout) -> str:
        return _link("admin:transactions_transaction_change", payout.transaction_id)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        term = search_term.strip()
        wanted = _as_uuid(term)
        if wanted is not None:  # a card token may look like a uuid too
            return queryset.filter(Q(pk=wanted) | Q(destination=term)), False
        return super().get_search_results(request, queryset, term)

    def _fail(self, request: HttpRequest, payouts: QuerySet[Any], form: Any) -> None:
        reason = form.cleaned_data["reason"]
        for payout in payouts:
            started = timezone.now()
            try:
                decided = ledger.payout_decide(
                    payout_id=payout.pk,
                    status=Payout.Status.FAILED,
                    decided_by=cast(User, request.user),
                    reason=reason,
                )
                # The service answers a repeated decision with the payout as it
                # was (idempotent for the provider); here it changed nothing.
                if decided.decided_at is None or decided.decided_at < started:
                    raise ledger.PayoutAlreadyDecided(
                        status=decided.get_status_display()
                    )
            except DomainError as error:
                self.message_user(
                    request, f"{payout.wallet.number}: {error.detail}", messages.ERROR
                )
                continue
            self.log_change(
                request,
                decided,
                f"Failed payout of {decided.amount} to {decided.destination}. "
                f"Reason: {reason}",
            )
            self.message_user(
                request,
                _("Payout of %(amount)s from %(number)s: %(status)s.")
                % {
                    "amount": decided.amount,
                    "number": payout.wallet.number,
                    "status": decided.get_status_display(),
                },
                messages.SUCCESS,
            )

    @admin.action(description=_("Fail selected payouts"), permissions=["change"])
    def fail_payouts(
        self, request: HttpRequest, queryset: QuerySet[Any]
    ) -> TemplateResponse | None:
        return reason_action(
            self,
            request,
            queryset.select_related("wallet"),
            action="fail_payouts",
            title=_("Fail payouts"),
            intro=_(
                "Each pending payout is marked failed: its hold is released, the "
                "money is available to the wallet again, and nothing is posted. "
                "The reason is kept on the payout."
            ),
            apply=self._fail,
        )


from transactions import admin_webhooks  # noqa: E402, F401 - registers events and webhooks
