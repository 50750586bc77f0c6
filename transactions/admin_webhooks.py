"""Events and webhooks in the back-office (registered from transactions/admin.py).

Events are the outbox: read-only for everyone, like the ledger they report.
Endpoints and deliveries are written by the delivery code; here an operator
with the change permission may only enable an endpoint again (one the delivery
code disabled for failing) and resend a delivery, each through
`transactions.webhooks` and each in the audit log (LogEntry). Their pages are
view-only for everyone: the change permission opens those operations, never a
form.

An endpoint's signing secrets are never loaded here (deferred on every query of
its admin) and never shown: only whether one is set and when a rotation's
previous secret stops signing.

This module stands in the ledger's layer for the import-linter (only
`transactions.admin` itself is exempt as an API module), so it imports no
`wallet_project` module and not `transactions.admin`: its small helpers are its
own.
"""

import json
from typing import TYPE_CHECKING, Any, TypedDict, cast

from django.contrib import admin, messages
from django.contrib.auth import get_permission_codename
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count, Model, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.defaultfilters import date as date_format
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_POST

from accounts.models import User
from transactions import webhooks
from transactions.models import Event, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from wallets.models import Wallet

if TYPE_CHECKING:
    from django_stubs_ext import StrOrPromise, WithAnnotations

    class _DeliveryCounts(TypedDict):
        """What WebhookEndpointAdmin.get_queryset annotates an endpoint with."""

        pending_deliveries: int
        failed_deliveries: int

    _CountedEndpoint = WithAnnotations[WebhookEndpoint, _DeliveryCounts]

SECRETS = ["secret", "previous_secret"]
_BIGINT_MAX = 2**63 - 1


def _link(viewname: str, pk: Any, text: str | None = None) -> str:
    if pk is None:
        return "—"
    return format_html(
        '<a href="{}">{}</a>',
        reverse(viewname, args=[pk]),
        pk if text is None else text,
    )


def _as_id(term: str) -> int | None:
    """A search term that can be a bigint primary key."""
    term = term.strip().lstrip("#")
    if term.isascii() and term.isdigit() and int(term) <= _BIGINT_MAX:
        return int(term)
    return None


def _when(value: Any) -> str | None:
    """A compact time for the lists (as the dashboard writes them); None shows
    as the admin's empty value."""
    return date_format(value, "Y-m-d H:i:s") if value else None


def _short_url(url: str, limit: int = 48) -> str:
    """A URL for a list column: without the scheme, cut at `limit`, whole on hover."""
    shown = url.removeprefix("https://").removeprefix("http://")
    if len(shown) > limit:
        shown = f"{shown[: limit - 1]}…"
    return format_html('<span title="{}">{}</span>', url, shown)


class _EventTypeFilter(admin.SimpleListFilter):
    """The event types as clients see them (`transaction.posted`)."""

    title = _("event type")
    field: str

    def lookups(
        self, request: HttpRequest, model_admin: admin.ModelAdmin
    ) -> "list[tuple[str, StrOrPromise]]":
        return [(value, value) for value in Event.Type.values]

    def queryset(
        self, request: HttpRequest, queryset: QuerySet[Any]
    ) -> QuerySet[Any] | None:
        if self.value() in Event.Type.values:
            return queryset.filter(**{self.field: self.value()})
        return queryset


def _pretty_json(value: Any) -> str:
    return format_html(
        "<pre>{}</pre>",
        json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str),
    )


def _may_change(request: HttpRequest, model: type[Model]) -> bool:
    opts = model._meta
    codename = get_permission_codename("change", opts)
    return request.user.has_perm(f"{opts.app_label}.{codename}")


class _ViewOnlyAdmin(admin.ModelAdmin):
    """Nobody adds, edits or deletes these rows in the admin, superusers
    included; operations are buttons and actions behind `_may_change`."""

    show_full_result_count = False
    change_list_template = "admin/transactions/webhooks_change_list.html"

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


class _ButtonAdmin(_ViewOnlyAdmin):
    """A view-only admin whose change form has one button (`button`: enable,
    resend) that POSTs to `<pk>/<button>/`: allowed to whoever may change the
    model (`can_<button>` in the form's context), done by `button_press(request,
    obj)` (which reports with message_user), then back to the change form."""

    button: str
    button_pk = "uuid"

    def has_button_permission(self, request: HttpRequest) -> bool:
        return _may_change(request, self.model)

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        extra_context = {
            **(extra_context or {}),
            f"can_{self.button}": self.has_button_permission(request),
        }
        return super().change_view(request, object_id, form_url, extra_context)

    def get_urls(self) -> list[URLPattern]:
        opts = self.model._meta
        return [
            path(
                f"<{self.button_pk}:object_id>/{self.button}/",
                self.admin_site.admin_view(require_POST(self.button_view)),
                name=f"{opts.app_label}_{opts.model_name}_{self.button}",
            ),
            *super().get_urls(),
        ]

    def button_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        if not self.has_button_permission(request):
            raise PermissionDenied
        obj = get_object_or_404(self.get_queryset(request), pk=object_id)
        self.button_press(request, obj)
        opts = self.model._meta
        return HttpResponseRedirect(
            reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])
        )

    def button_press(self, request: HttpRequest, obj: Any) -> None:
        raise NotImplementedError


class _ByIdFilter(admin.SimpleListFilter):
    """A filter set by links elsewhere in the admin (`?endpoint=<id>`), shown in
    the sidebar only while in use, so it can be cleared."""

    field: str
    model: type[Model]

    def lookups(
        self, request: HttpRequest, model_admin: admin.ModelAdmin
    ) -> "list[tuple[str, StrOrPromise]]":
        # A filter with no choices is dropped by the changelist: while in use it
        # always has one, so an unknown id lists nothing instead of everything.
        value = self.value()
        if value is None:
            return []
        wanted = self._wanted()
        obj = (
            None
            if wanted is None
            else self.model._default_manager.filter(pk=wanted).first()
        )
        return [(value, str(obj) if obj else _("unknown"))]

    def queryset(
        self, request: HttpRequest, queryset: QuerySet[Any]
    ) -> QuerySet[Any] | None:
        if self.value() is None:
            return queryset
        wanted = self._wanted()
        if wanted is None:
            return queryset.none()
        return queryset.filter(**{self.field: wanted})

    def _wanted(self) -> Any:
        try:
            return self.model._meta.pk.to_python(self.value())
        except ValidationError:  # a malformed id lists nothing
            return None


# --- Events -----------------------------------------------------------------------


class EventTypeFilter(_EventTypeFilter):
    parameter_name = "type"
    field = "type"


@admin.register(Event)
class EventAdmin(_ViewOnlyAdmin):
    list_display = [
        "id",
        "event_type",
        "wallet_link",
        "owner_email",
        "sequence",
        "created",
    ]
    list_filter = [EventTypeFilter]
    list_select_related = ["wallet", "user"]
    ordering = ["-id"]
    search_fields = ["id"]  # see get_search_results
    search_help_text = _("An event id, a wallet number or an owner's email.")
    fields = (
        "id",
        "event_type",
        "wallet_link",
        "owner_email",
        "sequence",
        "created_at",
        "deliveries",
        "data_pretty",
    )
    readonly_fields = fields

    @admin.display(description=_("event type"), ordering="type")
    def event_type(self, event: Event) -> str:
        return event.type

    @admin.display(description=_("created at"), ordering="created_at")
    def created(self, event: Event) -> str | None:
        return _when(event.created_at)

    @admin.display(description=_("wallet"), ordering="wallet__number")
    def wallet_link(self, event: Event) -> str:
        return _link(
            "admin:wallets_wallet_change", event.wallet_id, event.wallet.number
        )

    @admin.display(description=_("owner"), ordering="user__email")
    def owner_email(self, event: Event) -> str:
        return _link("admin:accounts_user_change", event.user_id, event.user.email)

    @admin.display(description=_("data"))
    def data_pretty(self, event: Event) -> str:
        return _pretty_json(event.data)

    @admin.display(description=_("webhook deliveries"))
    def deliveries(self, event: Event) -> str:
        url = reverse("admin:transactions_webhookdelivery_changelist")
        return format_html(
            '<a href="{}?event={}">{}</a>', url, event.pk, _("Webhook deliveries")
        )

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        """Exact matches, each on an index: the event id, the wallet's number,
        the owner's email."""
        term = search_term.strip()
        if not term:
            return queryset, False
        query = Q(wallet__in=Wallet.objects.filter(number=term.replace(" ", "")))
        query |= Q(user__in=User.objects.filter(email__iexact=term))
        if (event_id := _as_id(term)) is not None:
            query |= Q(pk=event_id)
        return queryset.filter(query), False


# --- Webhook endpoints ------------------------------------------------------------------


def _deliveries_count(status: str) -> Coalesce:
    """Per endpoint row, its deliveries in `status`: a correlated subquery on
    the delivery's endpoint index, evaluated for the page's rows only."""
    counted = (
        WebhookDelivery.objects.filter(endpoint=OuterRef("pk"), status=status)
        .order_by()
        .values("endpoint")
        .annotate(n=Count("id"))
        .values("n")
    )
    return Coalesce(Subquery(counted), 0)


def _deliveries_url(**params: Any) -> str:
    query = "&".join(f"{key}={value}" for key, value in params.items())
    return f"{reverse('admin:transactions_webhookdelivery_changelist')}?{query}"


class FailingFilter(admin.SimpleListFilter):
    title = _("failing")
    parameter_name = "failing"

    def lookups(
        self, request: HttpRequest, model_admin: admin.ModelAdmin
    ) -> "list[tuple[str, StrOrPromise]]":
        return [("yes", _("Yes")), ("no", _("No"))]

    def queryset(
        self, request: HttpRequest, queryset: QuerySet[Any]
    ) -> QuerySet[Any] | None:
        if self.value() == "yes":
            return queryset.filter(failing_since__isnull=False)
        if self.value() == "no":
            return queryset.filter(failing_since__isnull=True)
        return queryset


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(_ButtonAdmin):
    """An owner's endpoints. One failing for WEBHOOKS_DISABLE_AFTER is disabled
    by the delivery code; an operator may enable it again (`endpoint_enable`:
    its failing clock starts over)."""

    list_display = [
        "url_display",
        "owner_email",
        "event_types_display",
        "status",
        "failing",
        "pending_count",
        "failed_count",
        "created",
    ]
    list_filter = ["status", FailingFilter]
    list_select_related = ["user"]
    search_fields = ["url", "user__email"]
    search_help_text = _("Part of the URL or of the owner's email, or an endpoint id.")
    actions = ["enable_endpoints"]
    fields = (
        "id",
        "url",
        "owner_email",
        "event_types_display",
        "status",
        "secret_display",
        "failing_since",
        "disabled_at",
        "created_at",
        "updated_at",
        "deliveries",
    )
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return (
            super()
            .get_queryset(request)
            .defer(*SECRETS)
            .annotate(
                pending_deliveries=_deliveries_count(WebhookDelivery.Status.PENDING),
                failed_deliveries=_deliveries_count(WebhookDelivery.Status.FAILED),
            )
        )

    @admin.display(description=_("URL"), ordering="url")
    def url_display(self, endpoint: WebhookEndpoint) -> str:
        return _short_url(endpoint.url)

    @admin.display(description=_("failing since"), ordering="failing_since")
    def failing(self, endpoint: WebhookEndpoint) -> str | None:
        return _when(endpoint.failing_since)

    @admin.display(description=_("created at"), ordering="created_at")
    def created(self, endpoint: WebhookEndpoint) -> str | None:
        return _when(endpoint.created_at)

    @admin.display(description=_("owner"), ordering="user__email")
    def owner_email(self, endpoint: WebhookEndpoint) -> str:
        return _link(
            "admin:accounts_user_change", endpoint.user_id, endpoint.user.email
        )

    @admin.display(description=_("event types"))
    def event_types_display(self, endpoint: WebhookEndpoint) -> str:
        if endpoint.event_types == ["*"]:
            return str(_("all"))
        return ", ".join(endpoint.event_types)

    @admin.display(description=_("pending"), ordering="pending_deliveries")
    def pending_count(self, endpoint: "_CountedEndpoint") -> str:
        return format_html(
            '<a href="{}">{}</a>',
            _deliveries_url(endpoint=endpoint.pk, status__exact="pending"),
            endpoint.pending_deliveries,
        )

    @admin.display(description=_("failed"), ordering="failed_deliveries")
    def failed_count(self, endpoint: "_CountedEndpoint") -> str:
        return format_html(
            '<a href="{}">{}</a>',
            _deliveries_url(endpoint=endpoint.pk, status__exact="failed"),
            endpoint.failed_deliveries,
        )

    @admin.display(description=_("signing secret"))
    def secret_display(self, endpoint: WebhookEndpoint) -> str:
        """Never the secret, nor any part of it: it is not even loaded."""
        expires = endpoint.previous_secret_expires_at
        if expires is not None and expires > timezone.now():
            return _(
                "Set (shown to its owner only). Rotated: the previous secret "
                "also signs until %(time)s."
            ) % {"time": timezone.localtime(expires).strftime("%Y-%m-%d %H:%M %Z")}
        return str(_("Set (shown to its owner only)."))

    @admin.display(description=_("webhook deliveries"))
    def deliveries(self, endpoint: WebhookEndpoint) -> str:
        return format_html(
            '<a href="{}">{}</a>',
            _deliveries_url(endpoint=endpoint.pk),
            _("Webhook deliveries"),
        )

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        try:
            wanted = WebhookEndpoint._meta.pk.to_python(search_term.strip())
        except ValidationError:  # not an id: search the text fields
            return super().get_search_results(request, queryset, search_term)
        return queryset.filter(pk=wanted), False

    # --- Enable -----------------------------------------------------------------------

    button = "enable"

    def has_enable_permission(self, request: HttpRequest) -> bool:
        return self.has_button_permission(request)

    def button_press(self, request: HttpRequest, endpoint: WebhookEndpoint) -> None:
        if endpoint.status == WebhookEndpoint.Status.ENABLED:
            self.message_user(
                request,
                _("%(url)s is already enabled.") % {"url": endpoint.url},
                messages.WARNING,
            )
            return
        was = (
            f"disabled at {endpoint.disabled_at:%Y-%m-%d %H:%M %Z}"
            if endpoint.disabled_at
            else "disabled"
        )
        webhooks.endpoint_enable(endpoint, by=cast(User, request.user))
        self.log_change(request, endpoint, f"Enabled (was {was}).")
        self.message_user(
            request,
            _(
                "%(url)s enabled: new events reach it from now on; resend the "
                "deliveries that failed meanwhile if its owner needs them."
            )
            % {"url": endpoint.url},
            messages.SUCCESS,
        )

    @admin.action(description=_("Enable selected endpoints"), permissions=["enable"])
    def enable_endpoints(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        for endpoint in queryset:
            self.button_press(request, endpoint)


# --- Webhook deliveries ------------------------------------------------------------------


class DeliveryEventTypeFilter(_EventTypeFilter):
    parameter_name = "event_type"
    field = "event__type"


class EndpointFilter(_ByIdFilter):
    title = _("webhook endpoint")
    parameter_name = "endpoint"
    field = "endpoint_id"
    model = WebhookEndpoint


class EventFilter(_ByIdFilter):
    title = _("event")
    parameter_name = "event"
    field = "event_id"
    model = Event


class WebhookAttemptInline(admin.TabularInline):
    model = WebhookAttempt
    fields = ("started", "status_code", "duration_ms", "error", "response_excerpt")
    readonly_fields = fields
    extra = 0
    can_delete = False

    @admin.display(description=_("started at"))
    def started(self, attempt: WebhookAttempt) -> str | None:
        return _when(attempt.started_at)  # to the second: retries are minutes apart

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


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(_ButtonAdmin):
    """One event to one endpoint, with every HTTP attempt. An operator may
    resend a delivered or failed one: `delivery_resend` sets it pending and due
    now, and the delivery code sends it again."""

    list_display = [
        "id",
        "event_type",
        "endpoint_url",
        "owner_email",
        "status",
        "attempts",
        "next_attempt",
        "last_status_code",
        "created",
    ]
    list_filter = ["status", DeliveryEventTypeFilter, EndpointFilter, EventFilter]
    search_fields = ["id"]  # see get_search_results
    search_help_text = _("An event id, or part of an endpoint's URL or owner's email.")
    actions = ["resend_deliveries"]
    list_select_related = ["event", "endpoint__user"]
    inlines = [WebhookAttemptInline]
    fields = (
        "id",
        "event_link",
        "endpoint_link",
        "owner_email",
        "status",
        "attempts",
        "next_attempt_at",
        "last_status_code",
        "created_at",
        "delivered_at",
        "event_data",
    )
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return (
            super()
            .get_queryset(request)
            .select_related("event", "endpoint__user")
            .defer(*(f"endpoint__{name}" for name in SECRETS))
        )

    @admin.display(description=_("event type"), ordering="event__type")
    def event_type(self, delivery: WebhookDelivery) -> str:
        return delivery.event.type

    @admin.display(description=_("endpoint"), ordering="endpoint__url")
    def endpoint_url(self, delivery: WebhookDelivery) -> str:
        return _short_url(delivery.endpoint.url)

    @admin.display(description=_("next attempt at"), ordering="next_attempt_at")
    def next_attempt(self, delivery: WebhookDelivery) -> str | None:
        return _when(delivery.next_attempt_at)

    @admin.display(description=_("created at"), ordering="created_at")
    def created(self, delivery: WebhookDelivery) -> str | None:
        return _when(delivery.created_at)

    @admin.display(description=_("owner"), ordering="endpoint__user__email")
    def owner_email(self, delivery: WebhookDelivery) -> str:
        user = delivery.endpoint.user
        return _link("admin:accounts_user_change", user.pk, user.email)

    @admin.display(description=_("event"))
    def event_link(self, delivery: WebhookDelivery) -> str:
        event = delivery.event
        return _link(
            "admin:transactions_event_change", event.pk, f"{event.type} #{event.pk}"
        )

    @admin.display(description=_("endpoint"))
    def endpoint_link(self, delivery: WebhookDelivery) -> str:
        endpoint = delivery.endpoint
        return _link(
            "admin:transactions_webhookendpoint_change", endpoint.pk, endpoint.url
        )

    @admin.display(description=_("event data"))
    def event_data(self, delivery: WebhookDelivery) -> str:
        return _pretty_json(delivery.event.data)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        """An event id; otherwise the endpoints whose URL or owner's email
        contains the term (few rows), then their deliveries by the endpoint
        index."""
        term = search_term.strip()
        if not term:
            return queryset, False
        endpoints = WebhookEndpoint.objects.filter(
            Q(url__icontains=term) | Q(user__email__icontains=term)
        )
        query = Q(endpoint__in=endpoints.values("pk"))
        if (event_id := _as_id(term)) is not None:
            query |= Q(event_id=event_id)
        return queryset.filter(query), False

    # --- Resend ---------------------------------------------------------------------

    button = "resend"
    button_pk = "int"

    def has_resend_permission(self, request: HttpRequest) -> bool:
        return self.has_button_permission(request)

    def button_press(self, request: HttpRequest, delivery: WebhookDelivery) -> None:
        what = {"id": delivery.pk, "url": delivery.endpoint.url}
        was = f"{delivery.status} after {delivery.attempts} attempts"
        try:
            resent = webhooks.delivery_resend(delivery, by=cast(User, request.user))
        except webhooks.WebhookDeliveryPending:
            self.message_user(
                request,
                _("Delivery %(id)s to %(url)s is already pending.") % what,
                messages.WARNING,
            )
            return
        self.log_change(request, resent, f"Resent (was {was}).")
        self.message_user(
            request,
            _("Delivery %(id)s to %(url)s is pending again and will be sent now.")
            % what,
            messages.SUCCESS,
        )

    @admin.action(description=_("Resend selected deliveries"), permissions=["resend"])
    def resend_deliveries(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        for delivery in queryset.select_related("endpoint"):
            self.button_press(request, delivery)
