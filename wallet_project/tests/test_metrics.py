"""GET /metrics: who may read it, and that what the ledger, the fee run and the
HTTP layer count is what happened (this process's values: the suite runs without
PROMETHEUS_MULTIPROC_DIR; tests/e2e reads them through Gunicorn and Celery)."""

import json
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.test import Client, override_settings
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from fees.services import fee_charge_due
from transactions import ledger
from wallet_project import metrics
from wallets.models import Wallet

REPO = Path(__file__).resolve().parents[2]
TOKEN = "metrics-test-token-0123456789"


def scrape(client: Client | None = None, **extra) -> dict[tuple, float]:
    """Every sample of /metrics: (name, sorted labels) -> value."""
    response = (client or Client()).get("/metrics", **extra)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=")
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def value(samples, name, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


# --- Who may read ------------------------------------------------------------------------


@pytest.mark.django_db
def test_loopback_reads_the_metrics_and_others_are_refused():
    assert Client(REMOTE_ADDR="127.0.0.1").get("/metrics").status_code == 200

    refused = Client(REMOTE_ADDR="10.1.2.3").get("/metrics")

    assert refused.status_code == 403
    assert refused.json() == {
        "detail": "Not allowed to read the metrics.",
        "code": "permission_denied",
    }
    assert b"wallet_" not in refused.content


@pytest.mark.django_db
@override_settings(METRICS_TOKEN=TOKEN)
def test_through_a_proxy_only_the_token_reads_the_metrics():
    """A proxied request comes from the proxy's (allowed) loopback address; the
    X-Forwarded-For it carries says so, and then the address counts for nothing."""
    proxied = Client(REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="198.51.100.4")

    assert proxied.get("/metrics").status_code == 403
    assert scrape(proxied, HTTP_AUTHORIZATION=f"Bearer {TOKEN}")


@pytest.mark.django_db
@override_settings(METRICS_TOKEN=TOKEN, METRICS_ALLOWED_IPS=[])
def test_a_bearer_token_reads_from_anywhere_and_a_wrong_one_is_refused():
    metrics._allowed_networks.cache_clear()
    try:
        outside = Client(REMOTE_ADDR="203.0.113.9")
        assert outside.get("/metrics").status_code == 403
        assert (
            outside.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code
            == 403
        )
        assert scrape(outside, HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
        # Loopback is no longer enough once the list is empty.
        assert Client().get("/metrics").status_code == 403
    finally:
        metrics._allowed_networks.cache_clear()


@pytest.mark.django_db
def test_metrics_answer_reads_only_and_need_no_allowed_host():
    client = Client()

    assert client.get("/metrics", HTTP_HOST="web:8000").status_code == 200
    assert client.post("/metrics").status_code == 405


@override_settings(SECURE_SSL_REDIRECT=True)
@pytest.mark.django_db
def test_metrics_are_not_redirected_to_https():
    assert Client().get("/metrics").status_code == 200


def test_a_bad_allowed_network_stops_the_settings():
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        env={
            **__import__("os").environ,
            "DJANGO_SETTINGS_MODULE": "wallet_project.settings",
            "METRICS_ALLOWED_IPS": "10.0.0.0/8,not-an-address",
        },
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    assert result.returncode != 0
    assert "METRICS_ALLOWED_IPS: 'not-an-address'" in result.stderr


# --- What is counted ---------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_postings_refusals_replays_and_requests_are_counted(auth_api, wallet):
    url = f"/api/v1/wallets/{wallet.id}/operation"
    before = scrape()

    for _ in range(3):
        response = auth_api.post(
            url, {"operationType": "DEPOSIT", "amount": "10.00"}, format="json"
        )
        assert response.status_code == 201
    short = auth_api.post(
        url, {"operationType": "WITHDRAW", "amount": "100000.00"}, format="json"
    )
    assert short.status_code == 400
    assert short.json()["code"] == "insufficient_funds"
    body = {"operationType": "WITHDRAW", "amount": "1.00"}
    for _ in range(2):
        assert (
            auth_api.post(
                url, body, format="json", HTTP_IDEMPOTENCY_KEY="k-1"
            ).status_code
            == 201
        )
    conflict = auth_api.post(
        url,
        {"operationType": "WITHDRAW", "amount": "2.00"},
        format="json",
        HTTP_IDEMPOTENCY_KEY="k-1",
    )
    assert conflict.status_code == 422

    after = scrape()

    def moved(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    posting = "wallet_ledger_postings_total"
    assert moved(posting, kind="deposit", outcome="posted") == 3
    assert moved(posting, kind="withdrawal", outcome="posted") == 1
    assert moved(posting, kind="withdrawal", outcome="insufficient_funds") == 1
    assert moved("wallet_idempotency_requests_total", outcome="replayed") == 1
    assert moved("wallet_idempotency_requests_total", outcome="conflict") == 1
    route = next(
        dict(labels)["route"]
        for name, labels in after
        if name == "wallet_http_requests_total" and "operation" in dict(labels)["route"]
    )
    assert str(wallet.id) not in route  # the template, never the id
    requests = "wallet_http_requests_total"
    assert moved(requests, route=route, method="POST", status="201") == 5
    assert moved(requests, route=route, method="POST", status="400") == 1
    assert moved(requests, route=route, method="POST", status="422") == 1
    assert (
        moved("wallet_http_request_duration_seconds_count", route=route, method="POST")
        == 7
    )
    assert moved("wallet_ledger_lock_wait_seconds_count") >= 4
    # A wallet id never becomes a label value.
    assert not any(str(wallet.id) in str(labels) for _name, labels in after)


@pytest.mark.django_db(transaction=True)
def test_a_group_commit_batch_counts_its_size_and_each_posting(settings, user, wallet):
    """Outside a transaction (no test atomic block) deposits go through the
    coalescer; a batch of one is still a batch."""
    settings.LEDGER_COALESCE = True
    before = scrape()

    ledger.wallet_operation(
        wallet_id=wallet.id,
        owner=user,
        operation_type="DEPOSIT",
        amount=Decimal("5.00"),
        request=None,
        render=lambda wallet, posting: {},
    )

    after = scrape()
    assert (
        value(after, "wallet_ledger_batch_size_count")
        - value(before, "wallet_ledger_batch_size_count")
        == 1
    )
    assert (
        value(after, "wallet_ledger_postings_total", kind="deposit", outcome="posted")
        - value(
            before, "wallet_ledger_postings_total", kind="deposit", outcome="posted"
        )
        == 1
    )


@pytest.mark.django_db(transaction=True)
def test_the_fee_run_counts_what_it_charged_and_when_it_finished(make_wallet):
    now = timezone.now()
    paying = make_wallet(balance="1000.00")
    broke = make_wallet(balance="0.00")
    Wallet.objects.filter(pk__in=[paying.pk, broke.pk]).update(
        next_fee_at=now - timedelta(minutes=1)
    )
    before = scrape()
    assert value(before, "wallet_fee_wallets_due") == 2
    assert value(before, "wallet_fee_oldest_due_seconds") >= 60

    summary = fee_charge_due(as_of=now)

    after = scrape()
    assert (summary.charged, summary.debts, summary.blocked) == (1, 1, 1)

    def moved(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("wallet_fee_run_periods_total", outcome="charged") == 1
    assert moved("wallet_fee_run_periods_total", outcome="debt") == 1
    assert moved("wallet_fee_run_blocked_total") == 1
    assert moved("wallet_ledger_postings_total", kind="fee", outcome="posted") == 1
    assert (
        value(after, "wallet_fee_run_last_success_timestamp_seconds") >= now.timestamp()
    )
    assert value(after, "wallet_fee_wallets_due") == 0
    assert value(after, "wallet_fee_oldest_due_seconds") == 0
    assert value(after, "wallet_fee_debts") == 1


@pytest.mark.django_db
def test_database_gauges_show_rate_age_and_what_is_pending(rates, user, wallet):
    ledger.topup_create(wallet=wallet, amount=Decimal("10.00"))

    samples = scrape()

    assert value(samples, "wallet_metrics_database_up") == 1
    assert value(samples, "wallet_topups_pending") == 1
    assert value(samples, "wallet_payouts_pending") == 0
    ages = {
        dict(labels)["pair"]: v
        for (name, labels), v in samples.items()
        if name == "wallet_exchange_rate_age_seconds"
    }
    assert set(ages) == {f"{base}/{quote}" for base, quote in rates}
    assert all(0 <= age < 60 for age in ages.values())


@pytest.mark.django_db(transaction=True)
def test_with_metrics_disabled_nothing_is_counted(settings, auth_api, wallet):
    before = scrape()
    settings.METRICS_ENABLED = False

    response = auth_api.post(
        f"/api/v1/wallets/{wallet.id}/operation",
        {"operationType": "DEPOSIT", "amount": "1.00"},
        format="json",
    )

    assert response.status_code == 201
    settings.METRICS_ENABLED = True
    after = scrape()
    posted = {"kind": "deposit", "outcome": "posted"}
    assert value(after, "wallet_ledger_postings_total", **posted) == value(
        before, "wallet_ledger_postings_total", **posted
    )


# --- The dashboard and the alerts name only what is exported -------------------------------


def _exported_names() -> set[str]:
    from prometheus_client import REGISTRY

    from wallet_project.metrics_view import DatabaseCollector

    names = set()
    for collector in (REGISTRY, DatabaseCollector()):
        for family in collector.collect():
            names.add(family.name)
            names.update(sample.name for sample in family.samples)
            if family.type == "counter":
                names.add(family.name + "_total")
            if family.type == "histogram":
                names.update(family.name + s for s in ("_bucket", "_count", "_sum"))
    return names


def _metric_names(expression: str) -> set[str]:
    import re

    return set(re.findall(r"\b(wallet_[a-z0-9_]+)", expression))


@pytest.mark.django_db
def test_every_dashboard_query_and_alert_names_an_exported_metric():
    exported = _exported_names()
    dashboard = json.loads((REPO / "deploy/grafana/dashboards/wallet.json").read_text())
    queries = [
        target["expr"]
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]
    import yaml

    rules = yaml.safe_load((REPO / "deploy/prometheus/alerts.yml").read_text())
    alerts = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]

    assert len(queries) >= 10 and len(alerts) >= 4
    for expression in [*queries, *alerts]:
        names = _metric_names(expression)
        assert names, expression
        assert names <= exported, (expression, names - exported)
