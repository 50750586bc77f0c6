import uuid
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.models import LogEntry
from django.contrib.admin.options import InlineModelAdmin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Model, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice
from rest_framework_simplejwt.token_blacklist.models import (
    BlacklistedToken,
    OutstandingToken,
)

from accounts.models import User, normalize_email
from accounts.second_factor import (
    recovery_codes_left,
    second_factor_reset,
    totp_device_confirmed,
)
from wallet_project.admin_forms import ReasonForm, reason_action
from wallet_project.replica import ReplicaChangelistMixin
from wallets.models import Wallet


def user_transactions_url(user: User) -> str:
    """The transactions changelist filtered to every wallet of `user`."""
    return f"{reverse('admin:transactions_transaction_changelist')}?owner={user.pk}"


class UserCreationForm(AdminUserCreationForm):
    class Meta:
        model = User
        fields = ("email",)

    def clean_email(self) -> str:
        email = normalize_email(self.cleaned_data["email"])
        if User.objects.filter(email=email).exists():
            raise forms.ValidationError(_("A user with this email already exists."))
        return email


class UserForm(UserChangeForm):
    class Meta:
        model = User
        fields = "__all__"

    def clean_email(self) -> str:
        email = normalize_email(self.cleaned_data["email"])
        if User.objects.filter(email=email).exclude(pk=self.instance.pk).exists():
            raise forms.ValidationError(_("A user with this email already exists."))
        return email


class WalletInline(admin.TabularInline):
    """A user's wallets, read-only: balances change only through the ledger."""

    model = Wallet
    fk_name = "owner"
    fields = ("number", "currency", "balance", "status", "blocked_reason", "created_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

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


@admin.register(User)
class UserAdmin(ReplicaChangelistMixin, DjangoUserAdmin):
    form = UserForm
    add_form = UserCreationForm
    ordering = ["-date_joined"]
    list_display = [
        "email",
        "phone_number",
        "first_name",
        "last_name",
        "is_active",
        "is_staff",
        "is_service",
        "date_joined",
        "transactions_link",
    ]
    list_filter = ["is_active", "is_staff", "is_service", "is_superuser", "groups"]
    search_fields = ["email", "phone_number", "first_name", "last_name"]
    readonly_fields = [
        "last_login",
        "date_joined",
        "transactions_link",
        "second_factor",
    ]
    fieldsets = [
        (None, {"fields": ["email", "password", "transactions_link"]}),
        (
            _("Personal info"),
            {"fields": ["first_name", "last_name", "phone_number", "profile_image"]},
        ),
        (
            _("Permissions"),
            {
                "fields": [
                    "is_active",
                    "is_service",
                    "is_staff",
                    "is_superuser",
                    "groups",
                    "user_permissions",
                    "second_factor",
                ]
            },
        ),
        (_("Important dates"), {"fields": ["last_login", "date_joined"]}),
    ]
    add_fieldsets = [
        (
            None,
            {
                "classes": ["wide"],
                "fields": [
                    "email",
                    "is_service",
                    "usable_password",
                    "password1",
                    "password2",
                ],
            },
        ),
    ]
    inlines = [WalletInline]
    actions = ["deactivate"]
    show_full_result_count = False

    @admin.display(description=_("transactions"))
    def transactions_link(self, user: User) -> str:
        if user.pk is None:
            return "—"
        return format_html(
            '<a href="{}">{}</a>', user_transactions_url(user), _("Transactions")
        )

    @admin.display(description=_("second factor"))
    def second_factor(self, user: User) -> str:
        device = totp_device_confirmed(user=user) if user.pk else None
        if device is None:
            return str(_("Not enrolled: set up at the next back-office login."))
        return _("Authenticator app; %(left)d of 10 recovery codes left.") % {
            "left": recovery_codes_left(user=user)
        }

    def get_inlines(
        self, request: HttpRequest, obj: Model | None
    ) -> list[type[InlineModelAdmin]]:
        return self.inlines if obj is not None else []

    # --- A superuser resets another operator's second factor ----------------------

    def get_urls(self) -> list[URLPattern]:
        return [
            path(
                "<path:object_id>/second-factor-reset/",
                self.admin_site.admin_view(self.second_factor_reset_view),
                name="accounts_user_second_factor_reset",
            ),
            *super().get_urls(),
        ]

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        extra_context = {
            **(extra_context or {}),
            "can_reset_second_factor": request.user.is_superuser
            and str(request.user.pk) != str(object_id),
        }
        return super().change_view(request, object_id, form_url, extra_context)

    def second_factor_reset_view(
        self, request: HttpRequest, object_id: str
    ) -> HttpResponse:
        target = get_object_or_404(User, pk=self._uuid_or_404(object_id))
        if not request.user.is_superuser or target.pk == request.user.pk:
            raise PermissionDenied
        form = ReasonForm(request.POST if request.method == "POST" else None)
        if form.is_bound and form.is_valid():
            ended = second_factor_reset(
                user=target, by=request.user, reason=form.cleaned_data["reason"]
            )
            self.message_user(
                request,
                _(
                    "The second factor of %(user)s is reset (%(sessions)d session(s) "
                    "ended). They set up a new one at their next login."
                )
                % {"user": target, "sessions": ended},
                messages.SUCCESS,
            )
            return HttpResponseRedirect(
                reverse("admin:accounts_user_change", args=[target.pk])
            )
        return TemplateResponse(
            request,
            "admin/accounts/user/second_factor_reset.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.opts,
                "original": target,
                "title": _("Reset the second factor of %(user)s") % {"user": target},
                "form": form,
            },
        )

    @staticmethod
    def _uuid_or_404(object_id: str) -> uuid.UUID:
        try:
            return uuid.UUID(str(object_id))
        except ValueError:
            raise Http404 from None

    @admin.action(
        description=_("Deactivate selected users (with a reason)"),
        permissions=["change"],
    )
    def deactivate(
        self, request: HttpRequest, queryset: QuerySet[Any]
    ) -> TemplateResponse | None:
        return reason_action(
            self,
            request,
            queryset,
            action="deactivate",
            title=_("Deactivate users"),
            intro=_(
                "Deactivated users cannot log in, and their refresh tokens are "
                "revoked. Their wallets and balances stay as they are."
            ),
            apply=self._deactivate,
        )

    def _deactivate(
        self, request: HttpRequest, users: QuerySet[User], form: ReasonForm
    ) -> None:
        reason = form.cleaned_data["reason"]
        done = 0
        for user in users:
            if user == request.user:
                self.message_user(
                    request, _("You cannot deactivate yourself."), messages.ERROR
                )
                continue
            with transaction.atomic():
                User.objects.filter(pk=user.pk).update(is_active=False)
                for token in OutstandingToken.objects.filter(user=user):
                    BlacklistedToken.objects.get_or_create(token=token)
                self.log_change(request, user, f"Deactivated. Reason: {reason}")
            done += 1
        if done:
            self.message_user(
                request,
                _("%(count)d user(s) deactivated.") % {"count": done},
                messages.SUCCESS,
            )


@admin.register(LogEntry)
class AuditLogAdmin(ReplicaChangelistMixin, admin.ModelAdmin):
    """The audit log: who (user), when (action_time), what (the object and the
    change), why (the reason each back-office action writes into the message).
    Read-only for everyone: an audit log that can be edited proves nothing."""

    list_display = [
        "action_time",
        "user",
        "action_flag",
        "content_type",
        "object_link",
        "message",
    ]
    list_filter = [
        "action_flag",
        ("action_time", admin.DateFieldListFilter),
        "content_type",
    ]
    list_select_related = ["user", "content_type"]
    search_fields = ["object_repr", "object_id", "change_message", "user__email"]
    date_hierarchy = None
    show_full_result_count = False
    fields = (
        "action_time",
        "user",
        "action_flag",
        "content_type",
        "object_id",
        "object_link",
        "message",
    )
    readonly_fields = fields

    @admin.display(description=_("object"))
    def object_link(self, entry: LogEntry) -> str:
        url = entry.get_admin_url()
        if not url:
            return entry.object_repr
        return format_html('<a href="{}">{}</a>', url, entry.object_repr)

    @admin.display(description=_("what and why"))
    def message(self, entry: LogEntry) -> str:
        return entry.get_change_message()

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


# Devices are managed through the operators' own enrolment and the superuser's reset
# (with a reason, audited); django-otp's own admin pages would show their keys.
admin.site.unregister(TOTPDevice)
admin.site.unregister(StaticDevice)
