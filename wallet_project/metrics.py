"""Prometheus metrics: every metric the processes count, named once here.

The README's "Metrics" table lists them. Names follow Prometheus conventions
(`wallet_` prefix, the unit in the name, `_total` for counters); labels are low
cardinality only (a route template, a transaction kind, an outcome; never a
wallet or user id).

Web and worker each run several OS processes. prometheus-client's multiprocess
mode sums them: each process writes its values to files under
PROMETHEUS_MULTIPROC_DIR (wallet_project.metrics_dir picks one per role before
anything imports prometheus-client) and a scrape reads them all. Without it
(tests, management commands) values live in the process.

What the ledger, fees and webhooks count goes through the small functions
below, which do nothing with METRICS_ENABLED off (the benchmark's A/B). The
gauges read from PostgreSQL at scrape time (rate age, what is pending) are the
web's /metrics view's (wallet_project.metrics_view), computed by one process.

Who may read: `metrics_allowed(meta)` - an address in METRICS_ALLOWED_IPS, or
`Authorization: Bearer <METRICS_TOKEN>`. Nginx never routes /metrics.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from functools import cache
from typing import Any

from django.conf import settings
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as _multiprocess

logger = logging.getLogger(__name__)

CONTENT_TYPE = CONTENT_TYPE_LATEST

# --- HTTP (wallet_project.middleware.RequestLogMiddleware) ------------------------------

HTTP_REQUESTS = Counter(
    "wallet_http_requests_total",
    "HTTP requests answered, by route template, method and status code.",
    ["route", "method", "status"],
)
HTTP_DURATION = Histogram(
    "wallet_http_request_duration_seconds",
    "Time from the request reaching Django to its response, by route and method.",
    ["route", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

# --- The ledger ----------------------------------------------------------------------------

POSTINGS = Counter(
    "wallet_ledger_postings_total",
    "Postings by transaction kind and outcome: posted, or the refusal's error "
    "code (insufficient_funds, wallet_blocked, ...).",
    ["kind", "outcome"],
)
BATCH_SIZE = Histogram(
    "wallet_ledger_batch_size",
    "Requests posted in one group-commit transaction.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128),
)
LOCK_WAIT = Histogram(
    "wallet_ledger_lock_wait_seconds",
    "Time to lock a posting's (or a batch's) wallet rows.",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 3),
)
IDEMPOTENCY = Counter(
    "wallet_idempotency_requests_total",
    "Requests with an Idempotency-Key answered from a stored response "
    "(replayed) or refused because the key was used for another request "
    "(conflict).",
    ["outcome"],
)

# --- The fee run (fees.tasks) ------------------------------------------------------------

FEE_PERIODS = Counter(
    "wallet_fee_run_periods_total",
    "Fee periods the runs settled: charged (paid), debt (recorded, nothing "
    "moved), collected (an older debt paid), skipped (no fresh rate).",
    ["outcome"],
)
FEE_BLOCKED = Counter(
    "wallet_fee_run_blocked_total", "Wallets the fee runs blocked for debt."
)
FEE_DURATION = Gauge(
    "wallet_fee_run_duration_seconds",
    "How long the last finished fee run took.",
    multiprocess_mode="mostrecent",
)
FEE_LAST_SUCCESS = Gauge(
    "wallet_fee_run_last_success_timestamp_seconds",
    "When the last fee run finished (unix time).",
    multiprocess_mode="mostrecent",
)

# --- Webhooks (transactions.webhooks.delivery) -------------------------------------------

WEBHOOK_DELIVERIES = Counter(
    "wallet_webhook_deliveries_total",
    "Webhook send attempts by outcome: delivered, retrying (will be tried "
    "again), failed (given up).",
    ["outcome"],
)
WEBHOOK_LAG = Histogram(
    "wallet_webhook_delivery_lag_seconds",
    "From an event's commit to its delivery's 2xx.",
    buckets=(0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600, 21600, 86400),
)

# --- The database pool (web processes; sampled at most once a second) -------------------

POOL_CONNECTIONS = Gauge(
    "wallet_db_pool_connections",
    "Connections of the web processes' psycopg pools, in_use or idle.",
    ["state"],
    multiprocess_mode="livesum",
)
POOL_WAITING = Gauge(
    "wallet_db_pool_requests_waiting",
    "Requests waiting for a pooled connection now.",
    multiprocess_mode="livesum",
)
POOL_WAIT = Counter(
    "wallet_db_pool_wait_seconds_total",
    "Time requests spent waiting for a pooled connection.",
)
POOL_TIMEOUTS = Counter(
    "wallet_db_pool_timeouts_total",
    "Requests that got no pooled connection within DATABASE_POOL_TIMEOUT.",
)

# --- Celery (wallet_project.celery's signal handlers) ------------------------------------

CELERY_TASKS = Counter(
    "wallet_celery_tasks_total",
    "Celery tasks run by the worker, by task name and state (succeeded, "
    "failed, retried).",
    ["task", "state"],
)
CELERY_DURATION = Histogram(
    "wallet_celery_task_duration_seconds",
    "Celery task run time, by task name.",
    ["task"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800),
)


def enabled() -> bool:
    return settings.METRICS_ENABLED


# --- What the code counts ------------------------------------------------------------------


# Label children already made, by their labels: `labels()` validates and locks on
# every call, a third of the hot path's cost here. A few hundred entries at most
# (routes x methods x statuses, kinds x outcomes).
_http: dict[tuple[str, str, int], tuple[Any, Any]] = {}
_postings: dict[tuple[str, str], Any] = {}


def http_observe(route: str, method: str, status: int, seconds: float) -> None:
    if not enabled():
        return
    key = (route, method, status)
    children = _http.get(key)
    if children is None:
        children = _http[key] = (
            HTTP_REQUESTS.labels(route, method, str(status)),
            HTTP_DURATION.labels(route, method),
        )
    children[0].inc()
    children[1].observe(seconds)


def postings_count(kind: str, outcome: str = "posted", count: int = 1) -> None:
    if count and enabled():
        child = _postings.get((kind, outcome))
        if child is None:
            child = _postings[kind, outcome] = POSTINGS.labels(kind, outcome)
        child.inc(count)


def batch_observe(size: int, lock_wait: float) -> None:
    if enabled():
        BATCH_SIZE.observe(size)
        LOCK_WAIT.observe(lock_wait)


def lock_wait_observe(seconds: float) -> None:
    if enabled():
        LOCK_WAIT.observe(seconds)


def idempotency_count(outcome: str) -> None:
    if enabled():
        IDEMPOTENCY.labels(outcome).inc()


def fee_run_observe(periods: Mapping[str, int], blocked: int, seconds: float) -> None:
    if not enabled():
        return
    for outcome, count in periods.items():
        if count:
            FEE_PERIODS.labels(outcome).inc(count)
    if blocked:
        FEE_BLOCKED.inc(blocked)
    FEE_DURATION.set(seconds)
    FEE_LAST_SUCCESS.set(time.time())


def webhook_outcomes_count(outcomes: Iterable[str], lags: Iterable[float]) -> None:
    if not enabled():
        return
    for outcome in outcomes:
        WEBHOOK_DELIVERIES.labels(outcome).inc()
    for lag in lags:
        WEBHOOK_LAG.observe(lag)


def celery_task_observe(task: str, state: str, seconds: float | None) -> None:
    if not enabled():
        return
    CELERY_TASKS.labels(task, state).inc()
    if seconds is not None:
        CELERY_DURATION.labels(task).observe(seconds)


_pool_sampled = 0.0
_pool_totals = {"requests_wait_ms": 0, "requests_errors": 0}


def pool_sample(pool: Any) -> None:
    """Copy this process's psycopg pool statistics into the pool gauges, at
    most once a second (the request path calls it)."""
    global _pool_sampled
    now = time.monotonic()
    if now - _pool_sampled < 1.0:
        return
    _pool_sampled = now
    stats = pool.get_stats()
    size, idle = stats.get("pool_size", 0), stats.get("pool_available", 0)
    POOL_CONNECTIONS.labels("in_use").set(size - idle)
    POOL_CONNECTIONS.labels("idle").set(idle)
    POOL_WAITING.set(stats.get("requests_waiting", 0))
    # Totals in psycopg's statistics (get_stats never resets them): the
    # counters move by what they grew since the last sample.
    grown = {}
    for name, before in _pool_totals.items():
        total = stats.get(name, 0)
        grown[name] = max(0, total - before)
        _pool_totals[name] = total
    if grown["requests_wait_ms"]:
        POOL_WAIT.inc(grown["requests_wait_ms"] / 1000)
    if grown["requests_errors"]:
        POOL_TIMEOUTS.inc(grown["requests_errors"])


# --- Who may read, and what they read ------------------------------------------------------


@cache
def _allowed_networks() -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(
        ipaddress.ip_network(item.strip(), strict=False)
        for item in settings.METRICS_ALLOWED_IPS
        if item.strip()
    )


def metrics_allowed(meta: Mapping[str, Any]) -> bool:
    """A request (its WSGI environ / request.META) may read the metrics: its
    bearer token is METRICS_TOKEN (compared in constant time), or it comes
    straight (no X-Forwarded-For) from an address in METRICS_ALLOWED_IPS."""
    token = settings.METRICS_TOKEN
    header = meta.get("HTTP_AUTHORIZATION", "")
    if token and header.startswith("Bearer "):
        return hmac.compare_digest(header[7:].encode(), token.encode())
    if "HTTP_X_FORWARDED_FOR" in meta:
        # It came through a proxy (Nginx adds the header), so REMOTE_ADDR is the
        # proxy's: only the token can say who it is. Nginx refuses /metrics
        # anyway; this holds if a proxy in front is configured otherwise.
        return False
    try:
        address = ipaddress.ip_address(meta.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    return any(address in network for network in _allowed_networks())


def multiprocess() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


def exposition(*extra: Any) -> bytes:
    """The text exposition of every process of this role (or this process),
    then of the `extra` collectors."""
    if multiprocess():
        registry = CollectorRegistry()
        _multiprocess.MultiProcessCollector(registry)
        text = generate_latest(registry)
    else:
        text = generate_latest(REGISTRY)
    if extra:
        registry = CollectorRegistry()
        for collector in extra:
            registry.register(collector)
        text += generate_latest(registry)
    return text


# --- The worker's exporter -----------------------------------------------------------------


def _worker_app(environ: dict, start_response: Callable) -> list[bytes]:
    if environ.get("PATH_INFO") != "/metrics":
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found\n"]
    if not metrics_allowed(environ):
        start_response("403 Forbidden", [("Content-Type", "text/plain")])
        return [b"forbidden\n"]
    body = exposition()
    start_response("200 OK", [("Content-Type", CONTENT_TYPE)])
    return [body]


def worker_exporter_start(host: str, port: int) -> threading.Thread:
    """Serve GET /metrics (this worker's processes, same access rule as the
    web's) on `host:port` from a daemon thread of the worker's main process."""
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    class _QuietHandler(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = make_server(host, port, _worker_app, handler_class=_QuietHandler)
    thread = threading.Thread(
        target=server.serve_forever, name="metrics-exporter", daemon=True
    )
    thread.start()
    logger.info("worker metrics on http://%s:%s/metrics", host, server.server_port)
    return thread
