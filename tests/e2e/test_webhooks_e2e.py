"""Webhooks through the real stack (tests/stack.py: Nginx, Gunicorn gevent, a Celery
worker and beat): two people sign up and log in through Nginx, each registers a
webhook endpoint pointing at a receiver on loopback (an HTTP server in this test
process), one deposits and transfers to the other. Beat's dispatcher turns the
outbox into deliveries, the worker POSTs them: every `transaction.posted` event
arrives once per event id, signed with its endpoint's secret (checked with the
receiver's example code the README quotes, transactions/webhooks/verify_example.py,
loaded on its own as a receiver would copy it), with the Wallet-Event-Id and
Wallet-Event-Type headers, and its body is the event as GET /api/v1/events/ shows
it.
"""

from __future__ import annotations

import importlib.util
import time
import uuid
from collections import Counter
from collections.abc import Iterator

import psycopg
import pytest

from tests.e2e.test_stack import PASSWORD, _sign_up
from tests.stack import REPO, Stack, WebhookReceiver, webhook_receiver

pytestmark = pytest.mark.e2e

DELIVERY_TIMEOUT = 60  # seconds: beat dispatches every second, the worker sends


def _verify_example():
    """The README's verification snippet, as a receiver would run it: no Django."""
    path = REPO / "transactions" / "webhooks" / "verify_example.py"
    spec = importlib.util.spec_from_file_location("wallet_verify_example", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.verify_wallet_signature


@pytest.fixture(scope="module")
def receiver() -> Iterator[WebhookReceiver]:
    with webhook_receiver() as running:
        yield running


def _login(stack: Stack, email: str) -> str:
    response = stack.request(
        "POST", "/api/v1/auth/token/", json_body={"email": email, "password": PASSWORD}
    )
    assert response.status == 200, response.body
    return response.json()["access"]


def _events(stack: Stack, token: str) -> list[dict]:
    """Every `transaction.posted` event of the caller, following `next`."""
    events, path = [], "/api/v1/events/?type=transaction.posted&limit=2"
    while path:
        page = stack.request("GET", path, token=token)
        assert page.status == 200, page.body
        events += page.json()["results"]
        path = (page.json()["next"] or "").removeprefix(stack.url)
    return events


def _deliveries(db_url: str, event_ids: list[int]) -> list[tuple]:
    with psycopg.connect(db_url, autocommit=True) as conn:
        return conn.execute(
            "SELECT d.event_id, d.status, d.attempts, e.url "
            "FROM transactions_webhookdelivery d "
            "JOIN transactions_webhookendpoint e ON e.id = d.endpoint_id "
            "WHERE d.event_id = ANY(%s)",
            (event_ids,),
        ).fetchall()


def _wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (result := predicate()):
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.2)
    return result


def test_each_posted_event_arrives_once_signed_as_the_events_list_shows_it(
    stack, smtp, receiver, e2e_database_url
):
    """A deposit and a transfer: the sender's endpoint gets the deposit's and the
    transfer's debit leg, the recipient's endpoint the credit leg; each event once,
    signed with its own endpoint's secret, its body the events list's entry."""
    alice_email = f"hook-alice-{uuid.uuid4().hex[:8]}@example.com"
    bob_email = f"hook-bob-{uuid.uuid4().hex[:8]}@example.com"
    alice = _sign_up(stack, smtp, alice_email)
    bob = _sign_up(stack, smtp, bob_email)
    alice_token, bob_token = _login(stack, alice_email), _login(stack, bob_email)
    alice_wallet, bob_wallet = alice["wallets"][0], bob["wallets"][0]

    endpoints = {}
    for who, token, types in (
        ("alice", alice_token, ["transaction.posted"]),
        ("bob", bob_token, ["*"]),
    ):
        created = stack.request(
            "POST",
            "/api/v1/webhook-endpoints/",
            json_body={"url": f"{receiver.url}/{who}", "event_types": types},
            token=token,
        )
        assert created.status == 201, created.body
        body = created.json()
        assert body["status"] == "enabled"
        assert body["secret"].startswith("whsec_")
        endpoints[who] = body
        listed = stack.request("GET", "/api/v1/webhook-endpoints/", token=token)
        assert [e["id"] for e in listed.json()] == [body["id"]]
        assert "secret" not in listed.json()[0]

    deposit = stack.request(
        "POST",
        f"/api/v1/wallets/{alice_wallet['id']}/operation",
        json_body={"operation_type": "DEPOSIT", "amount": "1000.00"},
        token=alice_token,
        headers={"Idempotency-Key": str(uuid.uuid4())},
    )
    assert deposit.status == 201, deposit.body
    transfer = stack.request(
        "POST",
        "/api/v1/transfers/",
        json_body={
            "from_wallet": alice_wallet["id"],
            "to_wallet_number": bob_wallet["number"],
            "amount": "250.50",
        },
        token=alice_token,
        headers={"Idempotency-Key": str(uuid.uuid4())},
    )
    assert transfer.status == 201, transfer.body

    # What each owner's events list says (the truth a client can always read).
    # An event is listed once every transaction that began before it has ended,
    # on the whole PostgreSQL server (other databases' too): poll, with a deadline.
    expected = _wait_for(
        lambda: (
            (
                got := {
                    "alice": _events(stack, alice_token),
                    "bob": _events(stack, bob_token),
                }
            )
            and len(got["alice"]) >= 2
            and len(got["bob"]) >= 1
            and got
        ),
        DELIVERY_TIMEOUT,
        "the events list never showed the deposit and the transfer",
    )
    assert [e["data"]["amount"] for e in expected["alice"]] == ["1000.00", "-250.50"]
    assert [e["data"]["amount"] for e in expected["bob"]] == ["250.50"]
    assert {e["wallet_id"] for e in expected["alice"]} == {alice_wallet["id"]}
    assert [e["sequence"] for e in expected["alice"]] == [1, 2]
    event_ids = [e["id"] for events in expected.values() for e in events]

    def accepted(who: str) -> set[int]:
        return {
            int(r.headers["wallet-event-id"])
            for r in receiver.requests
            if r.path == f"/hooks/{who}" and r.status == 200
        }

    receiver.wait_until(
        lambda: all(
            accepted(who) >= {e["id"] for e in events}
            for who, events in expected.items()
        ),
        timeout=DELIVERY_TIMEOUT,
    )
    # Once every delivery row says delivered, nothing will be sent again: the
    # receiver's count per event id is then final.
    rows = _wait_for(
        lambda: (
            (rows := _deliveries(e2e_database_url, event_ids))
            and len(rows) == len(event_ids)
            and all(row[1] == "delivered" for row in rows)
            and rows
        ),
        DELIVERY_TIMEOUT,
        "the deliveries were not all recorded as delivered",
    )
    assert {row[2] for row in rows} == {1}, rows  # one attempt each

    verify = _verify_example()
    for who, events in expected.items():
        secret = endpoints[who]["secret"]
        other = endpoints["bob" if who == "alice" else "alice"]["secret"]
        got = [r for r in receiver.requests if r.path == f"/hooks/{who}"]
        counts = Counter(int(r.headers["wallet-event-id"]) for r in got)
        assert counts == Counter({e["id"]: 1 for e in events}), counts
        by_id = {int(r.headers["wallet-event-id"]): r for r in got}
        for event in events:
            request = by_id[event["id"]]
            assert request.method == "POST"
            assert request.headers["content-type"] == "application/json"
            assert request.headers["wallet-event-type"] == "transaction.posted"
            assert request.json() == event
            assert request.json()["data"]["transaction_id"]
            header = request.headers["wallet-signature"]
            assert header.startswith("t=")
            assert verify(secret, request.body, header)
            # The check is real: another secret, or a body altered by one byte,
            # fails it.
            assert not verify(other, request.body, header)
            assert not verify(secret, request.body.replace(b"}", b" }", 1), header)
            assert not verify(secret, request.body, header, now=time.time() + 301)
    # Nothing else came: no other event type for alice (her filter), and no
    # request without an event id.
    assert len(receiver.requests) == len(event_ids)

    # The stack's own processes did the work: nothing here dispatched, beat runs
    # the dispatcher (its every-second lines are kept out of the log) and the
    # worker sent the batches.
    assert "beat" in stack.log("beat") and "is starting" in stack.log("beat")
    assert "webhook_deliveries_send" in stack.log("worker")
