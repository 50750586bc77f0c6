"""The production processes, for real, through Nginx only: Nginx -> Gunicorn (gevent)
-> PostgreSQL/Redis, with a Celery worker and beat (tests/stack.py starts them).

The tests of this module share one running stack, in file order; the last one stops
it and checks that nothing is left behind.
"""

import json
import re
import secrets
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

import django.contrib.admin
import psycopg
import pytest

from tests.stack import Stack, http_request, message_text

pytestmark = pytest.mark.e2e

PASSWORD = "e2e-Correct-Horse-9"


def _json_lines(text: str) -> list[dict]:
    lines = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                lines.append(json.loads(line))
            except ValueError:
                continue
    return lines


def _access_lines(stack: Stack) -> list[dict]:
    """Django's access log (wallet.access), one JSON object per request."""
    return [
        line
        for line in _json_lines(stack.log("web"))
        if line.get("logger") == "wallet.access"
    ]


def _sign_up(stack: Stack, smtp, email: str) -> dict:
    """POST auth/signup/ -> the Celery worker mails the code -> confirm it."""
    started = stack.request(
        "POST",
        "/api/v1/auth/signup/",
        json_body={
            "email": email,
            "password": PASSWORD,
            "phone_number": f"+7701{secrets.randbelow(10**7):07d}",
        },
    )
    assert started.status == 201, started.body
    message = smtp.wait_for(to=email, timeout=30)
    code = re.search(r"\b(\d{6})\b", message_text(message)).group(1)
    confirmed = stack.request(
        "POST",
        "/api/v1/auth/signup/confirm/",
        json_body={"session_id": started.json()["session_id"], "code": code},
    )
    assert confirmed.status == 201, confirmed.body
    return confirmed.json()


def test_nginx_serves_static_files_from_disk_not_django(stack):
    """The admin's stylesheet comes from Nginx: Gunicorn itself (DEBUG off) has no
    such URL, and Django's access log never sees the request."""
    source = Path(django.contrib.admin.__file__).parent / "static/admin/css/base.css"

    via_nginx = stack.request("GET", "/static/admin/css/base.css")
    direct = http_request("GET", stack.web_url + "/static/admin/css/base.css")

    assert via_nginx.status == 200
    assert via_nginx.body == source.read_bytes()
    assert via_nginx.headers["content-type"] == "text/css"
    assert "max-age=604800" in via_nginx.headers["cache-control"]
    assert direct.status == 404
    assert direct.json()["code"] == "not_found"
    served_id = via_nginx.headers["x-request-id"]
    assert served_id not in [line["request_id"] for line in _access_lines(stack)]
    assert served_id in stack.log("nginx-access")


def test_nginx_serves_media_sandboxed(stack):
    """Uploads are served from disk, but never as an active page of the site."""
    (stack.media_root / "e2e-probe.html").write_text("<script>alert(1)</script>")

    response = stack.request("GET", "/media/e2e-probe.html")

    assert response.status == 200
    assert response.body == b"<script>alert(1)</script>"
    assert "sandbox" in response.headers["content-security-policy"]
    assert response.headers["x-content-type-options"] == "nosniff"


def test_health_endpoints_through_nginx(stack):
    healthz = stack.request("GET", "/healthz")
    readyz = stack.request("GET", "/readyz")

    assert (healthz.status, healthz.json()) == (200, {"status": "ok"})
    assert readyz.status == 200
    assert readyz.json() == {
        "status": "ok",
        "checks": {"database": "ok", "redis": "ok"},
    }


def test_sign_up_deposit_transfer_through_nginx(stack, smtp):
    """Two people sign up with emailed codes (sent by the Celery worker), one
    deposits and transfers to the other; balances, the request id and the logs
    all line up."""
    alice = _sign_up(stack, smtp, f"alice-{uuid.uuid4().hex[:8]}@example.com")
    bob = _sign_up(stack, smtp, f"bob-{uuid.uuid4().hex[:8]}@example.com")
    assert "verification_email_task" in stack.log("worker")
    assert "succeeded" in stack.log("worker")
    alice_wallet, bob_wallet = alice["wallets"][0], bob["wallets"][0]
    assert (alice_wallet["currency"], bob_wallet["currency"]) == ("KZT", "KZT")

    deposit = stack.request(
        "POST",
        f"/api/v1/wallets/{alice_wallet['id']}/operation",
        json_body={"operation_type": "DEPOSIT", "amount": "1000.00"},
        token=alice["access"],
        headers={"Idempotency-Key": str(uuid.uuid4())},
    )
    assert deposit.status == 201, deposit.body
    assert deposit.json()["new_balance"] == "1000.00"

    transfer_key = str(uuid.uuid4())
    transfer_body = {
        "from_wallet": alice_wallet["id"],
        "to_wallet_number": bob_wallet["number"],
        "amount": "250.50",
    }
    transfer = stack.request(
        "POST",
        "/api/v1/transfers/",
        json_body=transfer_body,
        token=alice["access"],
        headers={"Idempotency-Key": transfer_key, "X-Request-ID": "e2e-transfer-1"},
    )
    replay = stack.request(
        "POST",
        "/api/v1/transfers/",
        json_body=transfer_body,
        token=alice["access"],
        headers={"Idempotency-Key": transfer_key},
    )

    assert transfer.status == 201, transfer.body
    assert transfer.json()["credited_amount"] == "250.50"
    assert (replay.status, replay.json()) == (transfer.status, transfer.json())
    alice_now = stack.request(
        "GET", f"/api/v1/wallets/{alice_wallet['id']}/", token=alice["access"]
    ).json()
    bob_now = stack.request(
        "GET", f"/api/v1/wallets/{bob_wallet['id']}/", token=bob["access"]
    ).json()
    assert Decimal(alice_now["balance"]) == Decimal("749.50")
    assert Decimal(bob_now["balance"]) == Decimal("250.50")

    # History links point back through Nginx, its port included.
    history = f"/api/v1/wallets/{alice_wallet['id']}/transactions/?limit=1"
    first = stack.request("GET", history, token=alice["access"]).json()
    assert [row["amount"] for row in first["results"]] == ["-250.50"]
    assert first["next"].startswith(f"{stack.url}/api/v1/wallets/")
    second = stack.request(
        "GET", first["next"].removeprefix(stack.url), token=alice["access"]
    ).json()
    assert [row["amount"] for row in second["results"]] == ["1000.00"]

    # One request id from the client to Nginx's log, Django's log and back.
    assert transfer.headers["x-request-id"] == "e2e-transfer-1"
    (django_line,) = [
        line for line in _access_lines(stack) if line["request_id"] == "e2e-transfer-1"
    ]
    assert django_line["path"] == "/api/v1/transfers/"
    assert django_line["status"] == 201
    assert django_line["user_id"] == alice["user"]["id"]
    assert django_line["duration_ms"] >= 0
    nginx_lines = [
        line
        for line in _json_lines(stack.log("nginx-access"))
        if line["request_id"] == "e2e-transfer-1"
    ]
    assert [(line["uri"], line["status"]) for line in nginx_lines] == [
        ("/api/v1/transfers/", 201)
    ]


def _scrape(url: str) -> dict[tuple, float]:
    """Every sample of a /metrics page: (name, sorted labels) -> value."""
    from prometheus_client.parser import text_string_to_metric_families

    response = http_request("GET", url)
    assert response.status == 200, response.body[:300]
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.body.decode())
        for sample in family.samples
    }


def _sample(samples: dict, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_count_what_the_clients_did(stack, smtp):
    """Prometheus's view, read as it reads it (from each process, not through
    Nginx, which refuses /metrics): 20 deposits through Nginx move the posting
    counter and the route's 201s by 20, summed over both Gunicorn workers; the
    worker's exporter counts the sign-up email task it ran."""
    me = _sign_up(stack, smtp, f"metrics-{uuid.uuid4().hex[:8]}@example.com")
    wallet_id, token = me["wallets"][0]["id"], me["access"]
    web_metrics = f"{stack.web_url}/metrics"
    before = _scrape(web_metrics)

    def deposit(_n):
        return stack.request(
            "POST",
            f"/api/v1/wallets/{wallet_id}/operation",
            json_body={"operation_type": "DEPOSIT", "amount": "1.00"},
            token=token,
        ).status

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(deposit, range(20)))
    after = _scrape(web_metrics)

    assert statuses == [201] * 20
    posted = {"kind": "deposit", "outcome": "posted"}
    assert (
        _sample(after, "wallet_ledger_postings_total", **posted)
        - _sample(before, "wallet_ledger_postings_total", **posted)
        == 20
    )
    (route,) = {
        dict(labels)["route"]
        for name, labels in after
        if name == "wallet_http_requests_total"
        and "/operation" in dict(labels)["route"]
    }
    created = {"route": route, "method": "POST", "status": "201"}
    assert (
        _sample(after, "wallet_http_requests_total", **created)
        - _sample(before, "wallet_http_requests_total", **created)
        == 20
    )
    assert _sample(after, "wallet_metrics_database_up") == 1
    assert not any(wallet_id in str(labels) for _name, labels in after)
    # Both workers counted (multiprocess mode): the pool gauges are per process.
    assert (
        _sample(after, "wallet_db_pool_connections", state="idle")
        + _sample(after, "wallet_db_pool_connections", state="in_use")
        >= 2
    )

    refused = stack.request("GET", "/metrics")
    assert refused.status == 404
    assert b"wallet_" not in refused.body

    worker = _scrape(stack.worker_metrics_url)
    sent = {"task": "accounts.tasks.verification_email_task", "state": "succeeded"}
    assert _sample(worker, "wallet_celery_tasks_total", **sent) >= 1
    assert (
        _sample(
            worker,
            "wallet_celery_task_duration_seconds_count",
            task="accounts.tasks.verification_email_task",
        )
        >= 1
    )


def test_256_concurrent_clients_do_not_exhaust_connections(
    stack, smtp, e2e_database_url
):
    """256 clients at once through Nginx: every answer is a 200 (or a deliberate
    503 with Retry-After), and the web process never holds more connections than
    its pools allow (2 workers x 8), whatever the number of greenlets."""
    token = _sign_up(stack, smtp, f"load-{uuid.uuid4().hex[:8]}@example.com")["access"]
    clients = 256
    barrier = threading.Barrier(clients)

    def one_client(_):
        barrier.wait(timeout=30)
        return stack.request("GET", "/api/v1/wallets/", token=token, timeout=60)

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        responses = list(pool.map(one_client, range(clients)))
    elapsed = time.monotonic() - started

    statuses = [r.status for r in responses]
    print(f"{clients} concurrent clients: {Counter(statuses)} in {elapsed:.2f}s")
    assert all(
        s == 200 or (s == 503 and r.headers.get("retry-after"))
        for s, r in zip(statuses, responses, strict=True)
    ), sorted(set(statuses))
    assert statuses.count(200) >= clients * 0.9
    logs = stack.log("web") + stack.log("worker") + stack.log("nginx-error")
    assert "too many connections" not in logs.lower()
    assert "remaining connection slots" not in logs.lower()
    dbname = e2e_database_url.rsplit("/", 1)[1]
    with psycopg.connect(e2e_database_url.rsplit("/", 1)[0] + "/postgres") as conn:
        (backends,) = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", [dbname]
        ).fetchone()
    # The web's pools (2 x 8) + the Celery worker's pool processes and beat.
    print(f"backends on the database after the burst: {backends}")
    assert backends <= 2 * 8 + 4


def test_operations_in_flight_together_through_nginx_stay_exact(stack, smtp):
    """48 clients at once on one wallet, through Nginx and the gevent workers (where
    concurrent operations share DB transactions): every client gets a 201 or a 400
    insufficient_funds, the balance is what the 201s say, the ledger reconciles."""
    me = _sign_up(stack, smtp, f"hot-{uuid.uuid4().hex[:8]}@example.com")
    wallet_id, token = me["wallets"][0]["id"], me["access"]
    path = f"/api/v1/wallets/{wallet_id}/operation"
    start = stack.request(
        "POST",
        path,
        json_body={"operation_type": "DEPOSIT", "amount": "20.00"},
        token=token,
    )
    assert start.status == 201, start.body
    clients, each = 48, 8
    barrier = threading.Barrier(clients)

    def one_client(i):
        barrier.wait(timeout=30)
        seen = []
        for n in range(each):
            kind = "DEPOSIT" if (i + n) % 3 == 0 else "WITHDRAW"
            response = stack.request(
                "POST",
                path,
                json_body={"operation_type": kind, "amount": "3.00"},
                token=token,
                timeout=60,
            )
            seen.append((kind, response.status, response.json()))
        return seen

    with ThreadPoolExecutor(max_workers=clients) as pool:
        answers = [a for seen in pool.map(one_client, range(clients)) for a in seen]
    assert {status for _, status, _ in answers} <= {201, 400}, answers[:5]
    assert all(
        body["code"] == "insufficient_funds"
        for _, status, body in answers
        if status == 400
    )
    moved = sum(
        Decimal(3) if kind == "DEPOSIT" else Decimal(-3)
        for kind, status, _ in answers
        if status == 201
    )
    wallet = stack.request("GET", f"/api/v1/wallets/{wallet_id}/", token=token).json()
    assert Decimal(wallet["balance"]) == Decimal(20) + moved
    assert "Ledger clean" in stack.manage("reconcile", "--quiet")


def test_connections_the_database_kills_cost_a_503_never_a_500(
    stack, smtp, e2e_database_url
):
    """Pooled connections are not checked before use (DATABASE_HEALTH_CHECKS): one
    killed while idle fails the request that gets it with a JSON 503 + Retry-After,
    the pool drops it, and nothing half-happens."""
    me = _sign_up(stack, smtp, f"killed-{uuid.uuid4().hex[:8]}@example.com")
    wallet_id, token = me["wallets"][0]["id"], me["access"]

    def deposit():
        return stack.request(
            "POST",
            f"/api/v1/wallets/{wallet_id}/operation",
            json_body={"operation_type": "DEPOSIT", "amount": "1.00"},
            token=token,
        )

    with ThreadPoolExecutor(max_workers=16) as pool:  # fill both workers' pools
        warm = list(pool.map(lambda _: deposit(), range(32)))
    assert {r.status for r in warm} == {201}
    dbname = e2e_database_url.rsplit("/", 1)[1]
    with psycopg.connect(
        e2e_database_url.rsplit("/", 1)[0] + "/postgres", autocommit=True
    ) as conn:
        (killed,) = conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            [dbname],
        ).fetchone()
    assert killed > 0
    answers = [deposit() for _ in range(60)]
    statuses = [r.status for r in answers]
    print(f"after killing {killed} connections: {Counter(statuses)}")
    assert all(
        r.status == 201
        or (r.status == 503 and r.headers.get("retry-after") and r.json()["code"])
        for r in answers
    ), sorted(set(statuses))
    assert statuses[-10:] == [201] * 10  # recovered
    wallet = stack.request("GET", f"/api/v1/wallets/{wallet_id}/", token=token).json()
    assert Decimal(wallet["balance"]) == Decimal(32 + statuses.count(201))


_SERVICE_ACCOUNT = """
from accounts.models import User
user = User.objects.create_user(email={email!r}, password={password!r})
user.is_service = True
user.save(update_fields=["is_service"])
print("SERVICE-READY")
"""


def test_a_payout_is_held_then_paid_by_the_provider_through_nginx(stack, smtp):
    """A user starts a payout (201, the amount held at once: the wallet shows it),
    the provider's service account finds it in the pending queue and pays it;
    the wallet's history then shows the `payout` entry, the hold is gone and the
    ledger reconciles."""
    me = _sign_up(stack, smtp, f"payer-{uuid.uuid4().hex[:8]}@example.com")
    wallet_id, token = me["wallets"][0]["id"], me["access"]
    provider_email = f"provider-{uuid.uuid4().hex[:8]}@example.com"
    assert "SERVICE-READY" in stack.manage(
        "shell",
        "-c",
        _SERVICE_ACCOUNT.format(email=provider_email, password=PASSWORD),
    )
    provider = stack.request(
        "POST",
        "/api/v1/auth/token/",
        json_body={"email": provider_email, "password": PASSWORD},
    )
    assert provider.status == 200, provider.body
    provider_token = provider.json()["access"]

    def wallet_now() -> tuple[str, str, str]:
        view = stack.request("GET", f"/api/v1/wallets/{wallet_id}/", token=token)
        assert view.status == 200, view.body
        body = view.json()
        return body["balance"], body["held"], body["available_balance"]

    deposit = stack.request(
        "POST",
        f"/api/v1/wallets/{wallet_id}/operation",
        json_body={"operation_type": "DEPOSIT", "amount": "1000.00"},
        token=token,
        headers={"Idempotency-Key": str(uuid.uuid4())},
    )
    assert deposit.status == 201, deposit.body

    created = stack.request(
        "POST",
        f"/api/v1/wallets/{wallet_id}/payouts/",
        json_body={"amount": "300.00", "destination": "card_tok_e2e"},
        token=token,
        headers={"Idempotency-Key": str(uuid.uuid4())},
    )
    assert created.status == 201, created.body
    payout = created.json()
    assert (payout["status"], payout["amount"], payout["currency"]) == (
        "pending",
        "300.00",
        "KZT",
    )
    assert wallet_now() == ("1000.00", "300.00", "700.00")

    queue = stack.request(
        "GET", "/api/v1/service/payouts/?status=pending", token=provider_token
    )
    assert queue.status == 200, queue.body
    assert payout["id"] in [row["id"] for row in queue.json()["results"]]
    paid = stack.request(
        "PUT",
        f"/api/v1/service/payouts/{payout['id']}/",
        json_body={"status": "paid", "provider_reference": "e2e-prv-1"},
        token=provider_token,
    )
    assert paid.status == 200, paid.body
    assert (paid.json()["status"], paid.json()["provider_reference"]) == (
        "paid",
        "e2e-prv-1",
    )
    transaction_id = paid.json()["transaction_id"]
    assert transaction_id

    assert wallet_now() == ("700.00", "0.00", "700.00")
    history = stack.request(
        "GET", f"/api/v1/wallets/{wallet_id}/transactions/", token=token
    ).json()
    newest = history["results"][0]
    assert (newest["kind"], newest["amount"]) == ("payout", "-300.00")
    assert newest["transaction_id"] == transaction_id
    mine = stack.request("GET", f"/api/v1/payouts/{payout['id']}/", token=token)
    assert (mine.status, mine.json()["status"]) == (200, "paid")
    queue = stack.request(
        "GET", "/api/v1/service/payouts/?status=pending", token=provider_token
    )
    assert payout["id"] not in [row["id"] for row in queue.json()["results"]]
    assert "Ledger clean" in stack.manage("reconcile", "--quiet")


def test_nginx_limits_the_auth_endpoints_with_429(stack):
    """A burst at the auth endpoints is cut by Nginx's limit_req with a JSON 429
    (never a 503), before it reaches Django."""
    clients = 60
    barrier = threading.Barrier(clients)

    def one_client(_):
        barrier.wait(timeout=30)
        return stack.request(
            "POST", "/api/v1/auth/token/refresh/", json_body={"refresh": "forged"}
        )

    with ThreadPoolExecutor(max_workers=clients) as pool:
        responses = list(pool.map(one_client, range(clients)))

    limited = [r for r in responses if r.status == 429]
    assert limited
    assert {r.status for r in responses} <= {400, 401, 429}
    assert limited[0].json()["code"] == "throttled"
    assert limited[0].headers["retry-after"]
    # Nginx answered those itself: no upstream status in its access log.
    nginx_429 = [
        line
        for line in _json_lines(stack.log("nginx-access"))
        if line["uri"] == "/api/v1/auth/token/refresh/" and line["status"] == 429
    ]
    assert nginx_429
    assert all(line["upstream_status"] == "" for line in nginx_429)


def test_the_stack_stops_cleanly(stack):
    """Graceful stop: every process exits with 0 and leaves no child behind."""
    codes = stack.stop()

    assert codes == {"nginx": 0, "web": 0, "beat": 0, "worker": 0}
    assert stack.leftovers() == []
