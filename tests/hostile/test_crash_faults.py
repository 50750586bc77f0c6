"""Crashes, not clean stops, with the real processes on a PostgreSQL cluster and a
Redis of this module's own (tests/hostile/services.py), under the load of
test_faults.py (10 clients, every request with an Idempotency-Key, retried with
the same key and body after a timeout, a dropped connection or a 5xx):

(a) PostgreSQL crashed while group-commit batches are in flight: once with
    `pg_ctl stop -m immediate`, once with `kill -9` of the postmaster; then
    started (crash recovery). Every 201 a client saw is in the ledger exactly
    once; a request cut by the crash answered 503 JSON, and its retry with the
    same key either returned the stored answer (the COMMIT had happened:
    `Idempotency-Replayed`) or posted once (it had not); no batch half-applied
    (keys, transactions, entries and balances agree); `reconcile` clean.
(b) Redis killed with -9 while emails and webhook deliveries are queued (the
    worker killed first, so they pile up in the broker): once it is back with
    a new worker, every verification email arrives (re-derived from the
    session, accounts.emails) and every event is delivered (the outbox).
(c) Everything killed at once (kill -9 of Nginx, Gunicorn's master and workers,
    the Celery worker and beat) in the middle of a fee run, webhook deliveries
    and payouts; the stack started again: the fee run finishes by itself (its
    unacknowledged message comes back after CELERY_VISIBILITY_TIMEOUT_SECONDS),
    every wallet charged once, no delivery lost, no hold without its payout, no
    payout half-done, `reconcile` clean.

Figures go to var/hostile/crash_faults.json.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
import uuid
from collections import Counter

import pytest

from tests.hostile.conftest import figures_path
from tests.hostile.seed import PASSWORD, login, seed_users
from tests.hostile.services import faulty_stack
from tests.hostile.test_faults import (
    _DUE_WALLETS,
    CLIENTS,
    DOWN_FOR,
    START_BALANCE,
    _probe_while,
    _process,
    _query,
    _settle,
    _start_worker,
    _wait,
    assert_exactly_once,
    assert_only_json_503,
    by_phase,
    finish_load,
    server_errors_by_source,
    start_load,
)
from tests.hostile.test_payout_faults import Load as PayoutLoad
from tests.hostile.test_payout_faults import _assert_no_payout_half_done
from tests.hostile.test_webhook_faults import STACK_ENV as WEBHOOK_ENV
from tests.hostile.test_webhook_faults import _accepted
from tests.stack import Stack, _Process, message_text, smtp_sink, webhook_receiver

pytestmark = pytest.mark.hostile

FEE_WALLETS = 600
DEADLINE = 120.0  # seconds for what must happen by itself after a crash
FIGURES: dict[str, dict] = {}
ENV = {
    **WEBHOOK_ENV,
    "FEE_BATCH_SIZE": "5",  # the kill must land in the middle of the fee run
    # A killed worker's fee-run message comes back after 5 s (retries in this
    # module wait at most 2 s: WEBHOOKS_RETRY_MAX_SECONDS).
    "CELERY_VISIBILITY_TIMEOUT_SECONDS": "5",
    "VERIFICATION_EMAIL_RESEND_AFTER_SECONDS": "2",
    "VERIFICATION_EMAIL_SWEEP_SECONDS": "2",
}


@pytest.fixture(scope="module")
def crash_env():
    """pg, redis, the stack (replaced when (c) starts it again), the database
    url and the SMTP sink, in a dict the tests share."""
    with smtp_sink() as smtp:
        with faulty_stack(prefix="wallet_crash", env=ENV, email_url=smtp.url) as (
            pg,
            rds,
            stack,
            db_url,
        ):
            env = {"pg": pg, "rds": rds, "stack": stack, "db": db_url, "smtp": smtp}
            try:
                yield env
            finally:
                if env["stack"] is not stack:
                    env["stack"].stop()


def _write_figures() -> None:
    path = figures_path("crash_faults.json")
    path.write_text(json.dumps(FIGURES, indent=2))


# --- (a) PostgreSQL crashed under group commit ----------------------------------------


@pytest.mark.parametrize("how", ["immediate", "kill-9"])
def test_a_postgres_crash_mid_commit_loses_and_doubles_nothing(crash_env, how):
    pg, stack, db_url = crash_env["pg"], crash_env["stack"], crash_env["db"]
    people = seed_users(
        stack,
        [
            {
                "email": f"crash-{how}-{i}@example.com",
                "balances": {"KZT": str(START_BALANCE)},
            }
            for i in range(CLIENTS + 1)
        ],
    )
    clients, prober = people[:CLIENTS], people[CLIENTS]
    probe_token = login(stack, prober["email"])["access"]
    log_before = pg.log.read_text(errors="replace")
    started = time.monotonic()
    load, threads = start_load(stack, clients)
    try:
        _settle(load, "baseline", 3)
        load.phase = "postgres-crashed"
        crashed_at = time.time()
        if how == "immediate":
            pg.crash()
        else:
            pg.kill_postmaster()
        until = threading.Event()
        holder: list = []
        prober_thread = threading.Thread(
            target=lambda: holder.append(
                _probe_while(stack, probe_token, prober["wallets"]["KZT"]["id"], until)
            ),
            daemon=True,
        )
        prober_thread.start()
        time.sleep(DOWN_FOR)
        until.set()
        prober_thread.join(timeout=30)
        probes = holder[0] if holder else []
        pg.start()  # crash recovery: WAL replayed from the last checkpoint
        _settle(load, "postgres-recovered", 5)
        _settle(load, "after", 3)
    finally:
        finish_load(load, threads)
        if not pg.running():
            pg.start()
    elapsed = time.monotonic() - started
    assert not any(t.is_alive() for t in threads)
    recovery_log = pg.log.read_text(errors="replace")[len(log_before) :]
    assert "automatic recovery in progress" in recovery_log, recovery_log[-2000:]

    figures = assert_exactly_once(stack, db_url, load)
    attempts = [a for op in load.operations for a in op.attempts]
    assert_only_json_503(attempts + probes)
    down = [a for a in probes if a.status is not None]
    assert down and all(a.status == 503 for a in down), down[:5]

    # -- The requests the crash cut, and what their retries found ------------------------
    # The only fault of this run: every 5xx or dropped connection is the crash's
    # (an attempt is labelled with the phase it started in, so some of them are
    # "baseline": sent just before the crash, cut by it).
    cut = [
        op
        for op in load.operations
        if any(a.status is None or a.status >= 500 for a in op.attempts)
    ]
    assert cut, "the crash cut no request in flight"
    assert all(op.result is not None for op in cut)  # each one retried to a 201
    committed = [op for op in cut if op.attempts[-1].replayed]  # answer was lost
    posted_on_retry = [op for op in cut if not op.attempts[-1].replayed]
    user_ids = [c["id"] for c in clients]
    key_times = dict(
        _query(
            db_url,
            "SELECT key, extract(epoch FROM created_at)::float "
            "FROM transactions_idempotencykey WHERE user_id = ANY(%s::uuid[])",
            (user_ids,),
        )
    )
    # A replayed retry's key was stored by the batch that committed before the
    # crash; a posted retry's after the restart.
    assert all(key_times[op.key] <= crashed_at + 0.5 for op in committed)
    assert all(key_times[op.key] > crashed_at for op in posted_on_retry)

    # -- No batch half-applied: each key has its transaction, each transaction its
    # key, its balanced entries and the balances (reconcile: assert_exactly_once) ---
    orphans = _query(
        db_url,
        "SELECT count(*) FROM transactions_transaction t "
        "WHERE t.initiator_id = ANY(%s::uuid[]) AND NOT EXISTS "
        "(SELECT 1 FROM transactions_entry e WHERE e.transaction_id = t.id)",
        (user_ids,),
    )[0][0]
    assert orphans == 0
    # A group-commit batch shares one timestamp (taken under its locks).
    batches = Counter(
        row[0]
        for row in _query(
            db_url,
            "SELECT created_at FROM transactions_transaction "
            "WHERE initiator_id = ANY(%s::uuid[])",
            (user_ids,),
        )
    )
    grouped = [n for n in batches.values() if n > 1]
    assert grouped, "no group-commit batch was posted"
    last_before = [
        n
        for at, n in batches.items()
        if crashed_at - 1 <= at.timestamp() <= crashed_at and n > 1
    ]

    figures.update(
        {
            "how": "pg_ctl stop -m immediate"
            if how == "immediate"
            else "kill -9 of the postmaster",
            "seconds": round(elapsed, 1),
            "probes_while_down": by_phase(probes),
            "requests_cut_by_the_crash": len(cut),
            "cut_after_commit_retry_replayed": len(committed),
            "cut_before_commit_retry_posted_once": len(posted_on_retry),
            "batches_of_2_or_more": len(grouped),
            "largest_batch": max(grouped),
            "batches_in_the_last_second_before_the_crash": len(last_before),
            "batches_half_applied": 0,
        }
    )
    FIGURES[f"postgres_crash_{how}"] = figures
    _write_figures()
    print(json.dumps(figures, indent=2))


# --- (b) Redis killed -9 with emails and deliveries queued ----------------------------


def _signup(stack: Stack, email: str) -> str:
    response = stack.request(
        "POST",
        "/api/v1/auth/signup/",
        json_body={"email": email, "password": PASSWORD},
    )
    assert response.status == 201, response.body
    return response.json()["session_id"]


def _deposit(stack: Stack, token: str, wallet: str, amount: str = "5.00") -> None:
    response = stack.request(
        "POST",
        f"/api/v1/wallets/{wallet}/operation",
        json_body={"operation_type": "DEPOSIT", "amount": amount},
        token=token,
        headers={"Idempotency-Key": str(uuid.uuid4())},
    )
    assert response.status == 201, response.body


def _adopt_worker(stack: Stack) -> subprocess.Popen:
    """A new worker, counted among the stack's processes (kill and stop reach it)."""
    worker = _start_worker(stack)
    stack._processes.append(
        _Process("worker-2", worker, stack.workdir / "worker-2.log")
    )
    return worker


def test_b_redis_killed_with_emails_and_deliveries_queued_loses_nothing(crash_env):
    stack, rds, db_url, smtp = (
        crash_env["stack"],
        crash_env["rds"],
        crash_env["db"],
        crash_env["smtp"],
    )
    email = f"hooks-{uuid.uuid4().hex[:6]}@example.com"
    (person,) = seed_users(stack, [{"email": email, "balances": {"KZT": "0"}}])
    token = login(stack, email)["access"]
    wallet = person["wallets"]["KZT"]["id"]
    with webhook_receiver() as receiver:
        created = stack.request(
            "POST",
            "/api/v1/webhook-endpoints/",
            json_body={"url": receiver.url, "event_types": ["*"]},
            token=token,
        )
        assert created.status == 201, created.body
        endpoint = created.json()["id"]
        # Refused deliveries: their retries wait in the broker (countdowns).
        receiver.stop()
        for _ in range(5):
            _deposit(stack, token, wallet)
        _wait(
            lambda: (
                _query(
                    db_url,
                    "SELECT count(DISTINCT d.id) FROM transactions_webhookdelivery d "
                    "JOIN transactions_webhookattempt a ON a.delivery_id = d.id "
                    "WHERE d.endpoint_id = %s",
                    (endpoint,),
                )[0][0]
                >= 5
            ),
            60,
            "the deliveries were never tried",
        )
        worker = _process(stack, "worker")
        os.killpg(worker.pid, signal.SIGKILL)  # nobody consumes from now on
        worker.wait(timeout=10)
        emails = [f"late-{i}-{uuid.uuid4().hex[:4]}@example.com" for i in range(5)]
        sessions = {address: _signup(stack, address) for address in emails}
        for _ in range(5):
            _deposit(stack, token, wallet)
        queued = _broker_messages(rds)
        assert queued["email"] >= len(emails), queued  # only in the broker
        rds.kill()  # -9: every queued and unacknowledged message gone
        rds.start()  # empty
        assert _broker_messages(rds) == {"celery": 0, "email": 0}
        receiver.start()
        _adopt_worker(stack)

        events = {
            row[0]
            for row in _query(
                db_url,
                "SELECT id FROM transactions_event WHERE wallet_id = %s",
                (wallet,),
            )
        }
        assert len(events) == 10
        receiver.wait_until(
            lambda: set(_accepted(receiver)) >= events, timeout=DEADLINE
        )
        for address in emails:
            message = smtp.wait_for(to=address, timeout=DEADLINE)
            (code,) = set(re.findall(r"\b\d{6}\b", message_text(message)))
            confirmed = stack.request(
                "POST",
                "/api/v1/auth/signup/confirm/",
                json_body={"session_id": sessions[address], "code": code},
            )
            assert confirmed.status == 201, confirmed.body  # the code works
        accepted = _accepted(receiver)

    FIGURES["redis_killed"] = {
        "queued_in_redis_when_killed": queued,
        "signup_emails_queued": len(emails),
        "signup_emails_received": len(emails),
        "events": len(events),
        "events_delivered": len(set(accepted) & events),
        "lost": len(events - set(accepted)),
    }
    _write_figures()


def _broker_messages(rds) -> dict[str, int]:
    import redis

    client = redis.Redis(port=rds.port)
    return {queue: client.llen(queue) for queue in ("celery", "email")}


# --- (c) Everything killed at once ----------------------------------------------------


def test_c_everything_killed_mid_fee_run_deliveries_and_payouts(crash_env):
    stack, db_url = crash_env["stack"], crash_env["db"]
    assert "DUE-READY" in stack.manage(
        "shell", "-c", _DUE_WALLETS.format(count=FEE_WALLETS)
    )
    people = seed_users(
        stack,
        [
            *(
                {"email": f"killall{i}@example.com", "balances": {"KZT": "100000.00"}}
                for i in range(6)
            ),
            {"email": "killall-provider@example.com", "service": True},
        ],
    )
    owners = people[:6]
    tokens = [login(stack, o["email"])["access"] for o in owners]
    provider = login(stack, "killall-provider@example.com")["access"]

    def charges() -> int:
        return _query(db_url, "SELECT count(*) FROM fees_feecharge")[0][0]

    with webhook_receiver() as receiver:
        for token in tokens:
            created = stack.request(
                "POST",
                "/api/v1/webhook-endpoints/",
                json_body={"url": receiver.url, "event_types": ["*"]},
                token=token,
            )
            assert created.status == 201, created.body
        # The seed's deposits came before the endpoints: nothing to deliver.
        first_event = _query(
            db_url, "SELECT coalesce(max(id), 0) FROM transactions_event"
        )[0][0]
        load = PayoutLoad(stack, owners, tokens, provider)
        threads = [
            threading.Thread(target=load.run_owner, args=(i,), daemon=True)
            for i in range(len(owners))
        ] + [
            threading.Thread(target=load.run_provider, args=(j,), daemon=True)
            for j in range(2)
        ]
        for thread in threads:
            thread.start()
        started = time.monotonic()
        try:
            _settle(load, "baseline", 3)
            stack.manage(
                "shell",
                "-c",
                "from fees.tasks import fees_charge_due; fees_charge_due.delay()",
            )
            _wait(lambda: charges() > 0, 60, "the fee run never started")
            load.phase = "stack-killed"
            killed = stack.kill()
            at_kill = {
                "fee_charges": charges(),
                "deliveries_pending": _query(
                    db_url,
                    "SELECT count(*) FROM transactions_webhookdelivery "
                    "WHERE status = 'pending'",
                )[0][0],
                "payouts_pending": _query(
                    db_url,
                    "SELECT count(*) FROM transactions_payout WHERE status = 'pending'",
                )[0][0],
            }
            time.sleep(2)
            again = stack.start_again()
            crash_env["stack"] = load.stack = again
            _settle(load, "stack-restarted", 5)
            _settle(load, "after", 3)
        finally:
            load.stop.set()
            for thread in threads:
                thread.join(timeout=60)
        assert not any(t.is_alive() for t in threads)
        elapsed = time.monotonic() - started

        # -- The fee run finishes by itself: every due wallet charged once ---------------
        _wait(lambda: charges() >= FEE_WALLETS, DEADLINE, "the fee run did not resume")
        time.sleep(1)  # a second copy of the run, if any, finishes too
        per_wallet = _query(
            db_url,
            "SELECT w.id, count(c.id), w.balance, w.status "
            "FROM wallets_wallet w LEFT JOIN fees_feecharge c ON c.wallet_id = w.id "
            "JOIN accounts_user u ON u.id = w.owner_id "
            "WHERE u.email LIKE 'due%%@example.com' GROUP BY w.id",
        )
        assert len(per_wallet) == FEE_WALLETS
        assert {row[1] for row in per_wallet} == {1}  # exactly one charge each
        paid = [row for row in per_wallet if str(row[2]) == "800.00"]
        debt = [row for row in per_wallet if str(row[2]) == "0.00"]
        assert (len(paid), len(debt)) == (FEE_WALLETS * 4 // 5, FEE_WALLETS // 5)
        assert {row[3] for row in debt} == {"blocked"}
        assert _query(
            db_url, "SELECT count(*) FROM transactions_transaction WHERE kind = 'fee'"
        )[0][0] == len(paid)

        # -- Payouts: none half-done, every one a client saw created exists -------------
        payouts = _assert_no_payout_half_done(db_url)
        calls = load.calls
        created = {
            c.answer["id"]: c for c in calls if c.kind == "payout" and c.status == 201
        }
        assert len(created) == len([c for c in calls if c.kind == "payout"])
        owner_wallets = {o["wallets"]["KZT"]["id"] for o in owners}
        assert {p for p, row in payouts.items() if row[2] in owner_wallets} == set(
            created
        )
        for kind, state in (
            ("paid", "paid"),
            ("failed", "failed"),
            ("cancel", "canceled"),
        ):
            told = {c.target for c in calls if c.kind == kind and c.status == 200}
            assert {payouts[p][0] for p in told} <= {state}, kind
        assert not [c for c in calls if c.status is None], (
            "a request never got an answer"
        )
        attempts = [a for c in calls for a in c.attempts]
        assert_only_json_503(attempts)
        assert "Ledger clean" in again.manage("reconcile", "--quiet")

        # -- Webhooks: every event of the owners' wallets delivered ---------------------
        events = {
            row[0]
            for row in _query(
                db_url,
                "SELECT id FROM transactions_event "
                "WHERE wallet_id = ANY(%s::uuid[]) AND id > %s",
                (list(owner_wallets), first_event),
            )
        }
        try:
            receiver.wait_until(
                lambda: set(_accepted(receiver)) >= events, timeout=DEADLINE
            )
        except TimeoutError:
            missing = sorted(events - set(_accepted(receiver)))
            rows = _query(
                db_url,
                "SELECT e.id, e.type, d.status, d.attempts, d.next_attempt_at, "
                "d.created_at FROM transactions_event e LEFT JOIN "
                "transactions_webhookdelivery d ON d.event_id = e.id "
                "WHERE e.id = ANY(%s)",
                (missing[:20],),
            )
            cursor = _query(db_url, "SELECT * FROM transactions_outboxcursor")
            raise AssertionError(
                f"{len(missing)} not delivered: {rows} {cursor}"
            ) from None
        accepted = _accepted(receiver)

    FIGURES["everything_killed"] = {
        "seconds": round(elapsed, 1),
        "processes_killed": len(killed),
        "at_kill": at_kill,
        "due_wallets": FEE_WALLETS,
        "fee_charges_after_restart": charges(),
        "charged_twice": 0,
        "requests": len(attempts),
        "requests_by_phase_and_outcome": by_phase(attempts),
        "5xx_by_phase_and_source": server_errors_by_source(attempts),
        "calls_by_kind": dict(Counter(c.kind for c in calls)),
        "payouts": len(created),
        "payouts_by_state": dict(Counter(payouts[p][0] for p in created)),
        "payouts_half_done": 0,
        "events": len(events),
        "events_delivered": len(set(accepted) & events),
        "duplicates_accepted": sum(accepted[e] for e in events) - len(events),
        "lost": len(events - set(accepted)),
    }
    _write_figures()
    print(json.dumps(FIGURES, indent=2))
    assert 0 < at_kill["fee_charges"] < FEE_WALLETS, "not killed mid fee run"
