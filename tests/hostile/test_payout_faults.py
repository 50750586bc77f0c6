"""Payouts under the faults of test_faults.py, with the real processes (Nginx,
Gunicorn gevent, Celery worker and beat) on a PostgreSQL cluster and a Redis of
this test's own, and a short PAYOUT_TTL so that payouts expire during the run
(hence a stack of its own):

owners create payouts (each with an Idempotency-Key), withdraw and cancel
their pending payouts; the provider lists the pending ones and pays or fails
them (some only once they are past their TTL, some never); every request is
retried with the SAME key and body after a timeout, a dropped connection or a
5xx, while (a) a Gunicorn worker is killed with -9, (b) PostgreSQL restarts,
(c) PostgreSQL is down for a few seconds and back.

Afterwards no payout is half-done: each one's hold is in the matching state
(pending <-> active, paid <-> captured by its one `payout` transaction,
failed/canceled <-> voided, expired <-> expired), no hold lacks its payout,
every payout a client saw created exists once and is in the state the clients
were told, balances are what the 201s and 200s say, held == the sum of active
holds (reconcile clean), and the only 5xx answered is the documented JSON 503.
Figures go to var/hostile/payout_faults.json.
"""

from __future__ import annotations

import http.client
import json
import random
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from urllib.parse import urlsplit

import pytest

from tests.hostile.conftest import figures_path
from tests.hostile.seed import login, seed_users
from tests.hostile.services import faulty_stack
from tests.hostile.test_faults import Attempt, _kill_a_web_worker, _query
from tests.stack import Stack, http_request

pytestmark = pytest.mark.hostile

OWNERS = 6
PROVIDERS = 2
START_BALANCE = Decimal("100000.00")
PAYOUT_TTL_SECONDS = 10
RETRY_FOR = 45.0  # seconds a client keeps retrying one request
DOWN_FOR = 3.0  # seconds PostgreSQL stays down

HOLD_OF_PAYOUT = {
    "pending": "active",
    "paid": "captured",
    "failed": "voided",
    "canceled": "voided",
    "expired": "expired",
}


@pytest.fixture(scope="module")
def payout_env():
    env = {"PAYOUT_TTL_SECONDS": str(PAYOUT_TTL_SECONDS)}
    with faulty_stack(prefix="wallet_payout_faults", env=env) as (pg, _, stack, db):
        yield pg, stack, db


# --- The load -------------------------------------------------------------------------


@dataclass
class Call:
    who: str  # "owner<i>", "provider<j>"
    kind: str  # payout, withdraw, cancel, paid, failed, list
    method: str
    path: str
    body: dict | None
    token: str
    key: str | None = None  # the Idempotency-Key, for the money-moving POSTs
    target: str = ""  # the payout's id
    wallet: str = ""  # the owner's wallet's id
    amount: Decimal = Decimal(0)
    attempts: list[Attempt] = field(default_factory=list)
    status: int | None = None  # of the definitive answer (< 500)
    answer: dict | None = None


def plan_of(payout_id: str) -> str:
    """What the provider does with a payout, the same on every retry and for
    both providers: most are paid, some failed, some paid only once stale (a
    409 payout_expired), some never decided (expired by the sweep)."""
    n = uuid.UUID(payout_id).int % 10
    return "paid" if n < 6 else "failed" if n < 8 else "late" if n < 9 else "leave"


class Load:
    def __init__(self, stack: Stack, owners: list[dict], tokens: list[str], provider):
        self.stack = stack
        self.owners = owners
        self.tokens = tokens
        self.provider_token = provider
        self.phase = "warm-up"
        self.stop = threading.Event()
        self.calls: list[Call] = []
        self._lock = threading.Lock()

    def send(self, call: Call) -> Call:
        """Until a definitive answer (< 500) or RETRY_FOR: same key, same body."""
        with self._lock:
            self.calls.append(call)
        deadline = time.monotonic() + RETRY_FOR
        while True:
            try:
                response = http_request(
                    call.method,
                    self.stack.url + call.path,
                    json_body=call.body,
                    token=call.token,
                    headers={"Idempotency-Key": call.key} if call.key else None,
                    timeout=10,
                )
            # Each attempt is labelled with the phase it ended in: one sent just
            # before a fault and cut by it belongs to that fault, not the baseline.
            # Refused, reset, timed out; or cut mid-answer (IncompleteRead, a
            # worker killed between the headers and the body): retry, same key.
            except (OSError, http.client.HTTPException) as exc:
                call.attempts.append(Attempt.failed(self.phase, exc))
            else:
                call.attempts.append(Attempt.answered(self.phase, response))
                if response.status < 500:
                    call.status = response.status
                    call.answer = response.json()
                    return call
            if time.monotonic() > deadline:
                return call
            time.sleep(0.2)

    def run_owner(self, index: int) -> None:
        rng = random.Random(index)
        wallet = self.owners[index]["wallets"]["KZT"]["id"]
        token = self.tokens[index]
        mine: list[str] = []
        while not self.stop.is_set():
            amount = Decimal(rng.randint(100, 50000)) / 100
            roll = rng.random()
            if roll < 0.6 or not mine:
                call = self.send(
                    Call(
                        f"owner{index}",
                        "payout",
                        "POST",
                        f"/api/v1/wallets/{wallet}/payouts/",
                        {"amount": str(amount), "destination": f"card_tok_{index}"},
                        token,
                        key=str(uuid.uuid4()),
                        amount=amount,
                    )
                )
                if call.status == 201:
                    mine.append(call.answer["id"])
            elif roll < 0.8:
                self.send(
                    Call(
                        f"owner{index}",
                        "withdraw",
                        "POST",
                        f"/api/v1/wallets/{wallet}/operation",
                        {"operation_type": "WITHDRAW", "amount": str(amount)},
                        token,
                        key=str(uuid.uuid4()),
                        wallet=wallet,
                        amount=amount,
                    )
                )
            else:
                target = rng.choice(mine[-20:])
                self.send(
                    Call(
                        f"owner{index}",
                        "cancel",
                        "POST",
                        f"/api/v1/payouts/{target}/cancel/",
                        None,
                        token,
                        target=target,
                    )
                )
            time.sleep(rng.uniform(0.05, 0.25))

    def run_provider(self, index: int) -> None:
        rng = random.Random(100 + index)
        while not self.stop.is_set():
            rows, path = [], "/api/v1/service/payouts/?status=pending&limit=200"
            while path and not self.stop.is_set():
                listing = self.send(
                    Call(
                        f"provider{index}",
                        "list",
                        "GET",
                        path,
                        None,
                        self.provider_token,
                    )
                )
                if listing.status != 200:
                    break
                rows += listing.answer["results"]
                # Its path only: the stack may have been started again, elsewhere.
                following = urlsplit(listing.answer.get("next") or "")
                path = following.path and f"{following.path}?{following.query}"
            rng.shuffle(rows)
            for row in rows[:25]:
                plan = plan_of(row["id"])
                stale_at = datetime.fromisoformat(row["expires_at"])
                if plan == "leave" or (
                    plan == "late"
                    and datetime.now(stale_at.tzinfo) < stale_at + timedelta(seconds=1)
                ):
                    continue
                decision = "failed" if plan == "failed" else "paid"
                self.send(
                    Call(
                        f"provider{index}",
                        decision,
                        "PUT",
                        f"/api/v1/service/payouts/{row['id']}/",
                        {"status": decision, "provider_reference": row["id"][:8]},
                        self.provider_token,
                        target=row["id"],
                    )
                )
            time.sleep(0.05)


def _probe_while(stack: Stack, token: str, wallet_id: str, provider: str, until):
    """What clients see while PostgreSQL is down: the wallet, a payout (no key,
    never retried) and the provider's queue."""
    seen: list[Attempt] = []
    while not until.is_set():
        for method, path, body, who in (
            ("GET", f"/api/v1/wallets/{wallet_id}/", None, token),
            (
                "POST",
                f"/api/v1/wallets/{wallet_id}/payouts/",
                {"amount": "1.00", "destination": "card_tok_probe"},
                token,
            ),
            ("GET", "/api/v1/service/payouts/?status=pending", None, provider),
        ):
            try:
                r = http_request(
                    method, stack.url + path, json_body=body, token=who, timeout=10
                )
                seen.append(Attempt.answered("probe", r))
            except (OSError, http.client.HTTPException) as exc:
                seen.append(Attempt.failed("probe", exc))
        time.sleep(0.1)
    return seen


def _settle(load: Load, phase: str, seconds: float) -> None:
    load.phase = phase
    time.sleep(seconds)


_PAYOUTS_SQL = """
SELECT p.id::text, p.status, p.amount, p.wallet_id::text, p.transaction_id::text,
       h.status, h.amount, h.captured_amount, h.transaction_id::text,
       (SELECT count(*) FROM transactions_transaction t
         WHERE t.kind = 'payout' AND t.metadata->>'payout_id' = p.id::text)
  FROM transactions_payout p JOIN transactions_hold h ON h.id = p.hold_id
"""


def _payouts(db_url: str) -> dict[str, tuple]:
    return {row[0]: row[1:] for row in _query(db_url, _PAYOUTS_SQL)}


def _assert_no_payout_half_done(db_url: str) -> dict[str, tuple]:
    payouts = _payouts(db_url)
    for payout_id, row in payouts.items():
        status, amount, _wallet, txn, hold_status, held, captured, hold_txn, n = row
        assert hold_status == HOLD_OF_PAYOUT[status], (payout_id, row)
        assert held == amount, (payout_id, row)
        if status == "paid":
            assert txn is not None and txn == hold_txn and captured == amount, row
            assert n == 1, (payout_id, row)
        else:
            assert txn is None and hold_txn is None and n == 0, (payout_id, row)
    # No hold without its payout (a create that stopped half-way).
    orphans = _query(
        db_url,
        "SELECT count(*) FROM transactions_hold h "
        "LEFT JOIN transactions_payout p ON p.hold_id = h.id WHERE p.id IS NULL",
    )[0][0]
    assert orphans == 0
    # held == the sum of active holds, balance >= held, on every user wallet.
    wrong = _query(
        db_url,
        "SELECT w.number, w.balance, w.held, coalesce(sum(h.amount), 0) "
        "FROM wallets_wallet w LEFT JOIN transactions_hold h "
        "ON h.wallet_id = w.id AND h.status = 'active' WHERE w.kind = 'user' "
        "GROUP BY w.id HAVING w.held <> coalesce(sum(h.amount), 0) "
        "OR w.balance < w.held",
    )
    assert wrong == []
    return payouts


def test_payouts_are_never_half_done_under_faults(payout_env):
    pg, stack, db_url = payout_env
    people = seed_users(
        stack,
        [
            *(
                {
                    "email": f"payer{i}@example.com",
                    "balances": {"KZT": str(START_BALANCE)},
                }
                for i in range(OWNERS + 1)
            ),
            {"email": "provider@example.com", "service": True},
        ],
    )
    owners, prober = people[:OWNERS], people[OWNERS]
    tokens = [login(stack, o["email"])["access"] for o in owners]
    probe_token = login(stack, prober["email"])["access"]
    provider_token = login(stack, "provider@example.com")["access"]
    load = Load(stack, owners, tokens, provider_token)
    threads = [
        threading.Thread(target=load.run_owner, args=(i,), daemon=True)
        for i in range(OWNERS)
    ] + [
        threading.Thread(target=load.run_provider, args=(j,), daemon=True)
        for j in range(PROVIDERS)
    ]
    probes: list[Attempt] = []
    started = time.monotonic()
    for thread in threads:
        thread.start()
    try:
        _settle(load, "baseline", 3)

        load.phase = "gunicorn-worker-killed"
        killed_worker = _kill_a_web_worker(stack)
        _settle(load, "gunicorn-worker-killed", 4)

        load.phase = "postgres-restart"
        pg.restart()
        _settle(load, "postgres-restart", 4)

        load.phase = "postgres-down"
        until = threading.Event()
        holder: list = []
        prober_thread = threading.Thread(
            target=lambda: holder.append(
                _probe_while(
                    stack,
                    probe_token,
                    prober["wallets"]["KZT"]["id"],
                    provider_token,
                    until,
                )
            ),
            daemon=True,
        )
        pg.stop()
        prober_thread.start()
        time.sleep(DOWN_FOR)
        until.set()
        prober_thread.join(timeout=30)
        probes = holder[0] if holder else []
        pg.start()
        _settle(load, "postgres-back", 4)

        _settle(load, "after", 3)
    finally:
        load.stop.set()
        for thread in threads:
            thread.join(timeout=RETRY_FOR + 15)
        if not pg.running():
            pg.start()
    elapsed = time.monotonic() - started
    assert not any(t.is_alive() for t in threads)

    calls = load.calls
    # -- Every request got a definitive answer, and the right one ------------------------
    assert not [c for c in calls if c.status is None], "a request never got an answer"
    expected = {
        "payout": {201},
        "withdraw": {201},
        "list": {200},
        "cancel": {200, 409},
        "paid": {200, 409},
        "failed": {200, 409},
    }
    wrong = [
        (c.kind, c.status, c.answer) for c in calls if c.status not in expected[c.kind]
    ]
    assert not wrong, wrong[:5]
    for c in calls:
        if c.status == 409:
            assert c.answer["code"] in ("payout_already_decided", "payout_expired"), c
        elif c.kind in ("cancel", "paid", "failed"):
            assert c.answer["status"] == ("canceled" if c.kind == "cancel" else c.kind)

    created = {c.answer["id"]: c for c in calls if c.kind == "payout"}
    assert len(created) == len([c for c in calls if c.kind == "payout"])
    told = {
        status: {c.target for c in calls if c.kind == kind and c.status == 200}
        for kind, status in (
            ("paid", "paid"),
            ("failed", "failed"),
            ("cancel", "canceled"),
        )
    }
    assert not told["paid"] & told["failed"]
    assert not told["paid"] & told["canceled"]
    assert not told["failed"] & told["canceled"]
    told_expired = {
        c.target
        for c in calls
        if c.status == 409 and c.answer["code"] == "payout_expired"
    }

    # -- Replays after the fact: the stored first answer, nothing created ------------------
    replayed = random.Random(0).sample(list(created.values()), min(20, len(created)))
    for c in replayed:
        again = http_request(
            c.method,
            stack.url + c.path,
            json_body=c.body,
            token=c.token,
            headers={"Idempotency-Key": c.key},
        )
        assert again.status == 201, again.body
        assert again.json() == c.answer

    # -- No payout half-done, mid-way (payouts still pending, holds active) --------------
    assert "Ledger clean" in stack.manage("reconcile", "--quiet")
    _assert_no_payout_half_done(db_url)

    # -- The sweep (the beat's task, on the worker) expires what is left -----------------
    time.sleep(PAYOUT_TTL_SECONDS + 1)
    stack.manage(
        "shell",
        "-c",
        "from transactions.tasks import expire_holds; expire_holds.delay()",
    )
    deadline = time.monotonic() + 60
    while _query(
        db_url, "SELECT count(*) FROM transactions_payout WHERE status = 'pending'"
    )[0][0]:
        assert time.monotonic() < deadline, "the expiry task did not expire them"
        time.sleep(0.5)
    payouts = _assert_no_payout_half_done(db_url)
    assert "Ledger clean" in stack.manage("reconcile", "--quiet")

    # -- Every payout a client saw created exists once, in the state it was told ---------
    owner_wallets = {o["wallets"]["KZT"]["id"]: o for o in owners}
    prober_wallet = prober["wallets"]["KZT"]["id"]
    mine = {p for p, row in payouts.items() if row[2] in owner_wallets}
    assert mine == set(created)
    assert not [p for p, row in payouts.items() if row[2] == prober_wallet]  # all 503
    status_of = {p: row[0] for p, row in payouts.items()}
    for status, ids in told.items():
        assert {status_of[p] for p in ids} <= {status}, status
    assert {status_of[p] for p in told_expired} <= {"expired"}
    in_state = Counter(status_of[p] for p in mine)
    assert in_state["paid"] == len(told["paid"])
    assert in_state["failed"] == len(told["failed"])
    assert in_state["canceled"] == len(told["canceled"])
    assert in_state["expired"] == len(mine) - sum(len(ids) for ids in told.values())

    # -- Balances: the start, less the 201 withdrawals and the paid payouts ----------------
    balances = {w: START_BALANCE for w in owner_wallets}
    for c in calls:
        if c.kind == "withdraw":
            balances[c.wallet] -= c.amount
    for p in told["paid"]:
        balances[payouts[p][2]] -= payouts[p][1]
    in_db = dict(
        _query(
            db_url,
            "SELECT id::text, balance FROM wallets_wallet WHERE id = ANY(%s::uuid[])",
            (list(owner_wallets),),
        )
    )
    assert in_db == balances
    provider_gain = _query(
        db_url,
        "SELECT coalesce(sum(e.amount), 0) FROM transactions_entry e "
        "JOIN transactions_transaction t ON t.id = e.transaction_id "
        "JOIN wallets_wallet w ON w.id = e.wallet_id "
        "WHERE t.kind = 'payout' AND w.kind = 'system'",
    )[0][0]
    assert provider_gain == sum((payouts[p][1] for p in told["paid"]), Decimal(0))

    # -- What clients saw: no 500, every 5xx the documented JSON 503 ---------------------
    attempts = [a for c in calls for a in c.attempts]
    seen = attempts + probes
    assert not [a for a in seen if a.status == 500], "a 500 was answered"
    for a in seen:
        if a.status is not None and a.status >= 500:
            assert a.status == 503, a
            assert a.content_type.startswith("application/json"), a
            assert json.loads(a.body)["code"] == "service_unavailable"
    before_faults = [a for a in attempts if a.phase in ("warm-up", "baseline")]
    assert all(a.status is not None and a.status < 500 for a in before_faults), [
        a for a in before_faults if a.status is None or a.status >= 500
    ][:5]
    db_down = [a for a in probes if a.status is not None]
    assert db_down and all(a.status == 503 for a in db_down), db_down[:5]

    def by_phase(items: list[Attempt]) -> dict:
        out: dict[str, Counter] = {}
        for a in items:
            out.setdefault(a.phase, Counter())[str(a.status or a.error)] += 1
        return {k: dict(v) for k, v in out.items()}

    figures = {
        "owners": OWNERS,
        "providers": PROVIDERS,
        "payout_ttl_seconds": PAYOUT_TTL_SECONDS,
        "seconds": round(elapsed, 1),
        "requests": len(attempts),
        "calls_by_kind": dict(Counter(c.kind for c in calls)),
        "retried_calls": len([c for c in calls if len(c.attempts) > 1]),
        "payouts": len(mine),
        "payouts_by_state": dict(in_state),
        "told_expired_on_decision": len(told_expired),
        "requests_by_phase_and_outcome": by_phase(attempts),
        "probes_while_postgres_down": by_phase(probes),
        "killed_gunicorn_worker_pid": killed_worker,
        "replayed_after_faults": len(replayed),
        "payouts_half_done": 0,
    }
    figures_path("payout_faults.json").write_text(json.dumps(figures, indent=2))
    print(json.dumps(figures, indent=2))
