"""Faults under load, with the real processes (Nginx, Gunicorn gevent, Celery worker
and beat) on a PostgreSQL cluster and a Redis of this test's own (never the
machine's shared ones):

(a) kill -9 a Gunicorn worker, (b) PostgreSQL down and back (pg_ctl stop -m fast,
a few seconds down, start), (c) Redis stopped and started — all while threads
deposit, withdraw and transfer, each request with an Idempotency-Key and retried
with the SAME key and body after a timeout, a dropped connection or a 5xx;
(d) kill -9 the Celery worker in the middle of the fee run, start a new one, run
again.

Afterwards the ledger reconciles, every operation a client saw succeed is in it
exactly once, retries moved money once, balances are what the clients saw, and
while the database was down the API answered 503 JSON. Figures go to
var/hostile/faults.json and var/hostile/fee_run.json.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from tests.hostile.conftest import figures_path
from tests.hostile.seed import login, seed_users
from tests.hostile.services import faulty_stack
from tests.stack import REPO, Stack, http_request

pytestmark = pytest.mark.hostile

CLIENTS = 10
START_BALANCE = Decimal("1000000.00")
RETRY_FOR = 45.0  # seconds a client keeps retrying one operation
DOWN_FOR = 3.0  # seconds PostgreSQL / Redis stay down


@pytest.fixture(scope="module")
def fault_env():
    # Small batches: the set-based fee run charges 600 wallets in well under a
    # second, and the kill must land mid-run.
    with faulty_stack(prefix="wallet_faults", env={"FEE_BATCH_SIZE": "5"}) as env:
        yield env


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid and fields[0] != "Z":
                    found.append(int(entry.name))
    return found


def _process(stack: Stack, name: str) -> subprocess.Popen:
    return next(p.popen for p in stack._processes if p.name == name)


# --- The load -------------------------------------------------------------------------


@dataclass
class Attempt:
    phase: str
    status: int | None
    error: str | None
    content_type: str = ""
    body: bytes = b""
    retry_after: str = ""  # 1: Django's 503; 5: Nginx's (no answer from Gunicorn)
    replayed: bool = False  # answered from the stored response (Idempotency-Replayed)

    @classmethod
    def answered(cls, phase: str, response) -> Attempt:
        return cls(
            phase,
            response.status,
            None,
            response.headers.get("content-type", ""),
            response.body[:300],
            response.headers.get("retry-after", ""),
            response.headers.get("idempotency-replayed") == "true",
        )

    @classmethod
    def failed(cls, phase: str, exc: Exception) -> Attempt:
        return cls(phase, None, type(exc).__name__)


@dataclass
class Operation:
    client: int
    kind: str  # DEPOSIT, WITHDRAW, TRANSFER
    amount: Decimal
    key: str
    path: str
    body: dict
    attempts: list[Attempt] = field(default_factory=list)
    result: dict | None = None  # the 201 body the client finally saw
    final_status: int | None = None


class Load:
    def __init__(self, stack: Stack, clients: list[dict], tokens: list[str]) -> None:
        self.stack = stack
        self.clients = clients
        self.tokens = tokens
        self.phase = "warm-up"
        self.stop = threading.Event()
        self.operations: list[Operation] = []
        self._lock = threading.Lock()

    def _operation(self, rng: random.Random, index: int) -> Operation:
        me = self.clients[index]["wallets"]["KZT"]
        kind = rng.choice(["DEPOSIT", "WITHDRAW", "TRANSFER", "TRANSFER"])
        amount = Decimal(rng.randint(1, 5000)) / 100
        key = str(uuid.uuid4())
        if kind == "TRANSFER":
            other = rng.choice([c for i, c in enumerate(self.clients) if i != index])
            return Operation(
                index,
                kind,
                amount,
                key,
                "/api/v1/transfers/",
                {
                    "from_wallet": me["id"],
                    "to_wallet_number": other["wallets"]["KZT"]["number"],
                    "amount": str(amount),
                },
            )
        return Operation(
            index,
            kind,
            amount,
            key,
            f"/api/v1/wallets/{me['id']}/operation",
            {"operation_type": kind, "amount": str(amount)},
        )

    def send(self, op: Operation) -> None:
        """Until a definitive answer (2xx/4xx) or RETRY_FOR: same key, same body."""
        deadline = time.monotonic() + RETRY_FOR
        while True:
            phase = self.phase
            try:
                response = http_request(
                    "POST",
                    self.stack.url + op.path,
                    json_body=op.body,
                    token=self.tokens[op.client],
                    headers={"Idempotency-Key": op.key},
                    timeout=10,
                )
            # Refused, reset, timed out; or cut mid-answer (IncompleteRead, a
            # worker killed between the headers and the body): retry, same key.
            except (OSError, http.client.HTTPException) as exc:
                op.attempts.append(Attempt.failed(phase, exc))
            else:
                op.attempts.append(Attempt.answered(phase, response))
                if response.status < 500:
                    op.final_status = response.status
                    if response.status == 201:
                        op.result = response.json()
                    return
            if time.monotonic() > deadline:
                return
            time.sleep(0.2)

    def run_client(self, index: int) -> None:
        rng = random.Random(index)
        while not self.stop.is_set():
            op = self._operation(rng, index)
            with self._lock:
                self.operations.append(op)
            self.send(op)


# --- Faults ---------------------------------------------------------------------------


def _settle(load: Load, phase: str, seconds: float) -> None:
    load.phase = phase
    time.sleep(seconds)


def _kill_a_web_worker(stack: Stack) -> int:
    workers = _children(_process(stack, "web").pid)
    assert workers, "no Gunicorn worker found"
    os.kill(workers[0], signal.SIGKILL)
    return workers[0]


def _probe_while(stack: Stack, token: str, wallet_id: str, until: threading.Event):
    """What a client sees while a service is down: reads and a deposit."""
    seen: list[Attempt] = []
    while not until.is_set():
        for method, path, body in (
            ("GET", f"/api/v1/wallets/{wallet_id}/", None),
            (
                "POST",
                f"/api/v1/wallets/{wallet_id}/operation",
                {"operation_type": "DEPOSIT", "amount": "1.00"},
            ),
        ):
            try:
                # No Idempotency-Key, never retried: must fail cleanly or succeed.
                r = http_request(
                    method, stack.url + path, json_body=body, token=token, timeout=10
                )
                seen.append(Attempt.answered("probe", r))
            except (OSError, http.client.HTTPException) as exc:
                seen.append(Attempt.failed("probe", exc))
        time.sleep(0.1)
    return seen


def _query(db_url: str, sql: str, params=()) -> list[tuple]:
    with psycopg.connect(db_url, connect_timeout=5) as conn:
        return conn.execute(sql, params).fetchall()


def start_load(stack: Stack, clients: list[dict]) -> tuple[Load, list]:
    """The 10 clients' threads, running until `finish_load`."""
    tokens = [login(stack, c["email"])["access"] for c in clients]
    load = Load(stack, clients, tokens)
    threads = [
        threading.Thread(target=load.run_client, args=(i,), daemon=True)
        for i in range(len(clients))
    ]
    for thread in threads:
        thread.start()
    return load, threads


def finish_load(load: Load, threads: list[threading.Thread]) -> None:
    """Stop the clients; each finishes (or gives up on) the operation at hand."""
    load.stop.set()
    for thread in threads:
        thread.join(timeout=RETRY_FOR + 15)


def by_phase(items: list[Attempt]) -> dict:
    out: dict[str, Counter] = {}
    for a in items:
        out.setdefault(a.phase, Counter())[str(a.status or a.error)] += 1
    return {k: dict(v) for k, v in out.items()}


def server_errors_by_source(attempts: list[Attempt]) -> dict:
    """5xx per phase and who answered it: Django's 503 says Retry-After: 1,
    Nginx's (no answer from Gunicorn) 5."""
    return dict(
        Counter(
            f"{a.phase}: {'django' if a.retry_after == '1' else 'nginx'}"
            for a in attempts
            if a.status and a.status >= 500
        )
    )


def assert_only_json_503(seen: list[Attempt]) -> None:
    """No 500; every 5xx the documented JSON 503 `service_unavailable`."""
    assert not [a for a in seen if a.status == 500], "a 500 was answered"
    for a in seen:
        if a.status is not None and a.status >= 500:
            assert a.status == 503, a
            assert a.content_type.startswith("application/json"), a
            assert json.loads(a.body)["code"] == "service_unavailable"


def assert_exactly_once(stack: Stack, db_url: str, load: Load) -> dict:
    """After the load: every operation a client saw succeed is in the ledger
    exactly once and nothing else is, its key stored with the answer the client
    got, failed ones left no trace, replays return the first answer and move
    nothing, balances are what the clients were told, `reconcile` is clean.
    Figures of the load."""
    clients, tokens, ops = load.clients, load.tokens, load.operations
    succeeded = [op for op in ops if op.result is not None]
    failed = [op for op in ops if op.result is None]

    # -- Replays after the fact: the stored first answer, nothing moves. ---------------
    replayed = random.Random(0).sample(succeeded, min(20, len(succeeded)))
    for op in replayed:
        again = http_request(
            "POST",
            stack.url + op.path,
            json_body=op.body,
            token=tokens[op.client],
            headers={"Idempotency-Key": op.key},
        )
        assert again.status == 201, again.body
        assert again.json() == op.result

    # -- The ledger ----------------------------------------------------------------------
    reconcile = stack.manage("reconcile", "--quiet")
    assert "Ledger clean" in reconcile, reconcile

    user_ids = [c["id"] for c in clients]
    rows = _query(
        db_url,
        "SELECT id::text, kind FROM transactions_transaction "
        "WHERE initiator_id = ANY(%s::uuid[])",
        (user_ids,),
    )
    in_ledger = Counter(row[0] for row in rows)
    seen_ids = [
        op.result.get("operation_id") or op.result["transaction_id"] for op in succeeded
    ]
    assert len(seen_ids) == len(set(seen_ids))  # one transaction per operation
    assert Counter(seen_ids) == in_ledger  # exactly the ones clients saw, once each
    keys = _query(
        db_url,
        "SELECT key, response_status, response_body FROM transactions_idempotencykey "
        "WHERE user_id = ANY(%s::uuid[])",
        (user_ids,),
    )
    stored = {key: (status, json.loads(body)) for key, status, body in keys}
    assert {op.key for op in succeeded} <= set(stored)
    assert not ({op.key for op in failed} & set(stored)), (
        "a failed operation left a trace"
    )
    for op in succeeded:  # the key holds the very answer the client got
        assert stored[op.key] == (201, op.result), op.key

    expected = {c["wallets"]["KZT"]["id"]: START_BALANCE for c in clients}
    number_to_id = {
        c["wallets"]["KZT"]["number"]: c["wallets"]["KZT"]["id"] for c in clients
    }
    for op in succeeded:
        mine = clients[op.client]["wallets"]["KZT"]["id"]
        if op.kind == "DEPOSIT":
            expected[mine] += op.amount
        elif op.kind == "WITHDRAW":
            expected[mine] -= op.amount
        else:
            expected[mine] -= op.amount
            expected[number_to_id[op.body["to_wallet_number"]]] += op.amount
    balances = dict(
        _query(
            db_url,
            "SELECT id::text, balance FROM wallets_wallet WHERE id = ANY(%s::uuid[])",
            (list(expected),),
        )
    )
    assert balances == expected
    # Every operation got a definitive answer (nothing hangs in limbo).
    assert not [op for op in failed if op.final_status is None]

    attempts = [a for op in ops for a in op.attempts]
    return {
        "clients": len(clients),
        "operations": len(ops),
        "succeeded": len(succeeded),
        "finally_failed": len(failed),
        "failed_statuses": dict(Counter(str(op.final_status) for op in failed)),
        "succeeded_after_retries": len(
            [op for op in succeeded if len(op.attempts) > 1]
        ),
        "requests": len(attempts),
        "requests_by_phase_and_outcome": by_phase(attempts),
        "5xx_by_phase_and_source": server_errors_by_source(attempts),
        "replayed_after_faults": len(replayed),
        "server_errors_500": 0,
        "operations_lost": 0,
        "operations_doubled": 0,
    }


def test_nothing_lost_nothing_doubled_under_faults(fault_env):
    pg, rds, stack, db_url = fault_env
    people = seed_users(
        stack,
        [
            {"email": f"load{i}@example.com", "balances": {"KZT": str(START_BALANCE)}}
            for i in range(CLIENTS + 1)
        ],
    )
    clients, prober = people[:CLIENTS], people[CLIENTS]
    probe_token = login(stack, prober["email"])["access"]
    probe_wallet = prober["wallets"]["KZT"]["id"]
    probes: dict[str, list[Attempt]] = {}
    killed_worker = None
    started = time.monotonic()
    load, threads = start_load(stack, clients)
    try:
        _settle(load, "baseline", 3)

        load.phase = "gunicorn-worker-killed"
        killed_worker = _kill_a_web_worker(stack)
        _settle(load, "gunicorn-worker-killed", 4)

        for name, down, up in (
            ("postgres-down", pg.stop, pg.start),
            ("redis-down", rds.stop, rds.start),
        ):
            load.phase = name
            until = threading.Event()
            holder: list = []
            prober_thread = threading.Thread(
                target=lambda u=until, h=holder: h.append(
                    _probe_while(stack, probe_token, probe_wallet, u)
                ),
                daemon=True,
            )
            down()
            prober_thread.start()
            time.sleep(DOWN_FOR)
            until.set()
            prober_thread.join(timeout=30)
            probes[name] = holder[0] if holder else []
            up()
            _settle(load, name.replace("-down", "-back"), 4)

        _settle(load, "after", 3)
    finally:
        finish_load(load, threads)
        if not pg.running():
            pg.start()
        if rds.process is None or rds.process.poll() is not None:
            rds.start()
    elapsed = time.monotonic() - started
    assert not any(t.is_alive() for t in threads)

    figures = assert_exactly_once(stack, db_url, load)

    # -- What clients saw ----------------------------------------------------------------
    attempts = [a for op in load.operations for a in op.attempts]
    assert_only_json_503(attempts + [a for seen in probes.values() for a in seen])
    db_down = [a for a in probes["postgres-down"] if a.status is not None]
    assert db_down and all(a.status == 503 for a in db_down), db_down[:5]

    figures.update(
        {
            "seconds": round(elapsed, 1),
            "probes_while_down": by_phase(
                [
                    Attempt(name, a.status, a.error)
                    for name, seen in probes.items()
                    for a in seen
                ]
            ),
            "killed_gunicorn_worker_pid": killed_worker,
        }
    )
    figures_path("faults.json").write_text(json.dumps(figures, indent=2))
    print(json.dumps(figures, indent=2))


# --- (d) The fee run and a killed Celery worker ----------------------------------------

FEE_WALLETS = 600

_DUE_WALLETS = """
from datetime import timedelta
from decimal import Decimal
from django.utils import timezone
from accounts.models import User
from transactions import ledger
from wallets.services import wallet_create
past = timezone.now() - timedelta(days=31)
for i in range({count}):
    user = User(email=f"due{{i}}@example.com")
    user.set_unusable_password()
    user.save()
    wallet = wallet_create(owner=user, currency="KZT", now=past)
    if i % 5:  # every fifth cannot pay: debt, blocked
        ledger.wallet_deposit(wallet=wallet, amount=Decimal("1000.00"))
print("DUE-READY")
"""


def _start_worker(stack: Stack) -> subprocess.Popen:
    log = open(stack.workdir / "worker-2.log", "ab")  # noqa: SIM115 - closed below
    try:
        return subprocess.Popen(
            [
                *(sys.executable, "-m", "celery", "-A", "wallet_project", "worker"),
                *("--loglevel", "INFO", "--concurrency", "2"),
                *("-n", f"hostile-{uuid.uuid4().hex[:6]}@%h"),
                *("--without-gossip", "--without-mingle"),
            ],
            cwd=REPO,
            env=stack.env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    finally:
        log.close()


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.02)


def test_fee_run_killed_mid_way_and_rerun_charges_each_wallet_once(fault_env):
    _pg, _rds, stack, db_url = fault_env
    assert "DUE-READY" in stack.manage(
        "shell", "-c", _DUE_WALLETS.format(count=FEE_WALLETS)
    )

    def charges() -> int:
        return _query(db_url, "SELECT count(*) FROM fees_feecharge")[0][0]

    def send_fee_task() -> None:
        stack.manage(
            "shell",
            "-c",
            "from fees.tasks import fees_charge_due; fees_charge_due.delay()",
        )

    worker = _process(stack, "worker")
    send_fee_task()
    _wait(lambda: charges() > 0, 60, "the fee run never started")
    os.killpg(worker.pid, signal.SIGKILL)  # the worker and its pool children
    worker.wait(timeout=10)
    at_kill = charges()

    replacement = _start_worker(stack)
    try:
        # acks_late + reject_on_worker_lost: the killed run's message comes back;
        # and the operator (or tomorrow's beat) runs it again anyway.
        send_fee_task()
        _wait(lambda: charges() >= FEE_WALLETS, 90, "the re-run did not finish")
        time.sleep(1)  # let a redelivered duplicate run finish too
    finally:
        os.killpg(replacement.pid, signal.SIGTERM)
        try:
            replacement.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(replacement.pid, signal.SIGKILL)
            replacement.wait(timeout=10)

    per_wallet = _query(
        db_url,
        "SELECT w.id, count(c.id), min(c.status), w.balance, w.status "
        "FROM wallets_wallet w LEFT JOIN fees_feecharge c ON c.wallet_id = w.id "
        "JOIN accounts_user u ON u.id = w.owner_id "
        "WHERE u.email LIKE 'due%%@example.com' GROUP BY w.id",
    )
    assert len(per_wallet) == FEE_WALLETS
    assert {row[1] for row in per_wallet} == {1}  # exactly one charge each
    paid = [row for row in per_wallet if row[3] == Decimal("800.00")]
    debt = [row for row in per_wallet if row[3] == Decimal("0.00")]
    assert len(paid) == FEE_WALLETS * 4 // 5
    assert len(debt) == FEE_WALLETS // 5
    assert {row[4] for row in debt} == {"blocked"}
    fee_transactions = _query(
        db_url,
        "SELECT count(*) FROM transactions_transaction WHERE kind = 'fee'",
    )[0][0]
    assert fee_transactions == len(paid)
    reconcile = stack.manage("reconcile", "--quiet")
    assert "Ledger clean" in reconcile, reconcile

    figures = {
        "due_wallets": FEE_WALLETS,
        "charges_when_worker_was_killed": at_kill,
        "charges_after_rerun": charges(),
        "paid": len(paid),
        "debts_blocked": len(debt),
        "charged_twice": 0,
    }
    figures_path("fee_run.json").write_text(json.dumps(figures, indent=2))
    print(json.dumps(figures, indent=2))
    assert 0 < at_kill < FEE_WALLETS, "the worker was not killed mid-run"
