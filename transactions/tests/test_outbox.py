"""The outbox: every change a wallet's owner cares about writes its event in
the same DB transaction, numbered per wallet 1, 2, 3... with no gaps, on every
path (a lone posting, a group-commit batch, the fee run, top-ups, payouts,
blocking), and a rolled-back change leaves none."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from conftest import client_for, run_in_threads
from fees.services import FEE_BLOCK_REASON, fee_charge_due
from transactions import ledger
from transactions.models import Entry, Event, TopUp
from transactions.selectors import ledger_reconcile
from transactions.tests.webhooks_support import wait_events_visible
from wallets.models import Wallet

D = Decimal


def events_of(wallet: Wallet) -> list[Event]:
    return list(Event.objects.filter(wallet=wallet).order_by("sequence"))


def types_of(wallet: Wallet) -> list[str]:
    return [event.type for event in events_of(wallet)]


def assert_gapless(wallet: Wallet) -> None:
    assert ledger_reconcile().event_gaps == []
    wallet.refresh_from_db()
    sequences = [event.sequence for event in events_of(wallet)]
    assert sequences == list(range(1, len(sequences) + 1))
    assert wallet.event_sequence == len(sequences)


@pytest.mark.django_db
def test_a_deposit_writes_its_entry_as_history_shows_it(auth_api, wallet):
    response = auth_api.post(
        f"/api/v1/wallets/{wallet.id}/operation",
        {"operation_type": "DEPOSIT", "amount": "250.50"},
        format="json",
    )
    assert response.status_code == 201
    event = events_of(wallet)[-1]
    history = auth_api.get(f"/api/v1/wallets/{wallet.id}/transactions/").json()
    entry = history["results"][0]
    assert event.type == "transaction.posted"
    assert event.user_id == wallet.owner_id
    assert event.data == entry  # the same keys and values
    assert event.data["transaction_id"] == response.json()["operation_id"]
    assert event.data["balance_after"] == "1250.50"
    assert_gapless(wallet)


@pytest.mark.django_db
def test_a_transfer_writes_one_event_per_user_wallet_with_its_own_entry(
    user, wallet, make_wallet
):
    receiver = make_wallet(currency="KZT")
    posting = ledger.transfer_create(
        source=wallet, destination_number=receiver.number, amount=D("100.00")
    )
    sent, received = events_of(wallet)[-1], events_of(receiver)[-1]
    entries = {
        e.wallet_id: e.id for e in Entry.objects.filter(transaction=posting.transaction)
    }
    assert (sent.data["id"], received.data["id"]) == (
        entries[wallet.id],
        entries[receiver.id],
    )
    assert (sent.data["amount"], received.data["amount"]) == ("-100.00", "100.00")
    assert sent.data["counterparty"] == receiver.number
    assert received.user_id == receiver.owner_id != sent.user_id


@pytest.mark.django_db
def test_a_topup_with_commission_gives_each_entry_its_event(service_api, wallet, user):
    topup = client_for(user).post(
        f"/api/v1/wallets/{wallet.id}/topups/", {"amount": "100.00"}, format="json"
    )
    decided = service_api.put(
        f"/api/v1/service/topups/{topup.json()['id']}/",
        {"status": "paid", "commission": "2.00"},
        format="json",
    )
    assert decided.status_code == 200
    events = events_of(wallet)[-3:]
    assert [e.type for e in events] == [
        "transaction.posted",
        "transaction.posted",
        "topup.paid",
    ]
    assert [e.data["amount"] for e in events[:2]] == ["100.00", "-2.00"]
    ids = set(
        Entry.objects.filter(wallet=wallet, amount__lt=1000).values_list(
            "id", flat=True
        )
    )
    assert {e.data["id"] for e in events[:2]} == ids
    assert events[2].data["status"] == "paid"
    assert events[2].data["commission"] == "2.00"
    assert_gapless(wallet)


@pytest.mark.django_db
def test_rejected_and_expired_topups_have_events(service_api, wallet):
    rejected = ledger.topup_create(wallet=wallet, amount=D("10.00"))
    ledger.topup_decide(topup_id=rejected.id, status="rejected", decided_by=None)
    stale = ledger.topup_create(wallet=wallet, amount=D("20.00"))
    TopUp.objects.filter(pk=stale.pk).update(
        created_at=timezone.now() - settings.TOPUP_TTL - timedelta(seconds=1)
    )
    assert ledger.topup_expire_stale() == 1
    assert types_of(wallet)[-2:] == ["topup.rejected", "topup.expired"]
    assert events_of(wallet)[-1].data["id"] == str(stale.id)
    assert_gapless(wallet)


@pytest.mark.django_db
def test_payouts_have_an_event_for_each_state(wallet, user):
    paid = ledger.payout_create(wallet=wallet, amount=D("10.00"), destination="card")
    ledger.payout_decide(payout_id=paid.id, status="paid", decided_by=None)
    failed = ledger.payout_create(wallet=wallet, amount=D("5.00"), destination="card")
    ledger.payout_decide(payout_id=failed.id, status="failed", decided_by=None)
    canceled = ledger.payout_create(wallet=wallet, amount=D("1.00"), destination="x")
    ledger.payout_cancel(payout_id=canceled.id, owner=user)
    assert types_of(wallet)[1:] == [
        "payout.pending",
        "transaction.posted",
        "payout.paid",
        "payout.pending",
        "payout.failed",
        "payout.pending",
        "payout.canceled",
    ]
    paid_event = events_of(wallet)[3]
    assert paid_event.data["transaction_id"] == str(
        Entry.objects.get(id=events_of(wallet)[2].data["id"]).transaction_id
    )
    assert_gapless(wallet)


@pytest.mark.django_db
def test_blocking_and_unblocking_have_events_once(wallet):
    ledger.wallet_block(wallet=wallet, reason="KYC review")
    ledger.wallet_block(wallet=wallet, reason="KYC review, still")  # still blocked
    ledger.wallet_unblock(wallet=wallet)
    ledger.wallet_unblock(wallet=wallet)  # not blocked: nothing to say
    assert types_of(wallet)[1:] == ["wallet.blocked", "wallet.unblocked"]
    blocked = events_of(wallet)[1]
    assert blocked.data == {
        "id": str(wallet.id),
        "number": wallet.number,
        "currency": "KZT",
        "status": "blocked",
        "blocked_reason": "KYC review",
    }


@pytest.mark.django_db
def test_the_fee_run_writes_fee_and_block_events_then_collection_unblocks(
    make_wallet,
):
    payer = make_wallet(balance="500.00")
    debtor = make_wallet(balance="50.00")
    behind = make_wallet(balance="1000.00")  # two periods due: one by one
    now = timezone.now()
    Wallet.objects.filter(pk__in=[payer.pk, debtor.pk]).update(next_fee_at=now)
    Wallet.objects.filter(pk=behind.pk).update(next_fee_at=now - settings.FEE_PERIOD)
    fee_charge_due(as_of=now)
    assert types_of(payer)[1:] == ["transaction.posted", "fee.charged"]
    assert events_of(payer)[-1].data["status"] == "paid"
    assert types_of(debtor)[1:] == ["fee.charged", "wallet.blocked"]
    assert events_of(debtor)[1].data["status"] == "debt"
    assert events_of(debtor)[2].data["blocked_reason"] == FEE_BLOCK_REASON
    assert types_of(behind)[1:] == ["transaction.posted"] * 2 + ["fee.charged"] * 2

    ledger.wallet_deposit(wallet=debtor, amount=D("200.00"))
    assert types_of(debtor)[3:] == [
        "transaction.posted",  # the deposit
        "transaction.posted",  # the debt collected
        "fee.charged",
        "wallet.unblocked",
    ]
    assert events_of(debtor)[-2].data["status"] == "paid"
    for wallet in (payer, debtor, behind):
        assert_gapless(wallet)


@pytest.mark.django_db
def test_a_rolled_back_change_leaves_no_event(wallet, make_wallet):
    receiver = make_wallet()
    before = Event.objects.count()
    with pytest.raises(RuntimeError), transaction.atomic():
        ledger.transfer_create(
            source=wallet, destination_number=receiver.number, amount=D("1.00")
        )
        ledger.wallet_block(wallet=receiver, reason="test")
        raise RuntimeError("the caller fails after the posting")
    assert Event.objects.count() == before
    wallet.refresh_from_db()
    receiver.refresh_from_db()
    assert (wallet.event_sequence, receiver.event_sequence) == (1, 0)


@pytest.mark.django_db
def test_a_refused_posting_writes_no_event(auth_api, wallet):
    before = Event.objects.count()
    refused = auth_api.post(
        f"/api/v1/wallets/{wallet.id}/operation",
        {"operation_type": "WITHDRAW", "amount": "5000.00"},
        format="json",
    )
    assert refused.status_code == 400
    assert Event.objects.count() == before


@pytest.mark.django_db(transaction=True)
def test_concurrent_postings_on_one_wallet_number_its_events_without_gaps(
    make_wallet,
):
    """Deposits and withdrawals through the API (the group commit batches
    them) and transfers in, from many threads at once: every posting has its
    event and every sequence is taken once. (Commit order is not sequence
    order: a transaction may take its txid before it locks the wallet.
    Receivers order by sequence.)"""
    hot = make_wallet(balance="1000.00")
    other = make_wallet(balance="1000.00")
    client = client_for(hot.owner)

    def work(i: int) -> int:
        if i % 3 == 2:
            ledger.transfer_create(
                source=other, destination_number=hot.number, amount=D("1.00")
            )
            return 201
        return client.post(
            f"/api/v1/wallets/{hot.id}/operation",
            {"operation_type": "DEPOSIT" if i % 3 else "WITHDRAW", "amount": "2.00"},
            format="json",
            HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4()),
        ).status_code

    statuses = run_in_threads(24, work)
    assert statuses == [201] * 24
    assert_gapless(hot)
    assert_gapless(other)
    assert Event.objects.filter(wallet=hot).count() == 1 + 24
    assert ledger_reconcile().clean


@pytest.mark.django_db(transaction=True)
def test_an_event_is_not_visible_while_an_older_transaction_is_still_running(
    make_wallet,
):
    """The readers' rule (EVENTS_VISIBLE_SQL): a transaction that started
    writing first and commits last holds back the events committed after it
    began, so a cursor on (txid, id) never skips it."""
    first, second = make_wallet(), make_wallet()
    where = ledger.EVENTS_VISIBLE_SQL
    visible = f"SELECT count(*) FROM transactions_event WHERE {where}"  # noqa: S608

    def count_visible() -> int:
        with connection.cursor() as cursor:
            cursor.execute(visible)
            return cursor.fetchone()[0]

    baseline = count_visible()
    slow_started, fast_done = threading.Event(), threading.Event()

    def slow(_: int):
        with transaction.atomic():
            ledger.wallet_deposit(wallet=first, amount=D("1.00"))  # txid taken
            slow_started.set()
            assert fast_done.wait(10)
            seen = count_visible()
        return seen

    def fast(_: int):
        assert slow_started.wait(10)
        ledger.wallet_deposit(wallet=second, amount=D("1.00"))  # commits first
        seen = count_visible()
        fast_done.set()
        return seen

    seen_by_slow, seen_by_fast = run_in_threads(
        2, lambda i: (slow if i == 0 else fast)(i)
    )
    assert seen_by_fast == baseline  # its own committed event: not yet visible
    assert seen_by_slow == baseline
    wait_events_visible()  # both ended: visible once the server's older ones have
    assert count_visible() == baseline + 2


@pytest.mark.django_db
def test_reconcile_reports_a_wallet_whose_events_have_a_gap(wallet):
    ledger.wallet_block(wallet=wallet, reason="test")
    ledger.wallet_unblock(wallet=wallet)
    assert ledger_reconcile().clean
    Event.objects.filter(wallet=wallet, sequence=2).delete()  # as a lost event
    report = ledger_reconcile()
    assert report.event_gaps == [
        f"wallet {wallet.number}: event_sequence 3, 2 events, the last numbered 3"
    ]
    assert not report.clean
