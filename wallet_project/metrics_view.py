"""GET /metrics of the web processes: what every process counted
(wallet_project.metrics) and a few gauges read from PostgreSQL at scrape time.

The gauges are the database's truth, so they hold across restarts and are the
same whichever process is scraped: how old each exchange rate is, what waits
for the payment provider, what waits to be delivered, and the wallets whose fee
is due (a fee run that did not finish leaves them due). One query, computed by
the process that answers the scrape only.
"""

from __future__ import annotations

from collections.abc import Iterator

from django.conf import settings
from django.db import Error as DatabaseError
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from fees.models import FeeCharge
from transactions.models import Payout, TopUp, WebhookDelivery
from wallet_project import metrics
from wallets.models import ExchangeRate, Wallet

_DUE = f"kind = '{Wallet.Kind.USER.value}' AND next_fee_at <= clock_timestamp()"
_GAUGES_SQL = f"""
SELECT (SELECT count(*) FROM {TopUp._meta.db_table}
         WHERE status = '{TopUp.Status.PENDING.value}'),
       (SELECT count(*) FROM {Payout._meta.db_table}
         WHERE status = '{Payout.Status.PENDING.value}'),
       (SELECT count(*) FROM {WebhookDelivery._meta.db_table}
         WHERE status = '{WebhookDelivery.Status.PENDING.value}'),
       (SELECT count(*) FROM {Wallet._meta.db_table} WHERE {_DUE}),
       (SELECT extract(epoch FROM clock_timestamp() - min(next_fee_at))
          FROM {Wallet._meta.db_table} WHERE {_DUE}),
       (SELECT count(*) FROM {FeeCharge._meta.db_table}
         WHERE status = '{FeeCharge.Status.DEBT.value}')
"""  # noqa: S608 - model names and enum values only

_RATES_SQL = f"""
SELECT base, quote, extract(epoch FROM clock_timestamp() - fetched_at)
  FROM {ExchangeRate._meta.db_table} ORDER BY base, quote
"""  # noqa: S608 - model table names only


class DatabaseCollector(Collector):
    """The scrape-time gauges; nothing (and a `wallet_metrics_database_up`
    of 0) when the database does not answer, so the counters still arrive."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily(
            "wallet_metrics_database_up",
            "1 if this scrape could read the database gauges.",
        )
        try:
            with connection.cursor() as cursor:
                cursor.execute(_GAUGES_SQL)
                topups, payouts, deliveries, due, oldest_due, debts = cursor.fetchone()
                cursor.execute(_RATES_SQL)
                rates = cursor.fetchall()
        except DatabaseError:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        for name, help_text, value in (
            ("wallet_topups_pending", "Top-ups waiting for the provider.", topups),
            ("wallet_payouts_pending", "Payouts waiting for the provider.", payouts),
            (
                "wallet_webhook_deliveries_pending",
                "Webhook deliveries not yet delivered or given up.",
                deliveries,
            ),
            (
                "wallet_fee_wallets_due",
                "User wallets whose monthly fee is due now (the fee run charges them).",
                due,
            ),
            (
                "wallet_fee_oldest_due_seconds",
                "How long the longest-due wallet has been due (0: none).",
                float(oldest_due or 0),
            ),
            ("wallet_fee_debts", "Fee periods recorded as debt, unpaid.", debts),
        ):
            family = GaugeMetricFamily(name, help_text)
            family.add_metric([], value)
            yield family
        age = GaugeMetricFamily(
            "wallet_exchange_rate_age_seconds",
            "Age of each stored exchange rate (base/quote); conversions refuse "
            f"rates older than RATE_MAX_AGE ({int(settings.RATE_MAX_AGE.total_seconds())} s).",
            labels=["pair"],
        )
        for base, quote, seconds in rates:
            age.add_metric([f"{base}/{quote}"], float(seconds))
        yield age


_database = DatabaseCollector()


def metrics_view(request: HttpRequest) -> HttpResponse:
    """Allowed callers only (METRICS_ALLOWED_IPS or the bearer METRICS_TOKEN);
    anyone else gets a 403 that tells nothing about the metrics."""
    if not metrics.metrics_allowed(request.META):
        return JsonResponse(
            {"detail": "Not allowed to read the metrics.", "code": "permission_denied"},
            status=403,
        )
    if request.method not in ("GET", "HEAD"):
        response = JsonResponse(
            {"detail": "Method not allowed.", "code": "method_not_allowed"},
            status=405,
        )
        response["Allow"] = "GET, HEAD"
        return response
    return HttpResponse(
        metrics.exposition(_database),
        content_type=metrics.CONTENT_TYPE,
        headers={"Cache-Control": "no-store"},
    )
