"""The operators' back-office: the admin site and its dashboard.

`admin_apps.WalletAdminConfig` replaces `django.contrib.admin` in INSTALLED_APPS,
so every `admin.site.register` / `@admin.register` lands on `WalletAdminSite`.

The dashboard is read with aggregate queries only (SUM/COUNT/MAX grouped in the
database): its cost does not grow with the number of wallets or entries beyond
what the indexes serve. The daily-volume chart is an SVG drawn on the server
from at most 30 x currencies aggregated rows: no JavaScript, no CDN.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import Any

from django.apps import apps
from django.conf import settings
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Max, Min, Q, Sum
from django.db.models.functions import TruncDate
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, URLResolver, path, reverse
from django.utils import timezone
from django.utils.http import urlencode
from django.utils.translation import gettext_lazy as _
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect

from accounts.roles import DASHBOARD_PERMISSION
from transactions.models import (
    Entry,
    Hold,
    Payout,
    Transaction,
    WebhookDelivery,
    WebhookEndpoint,
)
from wallet_project.admin_second_factor import setup_view, staff_view, verify_view
from wallets.models import Wallet
from wallets.money import quantum

CHART_DAYS = 30


class WalletAdminSite(admin.AdminSite):
    site_header = _("Wallet back-office")
    site_title = _("Wallet back-office")
    index_title = _("Operations")
    site_url = None  # the product has no HTML site to go back to

    def get_urls(self) -> list[URLResolver | URLPattern]:
        return [
            path(
                "second-factor/",
                staff_view(self, partial(verify_view, self)),
                name="second_factor",
            ),
            path(
                "second-factor/setup/",
                staff_view(self, partial(setup_view, self)),
                name="second_factor_setup",
            ),
            # Open without the second factor: one who gave only the password
            # may still leave (the admin's own would send them to the index).
            path("logout/", never_cache(csrf_protect(self.logout)), name="logout"),
            path("dashboard/", self.admin_view(self.dashboard), name="dashboard"),
            *super().get_urls(),
        ]

    def has_permission(self, request: HttpRequest) -> bool:
        """Staff, and verified by a second factor (django-otp's OTPAdminSite rule).
        SecondFactorMiddleware sends the unverified to the code page first."""
        user: Any = request.user  # is_verified: django-otp's OTPMiddleware
        return super().has_permission(request) and user.is_verified()

    def login(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        # The password is already given: the code is what is missing.
        user: Any = request.user
        if user.is_active and user.is_staff and not user.is_verified():
            query = urlencode({"next": request.GET.get("next", "")})
            return HttpResponseRedirect(f"{reverse('admin:second_factor')}?{query}")
        return super().login(request, extra_context)

    def each_context(self, request: HttpRequest) -> dict:
        context = super().each_context(request)
        # Every page links to the dashboard, for those who may see it.
        context["dashboard_allowed"] = request.user.has_perm(DASHBOARD_PERMISSION)
        return context

    def dashboard(self, request: HttpRequest) -> TemplateResponse:
        # Staff status only opens the admin's door; the house's figures need the
        # support role (or the permission granted on its own), like every page.
        if not request.user.has_perm(DASHBOARD_PERMISSION):
            raise PermissionDenied
        context = {
            **self.each_context(request),
            "title": _("Dashboard"),
            **dashboard_data(),
        }
        return TemplateResponse(request, "admin/dashboard.html", context)


# --- Dashboard data -------------------------------------------------------------------


def _model(label: str) -> Any:
    """A model another app adds (top-ups, fee charges, rates), or None before it exists."""
    try:
        return apps.get_model(label)
    except LookupError:
        return None


def _month_start(now: datetime) -> datetime:
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def dashboard_data(now: datetime | None = None) -> dict:
    now = now or timezone.now()
    month_start = _month_start(now)
    currencies = list(settings.WALLET_CURRENCIES)

    wallets = {
        row["currency"]: row
        for row in Wallet.objects.filter(kind=Wallet.Kind.USER)
        .values("currency")
        .annotate(
            total=Sum("balance"),
            wallets=Count("id"),
            blocked=Count("id", filter=Q(status=Wallet.Status.BLOCKED)),
        )
        .order_by()
    }
    fees = dict(
        Entry.objects.filter(
            wallet__kind=Wallet.Kind.SYSTEM,
            wallet__system_code=Wallet.SystemCode.FEES,
            transaction__kind=Transaction.Kind.FEE,
            # transaction.created_at is indexed; an entry is never older than it.
            transaction__created_at__gte=month_start,
            created_at__gte=month_start,
        )
        .values("currency")
        .annotate(total=Sum("amount"))
        .order_by()
        .values_list("currency", "total")
    )
    totals = [
        {
            "currency": currency,
            "balance": wallets.get(currency, {}).get("total") or Decimal("0.00"),
            "wallets": wallets.get(currency, {}).get("wallets", 0),
            "blocked": wallets.get(currency, {}).get("blocked", 0),
            "fees_this_month": fees.get(currency) or Decimal("0.00"),
        }
        for currency in currencies
    ]
    return {
        "now": now,
        "month_start": month_start,
        "totals": totals,
        "blocked_wallets": sum(row["blocked"] for row in totals),
        "fx_position": house_fx_position(currencies),
        "pending_adjustments": Transaction.objects.filter(
            kind=Transaction.Kind.ADJUSTMENT, status=Transaction.Status.PENDING
        ).count(),
        **_topups(),
        **_held(currencies),
        **_webhooks(),
        **_fee_run(),
        **_rates(now),
        "charts": volume_charts(now=now, currencies=currencies),
    }


def house_fx_position(currencies: list[str]) -> list[dict]:
    """Per currency, what the house holds through conversions: the balances of
    the `fx` and `fees` system wallets (each the sum of its entries: system
    wallets keep no balance column) and their total. The fx wallet of a
    currency is the other side of every exchange in or out of it; fees holds
    the spread and the monthly fees. One grouped query over those wallets'
    entries (their (wallet, id) index)."""
    codes = [Wallet.SystemCode.FX, Wallet.SystemCode.FEES]
    sums = {
        (row["currency"], row["wallet__system_code"]): row["total"]
        for row in Entry.objects.filter(
            wallet__kind=Wallet.Kind.SYSTEM, wallet__system_code__in=codes
        )
        .values("currency", "wallet__system_code")
        .annotate(total=Sum("amount"))
        .order_by()
    }
    position = []
    for currency in currencies:
        zero = Decimal(0).quantize(quantum(currency))
        fx = sums.get((currency, Wallet.SystemCode.FX)) or zero
        fees = sums.get((currency, Wallet.SystemCode.FEES)) or zero
        position.append(
            {"currency": currency, "fx": fx, "fees": fees, "total": fx + fees}
        )
    return position


def _topups() -> dict:
    TopUp = _model("transactions.TopUp")
    if TopUp is None:
        return {"topups_available": False}
    pending = TopUp.objects.filter(status="pending").aggregate(
        count=Count("id"), oldest=Min("created_at")
    )
    return {
        "topups_available": True,
        "pending_topups": pending["count"],
        "oldest_pending_topup": pending["oldest"],
    }


def _held(currencies: list[str]) -> dict:
    """Per currency, the money reserved by active holds (their sum and count)
    and the payouts awaiting the provider: two grouped queries."""
    holds = {
        row["currency"]: row
        for row in Hold.objects.filter(status=Hold.Status.ACTIVE)
        .values("currency")
        .annotate(total=Sum("amount"), count=Count("id"))
        .order_by()
    }
    payouts = dict(
        Payout.objects.filter(status=Payout.Status.PENDING)
        .values("currency")
        .annotate(count=Count("id"))
        .order_by()
        .values_list("currency", "count")
    )
    held = [
        {
            "currency": currency,
            "held": holds.get(currency, {}).get("total")
            or Decimal(0).quantize(quantum(currency)),
            "holds": holds.get(currency, {}).get("count", 0),
            "pending_payouts": payouts.get(currency, 0),
        }
        for currency in currencies
    ]
    return {
        "held": held,
        "pending_payouts": sum(row["pending_payouts"] for row in held),
    }


def _webhooks() -> dict:
    """Deliveries still to be made and the oldest one's due time (the partial
    index of pending deliveries serves both), and the enabled endpoints whose
    every delivery has been failing (few rows: a handful per user)."""
    pending = WebhookDelivery.objects.filter(
        status=WebhookDelivery.Status.PENDING
    ).aggregate(count=Count("id"), oldest_due=Min("next_attempt_at"))
    failing = WebhookEndpoint.objects.filter(
        status=WebhookEndpoint.Status.ENABLED, failing_since__isnull=False
    ).count()
    return {
        "pending_webhook_deliveries": pending["count"],
        "oldest_due_webhook_delivery": pending["oldest_due"],
        "failing_webhook_endpoints": failing,
    }


def _fee_run() -> dict:
    """When fees were last charged: the newest fee charge (or fee transaction),
    and the beat task's own last run when the schedule knows the fee task."""
    FeeCharge = _model("fees.FeeCharge")
    if FeeCharge is not None:
        last_charge = FeeCharge.objects.aggregate(last=Max("created_at"))["last"]
    else:
        last_charge = Transaction.objects.filter(kind=Transaction.Kind.FEE).aggregate(
            last=Max("created_at")
        )["last"]
    PeriodicTask = _model("django_celery_beat.PeriodicTask")
    last_beat = None
    if PeriodicTask is not None:
        last_beat = PeriodicTask.objects.filter(
            task__startswith="fees.", enabled=True
        ).aggregate(last=Max("last_run_at"))["last"]
    return {"last_fee_charge": last_charge, "last_fee_run": last_beat}


def _rates(now: datetime) -> dict:
    ExchangeRate = _model("wallets.ExchangeRate")
    if ExchangeRate is None:
        return {"rates_available": False}
    stamps = ExchangeRate.objects.aggregate(
        newest=Max("fetched_at"), oldest=Min("fetched_at"), pairs=Count("id")
    )
    oldest = stamps["oldest"]
    return {
        "rates_available": True,
        "last_rate_refresh": stamps["newest"],
        "rate_pairs": stamps["pairs"],
        "rates_stale": oldest is None or now - oldest > settings.RATE_MAX_AGE,
    }


# --- The daily volume chart (server-rendered SVG) ----------------------------------------


@dataclass(frozen=True)
class Bar:
    day: date
    amount: Decimal
    count: int
    x: float
    y: float
    height: float


@dataclass(frozen=True)
class Chart:
    currency: str
    bars: list[Bar]
    maximum: Decimal
    total: Decimal
    transactions: int
    width: int = 720
    height: int = 180
    left: int = 70
    bottom: int = 24
    bar_width: float = 18.0

    @property
    def plot_height(self) -> int:
        return self.height - self.bottom - 10

    @property
    def baseline(self) -> int:
        return self.height - self.bottom

    @property
    def labels(self) -> list[Bar]:
        """Every fifth day gets a date under its bar."""
        return self.bars[::5]


def volume_charts(*, now: datetime, currencies: list[str]) -> list[Chart]:
    """Money moved per day and currency over the last CHART_DAYS days.

    A transaction's volume is the sum of its credit legs (the debits mirror them),
    so each posted transaction counts once per currency it moved.
    """
    today = timezone.localdate(now)
    first = today - timedelta(days=CHART_DAYS - 1)
    start = timezone.make_aware(datetime.combine(first, datetime.min.time()))
    rows = (
        Entry.objects.filter(
            transaction__created_at__gte=start, created_at__gte=start, amount__gt=0
        )
        .annotate(day=TruncDate("created_at"))
        .values("day", "currency")
        .annotate(amount=Sum("amount"), count=Count("transaction_id", distinct=True))
        .order_by()
    )
    per_day: dict[tuple[str, date], tuple[Decimal, int]] = {
        (row["currency"], row["day"]): (row["amount"], row["count"]) for row in rows
    }
    days = [first + timedelta(days=i) for i in range(CHART_DAYS)]
    charts = []
    geometry = Chart("", [], Decimal(0), Decimal(0), 0)
    step = (geometry.width - geometry.left - 10) / CHART_DAYS
    for currency in currencies:
        values = [per_day.get((currency, day), (Decimal(0), 0)) for day in days]
        maximum = max((amount for amount, _count in values), default=Decimal(0))
        bars = []
        for i, (day, (amount, count)) in enumerate(zip(days, values, strict=True)):
            height = (
                float(amount / maximum) * geometry.plot_height if maximum > 0 else 0.0
            )
            bars.append(
                Bar(
                    day=day,
                    amount=amount,
                    count=count,
                    x=round(
                        geometry.left + i * step + (step - geometry.bar_width) / 2, 1
                    ),
                    y=round(geometry.baseline - height, 1),
                    height=round(height, 1),
                )
            )
        charts.append(
            Chart(
                currency,
                bars,
                maximum,
                total=sum((amount for amount, _count in values), Decimal(0)),
                transactions=sum(count for _amount, count in values),
            )
        )
    return charts
