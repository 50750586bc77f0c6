"""Webhooks under faults, with the real processes (Nginx, Gunicorn gevent, Celery
worker and beat) on a PostgreSQL cluster and a Redis of this module's own, and
short retry delays (first retry after 1 s, at most 2 s apart) so retries fit in a
test:

(a) a receiver that answers 500 to the first 2 tries of each event, then 200:
    every event is accepted exactly once, its 3 attempts recorded;
(b) the receiver down (its port closed) for a while under a stream of deposits,
    then up: everything catches up, nothing is lost;
(d) a rolled-back posting (a refused withdrawal, a transfer to a missing wallet)
    leaves no event, so nothing is delivered (and no sequence number is used);
(c) the Celery worker killed with -9 while the receiver holds a delivery open,
    then Redis stopped (every queued message lost) while more deposits come,
    then Redis and a new worker started: the sweep re-enqueues from PostgreSQL
    and every event is delivered.

The receiver (tests/stack.py `webhook_receiver`) checks every signature with the
README's example (transactions/webhooks/verify_example.py). Figures go to
var/hostile/webhooks.json: events sent, delivered, duplicates the receiver saw,
lost (0).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import uuid
from collections import Counter

import pytest

from tests.hostile.conftest import figures_path
from tests.hostile.seed import login, seed_users
from tests.hostile.services import faulty_stack
from tests.hostile.test_faults import _process, _query, _start_worker
from tests.stack import ReceivedRequest, Stack, WebhookReceiver, webhook_receiver
from transactions.webhooks.verify_example import verify_wallet_signature
from wallets.numbers import luhn_check_digit

pytestmark = pytest.mark.hostile

DEADLINE = 90.0  # seconds to wait for deliveries (retries come every 1-2 s)
STACK_ENV = {
    "WEBHOOKS_RETRY_FIRST_SECONDS": "1",
    "WEBHOOKS_RETRY_MAX_SECONDS": "2",
    # A killed worker's claim (lease: timeout + margin) runs out after 6 s, and
    # the sweep that re-enqueues it runs every 2 s.
    "WEBHOOKS_TIMEOUT_SECONDS": "5",
    "WEBHOOKS_LEASE_MARGIN_SECONDS": "1",
    "WEBHOOKS_SWEEP_SECONDS": "2",
}
FIGURES: dict[str, dict] = {}


@pytest.fixture(scope="module")
def hook_env():
    with faulty_stack(prefix="wallet_webhook_faults", env=STACK_ENV) as env:
        yield env


def _write_figures() -> None:
    figures_path("webhooks.json").write_text(json.dumps(FIGURES, indent=2))


def _owner(stack: Stack, name: str) -> dict:
    """A user with an empty KZT wallet (no event yet) and a token."""
    email = f"{name}-{uuid.uuid4().hex[:6]}@example.com"
    (person,) = seed_users(stack, [{"email": email, "balances": {"KZT": "0"}}])
    person["token"] = login(stack, email)["access"]
    person["wallet"] = person["wallets"]["KZT"]["id"]
    return person


def _endpoint(stack: Stack, person: dict, receiver: WebhookReceiver) -> dict:
    created = stack.request(
        "POST",
        "/api/v1/webhook-endpoints/",
        json_body={"url": receiver.url, "event_types": ["*"]},
        token=person["token"],
    )
    assert created.status == 201, created.body
    return created.json()


def _post(stack: Stack, person: dict, path: str, body: dict) -> tuple[int, dict]:
    """One money request with an Idempotency-Key, retried with the same key after
    a 5xx or a dropped connection; its definitive status and body."""
    key = str(uuid.uuid4())
    deadline = time.monotonic() + 45
    while True:
        try:
            response = stack.request(
                "POST",
                path,
                json_body=body,
                token=person["token"],
                headers={"Idempotency-Key": key},
                timeout=10,
            )
            if response.status < 500:
                return response.status, response.json()
        except OSError:
            pass
        assert time.monotonic() < deadline, f"no answer to POST {path}"
        time.sleep(0.2)


def _deposit(stack: Stack, person: dict, amount: str = "10.00") -> None:
    status, body = _post(
        stack,
        person,
        f"/api/v1/wallets/{person['wallet']}/operation",
        {"operation_type": "DEPOSIT", "amount": amount},
    )
    assert status == 201, body


def _events(db_url: str, wallet: str) -> dict[int, tuple[str, int]]:
    """The wallet's events in the outbox: id -> (type, sequence)."""
    rows = _query(
        db_url,
        "SELECT id, type, sequence FROM transactions_event WHERE wallet_id = %s",
        (wallet,),
    )
    return {row[0]: (row[1], row[2]) for row in rows}


def _deliveries(db_url: str, endpoint_id: str) -> dict[int, tuple[str, int]]:
    """event id -> (status, attempts) of the endpoint's deliveries."""
    rows = _query(
        db_url,
        "SELECT event_id, status, attempts FROM transactions_webhookdelivery "
        "WHERE endpoint_id = %s",
        (endpoint_id,),
    )
    return {row[0]: (row[1], row[2]) for row in rows}


def _attempts(db_url: str, endpoint_id: str) -> list[tuple[int, int | None, str]]:
    """(event id, status code, error) of every recorded attempt."""
    return _query(
        db_url,
        "SELECT d.event_id, a.status_code, a.error FROM transactions_webhookattempt a "
        "JOIN transactions_webhookdelivery d ON d.id = a.delivery_id "
        "WHERE d.endpoint_id = %s ORDER BY a.id",
        (endpoint_id,),
    )


def _event_id(request: ReceivedRequest) -> int:
    return int(request.headers["wallet-event-id"])


def _accepted(receiver: WebhookReceiver) -> Counter:
    """How many times each event id was answered 200."""
    return Counter(_event_id(r) for r in receiver.requests if r.status == 200)


def _wait_all_accepted(receiver: WebhookReceiver, expected: set[int]) -> None:
    receiver.wait_until(lambda: set(_accepted(receiver)) >= expected, timeout=DEADLINE)


def _wait_all_delivered(db_url: str, endpoint_id: str, expected: set[int]) -> dict:
    """Until every delivery row says delivered: after that nothing is sent again,
    so what the receiver counted is final."""
    deadline = time.monotonic() + DEADLINE
    while True:
        rows = _deliveries(db_url, endpoint_id)
        if set(rows) >= expected and all(s == "delivered" for s, _ in rows.values()):
            return rows
        assert time.monotonic() < deadline, f"deliveries not all delivered: {rows}"
        time.sleep(0.2)


def _check_signed(receiver: WebhookReceiver, secret: str, events: dict) -> None:
    """Every request was for one of the events, with its headers, and signed
    with the endpoint's secret over the exact bytes received."""
    for request in receiver.requests:
        event_id = _event_id(request)
        assert event_id in events, request.headers
        assert request.headers["wallet-event-type"] == events[event_id][0]
        assert request.json()["id"] == event_id
        assert request.json()["sequence"] == events[event_id][1]
        assert verify_wallet_signature(
            secret, request.body, request.headers["wallet-signature"]
        ), request.headers


def test_a_receiver_failing_twice_gets_each_event_accepted_once(hook_env):
    """Each event: 500, 500, then 200 -> accepted once, 3 attempts recorded, the
    delivery delivered; no event is sent again after its 200."""
    _pg, _rds, stack, db_url = hook_env
    person = _owner(stack, "flaky")
    with webhook_receiver() as receiver:
        tries: Counter = Counter()
        lock = threading.Lock()

        def respond(request: ReceivedRequest) -> int:
            with lock:
                tries[_event_id(request)] += 1
                return 500 if tries[_event_id(request)] <= 2 else 200

        receiver.respond = respond
        endpoint = _endpoint(stack, person, receiver)
        for _ in range(8):
            _deposit(stack, person)
        events = _events(db_url, person["wallet"])
        assert len(events) == 8
        _wait_all_accepted(receiver, set(events))
        rows = _wait_all_delivered(db_url, endpoint["id"], set(events))

        accepted = _accepted(receiver)
        assert accepted == Counter(dict.fromkeys(events, 1)), accepted
        seen = Counter(_event_id(r) for r in receiver.requests)
        assert seen == Counter(dict.fromkeys(events, 3)), seen
        assert rows == dict.fromkeys(events, ("delivered", 3))
        attempts = _attempts(db_url, endpoint["id"])
        per_event = {
            e: [code for event_id, code, _ in attempts if event_id == e] for e in events
        }
        assert per_event == {e: [500, 500, 200] for e in events}, per_event
        _check_signed(receiver, endpoint["secret"], events)
        assert sorted(sequence for _, sequence in events.values()) == list(range(1, 9))

    FIGURES["failing_twice"] = {
        "events_sent": len(events),
        "requests_received": sum(seen.values()),
        "delivered": len(accepted),
        "duplicates_accepted": sum(accepted.values()) - len(accepted),
        "attempts_recorded": len(attempts),
        "lost": len(set(events) - set(accepted)),
    }
    _write_figures()


def test_b_receiver_down_under_a_stream_of_deposits_catches_up(hook_env):
    """The receiver's port is closed while deposits keep coming, then opens
    again (same port): every event arrives, none lost; the failed tries are
    recorded as connection failures."""
    _pg, _rds, stack, db_url = hook_env
    person = _owner(stack, "down")
    with webhook_receiver() as receiver:
        endpoint = _endpoint(stack, person, receiver)
        receiver.stop()  # connections refused from now on

        stop = threading.Event()
        deposits: list[int] = []

        def stream() -> None:
            while not stop.is_set():
                _deposit(stack, person, "1.00")
                deposits.append(1)
                time.sleep(0.1)

        streamer = threading.Thread(target=stream, daemon=True)
        streamer.start()
        # Down until several deliveries have failed (each tried, refused, due again).
        deadline = time.monotonic() + DEADLINE
        while True:
            refused = [a for a in _attempts(db_url, endpoint["id"]) if a[1] is None]
            if len({a[0] for a in refused}) >= 5 and len(deposits) >= 30:
                break
            assert time.monotonic() < deadline, "no delivery was tried while down"
            time.sleep(0.2)
        receiver.start()  # back on the same port, deposits still coming
        up_at = len(deposits)
        while len(deposits) < up_at + 10:
            assert streamer.is_alive()
            time.sleep(0.1)
        stop.set()
        streamer.join(timeout=60)
        assert not streamer.is_alive()

        events = _events(db_url, person["wallet"])
        assert len(events) == len(deposits)
        _wait_all_accepted(receiver, set(events))
        rows = _wait_all_delivered(db_url, endpoint["id"], set(events))

        accepted = _accepted(receiver)
        assert set(accepted) == set(events)  # none lost, none foreign
        assert set(rows) == set(events)
        attempts = _attempts(db_url, endpoint["id"])
        failures = [a for a in attempts if a[1] is None]
        assert failures and all("connection failed" in a[2] for a in failures)
        _check_signed(receiver, endpoint["secret"], events)

    FIGURES["receiver_down"] = {
        "events_sent": len(events),
        "sent_while_down": up_at,
        "deliveries_refused_while_down": len({a[0] for a in failures}),
        "refused_attempts": len(failures),
        "delivered": len(accepted),
        "duplicates_accepted": sum(accepted.values()) - len(accepted),
        "max_attempts_of_one_delivery": max(n for _, n in rows.values()),
        "lost": len(set(events) - set(accepted)),
    }
    _write_figures()


def test_d_a_rolled_back_posting_delivers_no_event(hook_env):
    """A withdrawal refused for lack of funds and a transfer to a wallet that
    does not exist write no event: the receiver gets only the deposit made
    after them, whose sequence is 1 (a rolled-back posting takes no number)."""
    _pg, _rds, stack, db_url = hook_env
    person = _owner(stack, "rollback")
    with webhook_receiver() as receiver:
        endpoint = _endpoint(stack, person, receiver)
        refused, body = _post(
            stack,
            person,
            f"/api/v1/wallets/{person['wallet']}/operation",
            {"operation_type": "WITHDRAW", "amount": "5.00"},
        )
        assert (refused, body["code"]) == (400, "insufficient_funds"), body
        missing, body = _post(
            stack,
            person,
            "/api/v1/transfers/",
            {
                "from_wallet": person["wallet"],
                # A well-formed number no wallet has (numbers start at 1).
                "to_wallet_number": "0" * 14 + "1" + luhn_check_digit("0" * 14 + "1"),
                "amount": "1.00",
            },
        )
        assert (missing, body["code"]) == (404, "wallet_not_found"), body
        assert _events(db_url, person["wallet"]) == {}
        _deposit(stack, person, "3.00")  # the marker: the pipeline works
        events = _events(db_url, person["wallet"])
        assert [v for v in events.values()] == [("transaction.posted", 1)]
        _wait_all_accepted(receiver, set(events))
        _wait_all_delivered(db_url, endpoint["id"], set(events))
        assert [_event_id(r) for r in receiver.requests] == list(events)
        assert receiver.requests[0].json()["data"]["amount"] == "3.00"
        assert set(_deliveries(db_url, endpoint["id"])) == set(events)
        _check_signed(receiver, endpoint["secret"], events)

    FIGURES["rolled_back"] = {
        "postings_refused": 2,
        "events_written_by_them": 0,
        "requests_received": len(receiver.requests),
        "delivered": 1,
    }
    _write_figures()


def test_c_worker_killed_mid_delivery_and_redis_restarted_loses_nothing(hook_env):
    """The receiver holds the first delivery open; the worker is killed with -9
    meanwhile (its claim is left, nothing recorded); Redis goes down (every
    queued and unacknowledged message gone) while more deposits are made, then
    comes back with a new worker. The sweep re-enqueues every pending delivery
    from PostgreSQL: all events are delivered."""
    _pg, rds, stack, db_url = hook_env
    person = _owner(stack, "killed")
    with webhook_receiver() as receiver:
        first_arrived, release = threading.Event(), threading.Event()
        held: list[int] = []
        lock = threading.Lock()

        def respond(request: ReceivedRequest) -> int:
            with lock:
                hold = not held
                if hold:
                    held.append(_event_id(request))
            if hold:
                first_arrived.set()
                release.wait(timeout=DEADLINE)
                return 500  # nobody reads it: the worker is dead by then
            return 200

        receiver.respond = respond
        endpoint = _endpoint(stack, person, receiver)
        for _ in range(5):
            _deposit(stack, person)
        assert first_arrived.wait(timeout=DEADLINE), "no delivery arrived"

        worker = _process(stack, "worker")
        os.killpg(worker.pid, signal.SIGKILL)  # the worker and its pool children
        worker.wait(timeout=10)
        rds.stop()
        for _ in range(5):  # while the broker is down and no worker runs
            _deposit(stack, person)
        release.set()
        rds.start()  # empty: whatever was queued is gone
        replacement = _start_worker(stack)
        try:
            events = _events(db_url, person["wallet"])
            assert len(events) == 10
            _wait_all_accepted(receiver, set(events))
            rows = _wait_all_delivered(db_url, endpoint["id"], set(events))
        finally:
            os.killpg(replacement.pid, signal.SIGTERM)
            try:
                replacement.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(replacement.pid, signal.SIGKILL)
                replacement.wait(timeout=10)

        accepted = _accepted(receiver)
        assert set(accepted) == set(events)
        assert set(rows) == set(events)
        seen = Counter(_event_id(r) for r in receiver.requests)
        # The held event came twice: the killed worker's try, then the sweep's.
        assert seen[held[0]] >= 2, seen
        assert accepted[held[0]] == 1
        _check_signed(receiver, endpoint["secret"], events)
        attempts = _attempts(db_url, endpoint["id"])

    FIGURES["worker_killed_redis_restarted"] = {
        "events_sent": len(events),
        "sent_while_redis_down_and_no_worker": 5,
        "requests_received": sum(seen.values()),
        "delivered": len(accepted),
        "duplicates_seen": sum(seen.values()) - len(seen),
        "duplicates_accepted": sum(accepted.values()) - len(accepted),
        "attempts_recorded": len(attempts),
        "held_event_requests": seen[held[0]],
        "lost": len(set(events) - set(accepted)),
    }
    FIGURES["total"] = {
        "events_sent": sum(f.get("events_sent", 0) for f in FIGURES.values()),
        "lost": sum(f.get("lost", 0) for f in FIGURES.values()),
    }
    _write_figures()
    print(json.dumps(FIGURES, indent=2))
    assert FIGURES["total"]["lost"] == 0
