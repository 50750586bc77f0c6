"""Webhook deliveries to a real receiver on loopback: the dispatcher turns
visible events into deliveries, a send claims one, POSTs it signed and records
the attempt; failures are retried with backoff until 3 days have passed; an
endpoint failing for 3 days is disabled and its owner emailed; the sweep sends
what a lost broker message or a killed worker left behind; two senders never
send one delivery twice at once."""

import itertools
import json
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest
import time_machine
from django.db import connection
from django.utils import timezone

from conftest import run_in_threads
from transactions import ledger, webhooks
from transactions.models import Event, OutboxCursor, WebhookAttempt, WebhookDelivery
from transactions.tests.webhooks_support import (
    deliveries_of,
    endpoint_for,
    wait_events_visible,
)
from transactions.webhooks import delivery as delivery_module
from transactions.webhooks import dispatch as dispatch_module
from transactions.webhooks.verify_example import verify_wallet_signature
from wallet_project.celery import app as celery_app

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("allow_private"),
]

START = datetime(2031, 3, 1, 12, 0, tzinfo=UTC)


def dispatch() -> int:
    wait_events_visible()
    return webhooks.webhooks_dispatch()


@pytest.fixture
def broker_lost():
    """Tasks go to the real broker (Redis), and whatever they enqueued is then
    dropped from it: a lost message (returns how many were dropped)."""
    assert not celery_app.conf.task_always_eager
    celery_app.control.purge()

    def lose() -> int:
        return celery_app.control.purge()

    yield lose
    celery_app.control.purge()


def _next_try(traveller, delivery: WebhookDelivery) -> None:
    """Move the clock to when `delivery` is due again and run the sweep."""
    delivery.refresh_from_db()
    assert delivery.next_attempt_at is not None
    traveller.move_to(delivery.next_attempt_at)
    webhooks.webhooks_sweep()
    delivery.refresh_from_db()


def test_fails_twice_then_accepted_delivered_once_per_event_and_signed(
    user, make_wallet, receiver, celery_eager
):
    receiver.statuses = [500, 503, 200]
    endpoint = endpoint_for(user, receiver.url)
    with time_machine.travel(START, tick=False) as traveller:
        make_wallet(owner=user, balance="25.00")
        assert dispatch() == 1  # eagerly sent on commit: the first try, a 500
        (delivery,) = deliveries_of(endpoint)
        assert delivery.status == "pending" and delivery.attempts == 1
        assert delivery.next_attempt_at - START <= timedelta(minutes=1)

        _next_try(traveller, delivery)  # 503
        assert delivery.status == "pending" and delivery.attempts == 2
        _next_try(traveller, delivery)  # 200
        assert delivery.status == "delivered" and delivery.attempts == 3
        webhooks.webhooks_sweep()  # nothing is due any more

    event = Event.objects.get(pk=delivery.event_id)
    assert receiver.event_ids == [str(event.id)] * 3
    accepted = receiver.received[-1]
    assert accepted.path == "/hook"
    assert accepted.headers["Content-Type"] == "application/json"
    assert accepted.headers["Wallet-Event-Type"] == "transaction.posted"
    assert accepted.headers["Host"] == receiver.url.split("/")[2]
    payload = json.loads(accepted.body)
    assert payload == webhooks.event_payload(event)
    assert payload["data"]["amount"] == "25.00"
    header = accepted.headers["Wallet-Signature"]
    timestamp = int(header.split(",")[0].removeprefix("t="))
    assert verify_wallet_signature(
        endpoint.secret, accepted.body, header, now=timestamp
    )
    assert not verify_wallet_signature(
        endpoint.secret, accepted.body + b" ", header, now=timestamp
    )
    assert not verify_wallet_signature(
        "whsec_other", accepted.body, header, now=timestamp
    )
    assert not verify_wallet_signature(
        endpoint.secret, accepted.body, header, now=timestamp + 301
    )
    attempts = list(WebhookAttempt.objects.filter(delivery=delivery))
    assert [a.status_code for a in attempts] == [500, 503, 200]
    assert attempts[0].response_excerpt == "answer 500"
    endpoint.refresh_from_db()
    assert endpoint.failing_since is None  # a success clears it


def test_each_event_once_to_each_matching_endpoint(
    user, other_user, make_wallet, receiver, celery_eager
):
    everything = endpoint_for(user, receiver.url)
    payouts_only = endpoint_for(user, receiver.url, event_types=["payout.paid"])
    endpoint_for(other_user, receiver.url)
    wallet = make_wallet(owner=user)
    for amount in ("1.00", "2.00", "3.00"):
        ledger.wallet_deposit(wallet=wallet, amount=Decimal(amount))

    assert dispatch() == 3
    assert dispatch() == 0  # the cursor moved past them
    assert {d.status for d in deliveries_of(everything)} == {"delivered"}
    assert deliveries_of(payouts_only) == []
    events = list(Event.objects.filter(wallet=wallet).order_by("sequence"))
    assert sorted(receiver.event_ids) == sorted(str(e.id) for e in events)
    cursor = OutboxCursor.objects.get(name="webhooks")
    assert (cursor.txid, cursor.event_id) == (events[-1].txid, events[-1].id)


def test_an_event_committed_later_with_a_smaller_id_is_not_skipped(
    user, make_wallet, receiver, celery_eager
):
    """The cursor is (txid, id): an event whose transaction took its id first
    but committed after a later one is still dispatched."""
    endpoint = endpoint_for(user, receiver.url)
    wallet = make_wallet(owner=user)
    db = connection.settings_dict
    with psycopg.connect(
        host=db["HOST"], port=db["PORT"], user=db["USER"], dbname=db["NAME"]
    ) as slow:
        slow.execute(
            "INSERT INTO transactions_event (type, wallet_id, user_id, sequence, data,"
            " created_at) VALUES ('wallet.blocked', %s, %s, 1000, '{}', now())",
            [wallet.id, user.id],
        )
        ledger.wallet_deposit(wallet=wallet, amount=Decimal("1.00"))  # commits first
        assert webhooks.webhooks_dispatch() == 0  # held back by `slow`
        slow.commit()
    assert dispatch() == 2
    slow_event = Event.objects.get(wallet=wallet, sequence=1000)
    fast_event = Event.objects.get(wallet=wallet, sequence=1)
    assert slow_event.id < fast_event.id
    assert {d.event_id for d in deliveries_of(endpoint)} == {
        slow_event.id,
        fast_event.id,
    }


def test_only_one_dispatcher_runs_at_a_time(user, make_wallet, receiver, celery_eager):
    endpoint = endpoint_for(user, receiver.url)
    make_wallet(owner=user, balance="1.00")
    wait_events_visible()
    db = connection.settings_dict
    with psycopg.connect(
        host=db["HOST"], port=db["PORT"], user=db["USER"], dbname=db["NAME"]
    ) as other:
        other.execute(
            "SELECT pg_advisory_xact_lock(%s)", [dispatch_module.DISPATCH_LOCK_KEY]
        )
        assert webhooks.webhooks_dispatch() == 0
        assert deliveries_of(endpoint) == []
        other.rollback()
    assert dispatch() == 1


def test_a_redirect_is_a_failure_and_is_not_followed(
    user, make_wallet, receiver, celery_eager
):
    target = type(receiver)()  # a second receiver, where the redirect points
    receiver.statuses = [302]
    receiver.location = "http://127.0.0.1:1/elsewhere"
    endpoint = endpoint_for(user, receiver.url)
    make_wallet(owner=user, balance="1.00")
    dispatch()
    (delivery,) = deliveries_of(endpoint)
    assert delivery.status == "pending"
    assert delivery.last_status_code == 302
    attempt = WebhookAttempt.objects.get(delivery=delivery)
    assert attempt.error == "redirect not followed"
    assert len(receiver.received) == 1 and target.received == []


def test_a_receiver_slower_than_the_timeout_is_a_failed_attempt(
    user, make_wallet, receiver, celery_eager, settings
):
    settings.WEBHOOKS_TIMEOUT_SECONDS = 0.5  # the thing under test: a real wait
    receiver.hold = threading.Event()
    endpoint = endpoint_for(user, receiver.url)
    make_wallet(owner=user, balance="1.00")
    dispatch()
    (delivery,) = deliveries_of(endpoint)
    assert delivery.status == "pending" and delivery.attempts == 1
    attempt = WebhookAttempt.objects.get(delivery=delivery)
    assert attempt.error == "timeout"
    assert attempt.status_code is None


def test_retried_with_backoff_for_3_days_then_failed(
    user, make_wallet, receiver, celery_eager, settings
):
    settings.WEBHOOKS_DISABLE_AFTER = timedelta(days=30)  # this test: the delivery
    receiver.statuses = [500]
    endpoint = endpoint_for(user, receiver.url)
    with time_machine.travel(START, tick=False) as traveller:
        make_wallet(owner=user, balance="1.00")
        dispatch()
        (delivery,) = deliveries_of(endpoint)
        while delivery.status == "pending":
            _next_try(traveller, delivery)
    assert delivery.status == "failed"
    assert delivery.next_attempt_at is None
    starts = list(
        WebhookAttempt.objects.filter(delivery=delivery).values_list(
            "started_at", flat=True
        )
    )
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    assert gaps[0] <= timedelta(minutes=1)
    assert gaps[1] == 2 * gaps[0]
    assert max(gaps) == timedelta(hours=1)
    assert starts[-1] - delivery.created_at <= timedelta(days=3)
    assert starts[-1] + timedelta(hours=1) > delivery.created_at + timedelta(days=3)
    assert delivery.attempts == len(starts) == len(receiver.received)


def test_an_endpoint_failing_for_3_days_is_disabled_and_its_owner_emailed(
    user, make_wallet, receiver, celery_eager, mailoutbox
):
    receiver.statuses = [500]
    endpoint = endpoint_for(user, receiver.url)
    with time_machine.travel(START, tick=False) as traveller:
        wallet = make_wallet(owner=user, balance="1.00")
        dispatch()
        endpoint.refresh_from_db()
        assert endpoint.failing_since == START
        traveller.shift(timedelta(days=2, hours=23))
        webhooks.webhooks_sweep()
        endpoint.refresh_from_db()
        assert endpoint.status == "enabled"
        assert mailoutbox == []

        traveller.move_to(START + timedelta(days=3))
        webhooks.webhooks_sweep()
        endpoint.refresh_from_db()
        assert endpoint.status == "disabled"
        assert endpoint.disabled_at == START + timedelta(days=3)
        assert {d.status for d in deliveries_of(endpoint)} == {"failed"}

        (email,) = mailoutbox
        assert email.to == [user.email]
        assert "disabled" in email.subject
        assert receiver.url in email.body
        sent = len(receiver.received)
        ledger.wallet_deposit(wallet=wallet, amount=Decimal("1.00"))
        dispatch()
        assert len(deliveries_of(endpoint)) == 1  # none for a disabled endpoint
        webhooks.webhooks_sweep()
        assert len(receiver.received) == sent

    webhooks.endpoint_enable(endpoint)
    endpoint.refresh_from_db()
    assert (endpoint.status, endpoint.failing_since, endpoint.disabled_at) == (
        "enabled",
        None,
        None,
    )


def test_the_disabled_email_in_russian():
    from django.template.loader import render_to_string

    text = render_to_string(
        "emails/ru/webhook_endpoint_disabled.txt",
        {"url": "https://example.com/h", "failing_since": "2031-03-01 12:00"},
    )
    assert "отключили" in text and "https://example.com/h" in text


def test_the_sweep_sends_what_a_lost_broker_message_left_behind(
    user, make_wallet, receiver, broker_lost
):
    endpoint = endpoint_for(user, receiver.url)
    make_wallet(owner=user, balance="1.00")
    assert dispatch() == 1  # its send goes to Redis...
    assert broker_lost() >= 1  # ...and is lost there
    (delivery,) = deliveries_of(endpoint)
    assert delivery.status == "pending" and receiver.received == []

    celery_app.conf.task_always_eager = True  # the worker picks up the sweep's
    try:
        assert webhooks.webhooks_sweep() == 1
    finally:
        celery_app.conf.task_always_eager = False
    delivery.refresh_from_db()
    assert delivery.status == "delivered"
    assert len(receiver.received) == 1


def test_a_worker_killed_mid_send_is_sent_again_once_its_lease_runs_out(
    user, make_wallet, receiver, broker_lost
):
    endpoint = endpoint_for(user, receiver.url)
    make_wallet(owner=user, balance="1.00")
    dispatch()
    broker_lost()
    (delivery,) = deliveries_of(endpoint)
    with time_machine.travel(START, tick=False) as traveller:
        claimed = delivery_module._claim([delivery.pk], now=timezone.now())
        assert claimed == [delivery]  # ...and the worker dies here
        assert webhooks.delivery_send(delivery_id=delivery.pk) is None  # leased
        webhooks.webhooks_sweep()
        broker_lost()
        traveller.shift(delivery_module._lease())
        assert webhooks.delivery_send(delivery_id=delivery.pk) == "delivered"
    assert len(receiver.received) == 1


def test_two_senders_at_once_send_a_delivery_once(
    user, make_wallet, receiver, broker_lost
):
    endpoint = endpoint_for(user, receiver.url)
    make_wallet(owner=user, balance="1.00")
    dispatch()
    broker_lost()
    (delivery,) = deliveries_of(endpoint)

    results = run_in_threads(
        2, lambda i: webhooks.delivery_send(delivery_id=delivery.pk)
    )
    assert sorted(map(str, results)) == ["None", "delivered"]
    assert len(receiver.received) == 1
    assert WebhookAttempt.objects.filter(delivery=delivery).count() == 1


def test_a_url_that_now_resolves_privately_is_refused_at_delivery(
    user, make_wallet, receiver, celery_eager, settings
):
    """`localhost` passed when private networks were allowed; at delivery
    they are not: nothing is sent, the attempt says why."""
    endpoint = endpoint_for(user, receiver.url.replace("127.0.0.1", "localhost"))
    settings.WEBHOOKS_ALLOW_PRIVATE_NETWORKS = False
    make_wallet(owner=user, balance="1.00")
    dispatch()
    (delivery,) = deliveries_of(endpoint)
    attempt = WebhookAttempt.objects.get(delivery=delivery)
    assert attempt.error.startswith("url_not_allowed")
    assert attempt.status_code is None
    assert delivery.status == "pending"
    assert receiver.received == []


def test_during_a_rotation_both_secrets_sign_then_only_the_new_one(
    user, make_wallet, receiver, celery_eager
):
    endpoint = endpoint_for(user, receiver.url)
    old = endpoint.secret
    with time_machine.travel(START, tick=False) as traveller:
        new = webhooks.endpoint_rotate_secret(endpoint=endpoint).secret
        wallet = make_wallet(owner=user, balance="1.00")
        dispatch()
        traveller.shift(timedelta(hours=24, seconds=1))
        ledger.wallet_deposit(wallet=wallet, amount=Decimal("1.00"))
        dispatch()
    during, after = receiver.received
    now = START.timestamp()
    header = during.headers["Wallet-Signature"]
    assert header.count("v1=") == 2
    assert verify_wallet_signature(old, during.body, header, now=now)
    assert verify_wallet_signature(new, during.body, header, now=now)
    header = after.headers["Wallet-Signature"]
    later = now + 24 * 3600 + 1
    assert header.count("v1=") == 1
    assert verify_wallet_signature(new, after.body, header, now=later)
    assert not verify_wallet_signature(old, after.body, header, now=later)


def test_resend_sends_a_delivered_delivery_again_keeping_its_attempts(
    user, make_wallet, receiver, celery_eager
):
    endpoint = endpoint_for(user, receiver.url)
    make_wallet(owner=user, balance="1.00")
    dispatch()
    (delivery,) = deliveries_of(endpoint)
    assert delivery.status == "delivered" and delivery.attempts == 1

    resent = webhooks.delivery_resend(delivery, by=None)
    assert resent.status == "pending"
    delivery.refresh_from_db()
    assert delivery.status == "delivered" and delivery.attempts == 2
    assert len(receiver.received) == 2

    receiver.statuses = [500]
    resent = webhooks.delivery_resend(delivery, by=None)
    delivery.refresh_from_db()
    assert delivery.status == "pending"  # failed again: retried as usual
    with pytest.raises(webhooks.WebhookDeliveryPending):
        webhooks.delivery_resend(delivery, by=None)


def test_deleting_an_endpoint_stops_its_deliveries(
    user, make_wallet, receiver, broker_lost
):
    endpoint = endpoint_for(user, receiver.url)
    make_wallet(owner=user, balance="1.00")
    dispatch()
    broker_lost()
    (delivery,) = deliveries_of(endpoint)
    webhooks.endpoint_delete(endpoint=endpoint)
    assert webhooks.delivery_send(delivery_id=delivery.pk) is None
    assert receiver.received == []
    assert Event.objects.filter(pk=delivery.event_id).exists()


def test_the_readme_quotes_the_verification_snippet_verbatim():
    from pathlib import Path

    import transactions.webhooks.verify_example as example

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert Path(example.__file__).read_text() in readme


def test_one_endpoints_deliveries_go_in_one_task_over_one_connection(
    user, make_wallet, receiver, celery_eager, settings
):
    """The dispatcher enqueues an endpoint's new deliveries together
    (WEBHOOKS_SEND_BATCH to a task), sent in turn over a kept-alive
    connection."""
    settings.WEBHOOKS_SEND_BATCH = 4
    wallet = make_wallet(owner=user)
    endpoint = endpoint_for(user, receiver.url)
    for _ in range(6):
        ledger.wallet_deposit(wallet=wallet, amount=Decimal("1.00"))
    assert dispatch() == 6
    assert [d.status for d in deliveries_of(endpoint)] == ["delivered"] * 6
    peers = [r.peer for r in receiver.received]
    assert len(peers) == 6
    assert len(set(peers)) == 2  # two tasks (4 + 2), one connection each


def test_a_batch_stops_at_a_receiver_that_does_not_answer(
    user, make_wallet, receiver, celery_eager, settings
):
    """Refused: the rest of the batch is left pending and due, for the sweep,
    instead of each waiting out its own failure."""
    wallet = make_wallet(owner=user)
    endpoint = endpoint_for(user, receiver.url)
    receiver.server.shutdown()
    receiver.server.server_close()
    for _ in range(3):
        ledger.wallet_deposit(wallet=wallet, amount=Decimal("1.00"))
    assert dispatch() == 3
    tried, *rest = deliveries_of(endpoint)
    assert tried.attempts == 1 and tried.next_attempt_at > timezone.now()
    assert [d.attempts for d in rest] == [0, 0]
    assert all(d.status == "pending" for d in rest)
    assert all(d.next_attempt_at <= timezone.now() for d in rest)  # due
    assert "connection failed" in tried.attempt_set.get().error


def test_a_batch_records_each_deliverys_own_outcome(
    user, make_wallet, receiver, broker_lost
):
    """One batch, claimed and recorded together: each delivery gets its own
    attempt and state, and the endpoint's `failing_since` follows the last
    answer (set by the failure, cleared by the success after it)."""
    wallet = make_wallet(owner=user)
    endpoint = endpoint_for(user, receiver.url)
    for _ in range(3):
        ledger.wallet_deposit(wallet=wallet, amount=Decimal("1.00"))
    dispatch()
    broker_lost()
    ids = [d.pk for d in deliveries_of(endpoint)]
    receiver.statuses = [200, 500, 200]

    assert webhooks.deliveries_send(delivery_ids=ids) == [
        "delivered",
        "pending",
        "delivered",
    ]
    first, second, third = deliveries_of(endpoint)
    assert [d.attempts for d in (first, second, third)] == [1, 1, 1]
    assert [d.last_status_code for d in (first, second, third)] == [200, 500, 200]
    assert second.next_attempt_at > timezone.now()
    assert second.attempt_set.get().status_code == 500
    endpoint.refresh_from_db()
    assert endpoint.failing_since is None
    assert len(receiver.received) == 3
    # Sent again at once, nothing is due: no second POST.
    assert webhooks.deliveries_send(delivery_ids=ids) == [None, None, None]
    assert len(receiver.received) == 3
