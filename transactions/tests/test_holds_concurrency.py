"""Holds and payouts under real threads against PostgreSQL: debits, holds and
decisions racing on one wallet never spend money that is held or not there,
every hold and payout resolves exactly once, and the ledger reconciles."""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

import pytest
from django.conf import settings
from django.utils import timezone

from conftest import client_for, run_in_threads
from transactions import ledger
from transactions.ledger import HoldExpired, HoldNotActive, InsufficientFunds
from transactions.models import Entry, Hold, Payout, Transaction
from transactions.selectors import ledger_reconcile
from wallets.models import Wallet
from wallets.selectors import system_wallet

pytestmark = pytest.mark.django_db(transaction=True)

D = Decimal
CENT = D("0.01")
LATER = timedelta(hours=1)

# What a payout's hold must be once the payout is in a state (and only then).
HOLD_OF_PAYOUT = {
    "pending": "active",
    "paid": "captured",
    "failed": "voided",
    "canceled": "voided",
    "expired": "expired",
}


def run_all(works: list[Callable[[], object]]) -> list:
    """Every callable on its own thread (and DB connection), released together."""
    return run_in_threads(len(works), lambda i: works[i]())


def provider_total() -> Decimal:
    provider = system_wallet("KZT", Wallet.SystemCode.PROVIDER)
    return sum((e.amount.amount for e in Entry.objects.filter(wallet=provider)), D(0))


def payouts_url(wallet: Wallet) -> str:
    return f"/api/v1/wallets/{wallet.id}/payouts/"


def decide_url(payout_id) -> str:
    return f"/api/v1/service/payouts/{payout_id}/"


def cancel_url(payout_id) -> str:
    return f"/api/v1/payouts/{payout_id}/cancel/"


def assert_payouts_match_their_holds() -> None:
    """No payout half-done: each one's hold in the matching state, a paid one
    captured whole into the payout's one `payout` transaction."""
    for payout in Payout.objects.select_related("hold"):
        hold = payout.hold
        assert hold.status == HOLD_OF_PAYOUT[payout.status], (payout.status, hold)
        assert hold.amount == payout.amount.amount
        if payout.status == Payout.Status.PAID:
            assert payout.transaction_id == hold.transaction_id is not None
            assert hold.captured_amount == payout.amount.amount
            assert (
                Transaction.objects.filter(
                    kind=Transaction.Kind.PAYOUT, metadata__payout_id=str(payout.id)
                ).count()
                == 1
            )
        else:
            assert payout.transaction_id is None and hold.transaction_id is None


def assert_held_is_the_sum_of_active_holds(wallet: Wallet) -> None:
    wallet.refresh_from_db()
    active = Hold.objects.filter(wallet=wallet, status=Hold.Status.ACTIVE)
    assert wallet.held == sum((h.amount for h in active), D(0))
    assert wallet.available_balance >= 0


# --- Everything at once on one wallet ---------------------------------------------------

THREADS = 64
OPS_PER_THREAD = 6
START = D("600.00")
OPERATIONS = {  # kind: weight
    "payout": 3,
    "withdraw": 2,
    "transfer": 2,
    "hold": 1,
    "capture": 2,
    "void": 2,
    "paid": 2,
    "failed": 1,
    "cancel": 1,
}


@dataclass(frozen=True)
class Outcome:
    kind: str
    ok: bool
    target: str = ""  # the hold's or payout's id
    amount: Decimal = Decimal(0)
    code: str = ""


def test_64_threads_mixing_payouts_debits_and_decisions_never_overspend(
    user, make_wallet, service_account
):
    """64 threads on one wallet: payouts (API), withdrawals, transfers out, new
    holds, captures and voids of shared holds, and the provider's and the
    owner's decisions on shared payouts. Money is never taken twice or past
    the available balance: the balance is the start less what succeeded, the
    money held is the sum of the holds still active, every 201 is a payout with
    its hold and every paid payout one `payout` transaction."""
    wallet = make_wallet(owner=user, balance=str(START))
    destination = make_wallet(currency="KZT")
    provider_before = provider_total()
    later = timezone.now() + LATER
    # 400.00 held before the start (24 holds, 16 payouts): 200.00 available.
    holds = [
        (
            str(ledger.hold_create(wallet=wallet, amount=D(10), expires_at=later).id),
            D(10),
        )
        for _ in range(24)
    ]
    payouts = [
        str(
            ledger.payout_create(
                wallet=wallet, amount=D(10), destination="card_tok", initiator=user
            ).id
        )
        for _ in range(16)
    ]
    initial_holds = [hold_id for hold_id, _ in holds]
    initial_payouts = list(payouts)
    owners = [client_for(user) for _ in range(THREADS)]
    providers = [client_for(service_account) for _ in range(THREADS)]
    kinds, weights = zip(*OPERATIONS.items(), strict=True)
    finished = Counter()
    finished_lock = threading.Lock()
    all_done = threading.Event()

    def operate(i: int, rng: random.Random, kind: str) -> Outcome:
        amount = D(rng.randint(100, 4000)) * CENT
        if kind == "payout":
            response = owners[i].post(
                payouts_url(wallet),
                {"amount": str(amount), "destination": "iban_KZ00"},
                format="json",
                HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4()),
            )
            body = response.json()
            if response.status_code == 201:
                assert body["status"] == "pending"
                payouts.append(body["id"])
                return Outcome(kind, True, body["id"], D(body["amount"]))
            assert response.status_code == 400, body
            return Outcome(kind, False, code=body["code"])
        if kind in ("withdraw", "transfer", "hold"):
            try:
                if kind == "withdraw":
                    ledger.wallet_withdraw(wallet=wallet, amount=amount)
                elif kind == "transfer":
                    ledger.transfer_create(
                        source=wallet,
                        destination_number=destination.number,
                        amount=amount,
                        initiator=user,
                    )
                else:
                    created = ledger.hold_create(
                        wallet=wallet, amount=amount, expires_at=later
                    )
                    holds.append((str(created.id), amount))
                    return Outcome(kind, True, str(created.id), amount)
            except InsufficientFunds as exc:
                return Outcome(kind, False, code=exc.code)
            return Outcome(kind, True, amount=amount)
        if kind in ("capture", "void"):
            hold_id, held = rng.choice(holds)
            try:
                if kind == "void":
                    ledger.hold_void(hold_id=hold_id, reason="racing")
                    return Outcome(kind, True, hold_id)
                part = rng.choice([None, D(rng.randint(1, int(held * 100))) * CENT])
                ledger.hold_capture(
                    hold_id=hold_id,
                    counterpart=system_wallet("KZT", Wallet.SystemCode.PROVIDER),
                    kind=Transaction.Kind.PAYOUT,
                    amount=part,
                )
                return Outcome(kind, True, hold_id, held if part is None else part)
            except HoldNotActive as exc:
                assert not isinstance(exc, HoldExpired)
                return Outcome(kind, False, hold_id, code=exc.code)
        payout_id = rng.choice(payouts)
        if kind == "cancel":
            response = owners[i].post(cancel_url(payout_id))
            decision = "canceled"
        else:
            response = providers[i].put(
                decide_url(payout_id), {"status": kind}, format="json"
            )
            decision = kind
        body = response.json()
        if response.status_code == 200:
            assert body["status"] == decision, body
            return Outcome(kind, True, payout_id, D(body["amount"]))
        assert response.status_code == 409, body
        return Outcome(kind, False, payout_id, code=body["code"])

    def sample_available() -> list[Decimal]:
        seen = []
        while not all_done.wait(0.005):
            balance, held = Wallet.objects.values_list("balance", "held").get(
                pk=wallet.pk
            )
            seen.append(balance - held)
        return seen

    def work(i: int):
        if i == THREADS:
            return sample_available()
        rng = random.Random(i)
        try:
            return [
                operate(i, rng, rng.choices(kinds, weights)[0])
                for _ in range(OPS_PER_THREAD)
            ]
        finally:
            with finished_lock:
                finished["threads"] += 1
                if finished["threads"] == THREADS:
                    all_done.set()

    started = time.monotonic()
    *per_thread, available_seen = run_in_threads(THREADS + 1, work)
    elapsed = time.monotonic() - started
    outcomes = [o for seen in per_thread for o in seen]
    ok = [o for o in outcomes if o.ok]
    refused = [o for o in outcomes if not o.ok]
    print(
        f"{len(outcomes)} operations in {elapsed:.1f}s: {Counter(o.kind for o in ok)}"
    )

    # The losers lost for the right reason.
    expected_codes = {
        "payout": {"insufficient_funds"},
        "withdraw": {"insufficient_funds"},
        "transfer": {"insufficient_funds"},
        "hold": {"insufficient_funds"},
        "capture": {"hold_not_active"},
        "void": {"hold_not_active"},
        "paid": {"payout_already_decided"},
        "failed": {"payout_already_decided"},
        "cancel": {"payout_already_decided"},
    }
    assert all(o.code in expected_codes[o.kind] for o in refused), Counter(
        (o.kind, o.code) for o in refused
    )
    assert any(o.code == "insufficient_funds" for o in refused), "no contention"
    assert {"payout", "withdraw", "capture", "paid"} <= {o.kind for o in ok}

    def succeeded(*kinds: str) -> list[Outcome]:
        return [o for o in ok if o.kind in kinds]

    # Each hold resolved at most once, each payout decided one way only.
    captured = {o.target: o.amount for o in succeeded("capture")}
    voided = {o.target for o in succeeded("void")}
    assert len(captured) == len(succeeded("capture"))
    assert len(voided) == len(succeeded("void"))
    assert not captured.keys() & voided
    created = {o.target: o.amount for o in succeeded("payout")}
    amounts = {**dict.fromkeys(initial_payouts, D(10)), **created}
    decided = {
        decision: {o.target for o in succeeded(kind)}
        for kind, decision in (
            ("paid", "paid"),
            ("failed", "failed"),
            ("cancel", "canceled"),
        )
    }
    assert not decided["paid"] & decided["failed"]
    assert not decided["paid"] & decided["canceled"]
    assert not decided["failed"] & decided["canceled"]
    paid_total = sum((amounts[p] for p in decided["paid"]), D(0))
    withdrawn = sum((o.amount for o in succeeded("withdraw")), D(0))
    transferred = sum((o.amount for o in succeeded("transfer")), D(0))

    # The balance, the money held and the available balance.
    wallet.refresh_from_db()
    captured_total = sum(captured.values(), D(0)) + paid_total
    assert wallet.balance.amount == START - withdrawn - transferred - captured_total
    standalone = set(initial_holds) | {o.target for o in succeeded("hold")}
    still_held = standalone - captured.keys() - voided
    pending = set(amounts) - set().union(*decided.values())
    active = set(
        Hold.objects.filter(wallet=wallet, status="active").values_list("id", flat=True)
    )
    assert {str(h) for h in active} == still_held | {
        str(p.hold_id) for p in Payout.objects.filter(pk__in=pending)
    }
    assert_held_is_the_sum_of_active_holds(wallet)
    assert wallet.available_balance >= 0
    assert available_seen and min(available_seen) >= 0  # as it went, too
    assert not Entry.objects.filter(wallet=wallet, balance_after__lt=0).exists()
    destination.refresh_from_db()
    assert destination.balance.amount == transferred
    assert provider_total() - provider_before == captured_total

    # Every 201 is one payout with its hold; every payout in the state decided.
    assert Payout.objects.count() == len(amounts)
    assert Hold.objects.count() == len(standalone) + len(amounts)
    for payout in Payout.objects.all():
        status = next(
            (s for s, ids in decided.items() if str(payout.id) in ids), "pending"
        )
        assert payout.status == status
        assert payout.amount.amount == amounts[str(payout.id)]
    for hold in Hold.objects.filter(pk__in=standalone):
        if str(hold.id) in captured:
            assert (hold.status, hold.captured_amount) == (
                "captured",
                captured[str(hold.id)],
            )
        else:
            assert hold.status == ("voided" if str(hold.id) in voided else "active")
    assert_payouts_match_their_holds()
    assert Transaction.objects.filter(kind="payout").count() == len(captured) + len(
        decided["paid"]
    )
    debits = (
        len(succeeded("withdraw", "transfer")) + len(captured) + len(decided["paid"])
    )
    assert Entry.objects.filter(wallet=wallet).count() == 1 + debits
    assert ledger_reconcile().clean


# --- Two decisions racing on one hold or payout -----------------------------------------

ROUNDS = 12


@pytest.mark.parametrize("rival", ["void", "sweep"])
def test_a_capture_racing_a_void_or_the_expiry_sweep_resolves_the_hold_once(
    rival, make_wallet
):
    """Of a capture and a void (or the expiry sweep, run as if past the hold's
    expiry) at once, exactly one wins; the capture that loses gets 409
    `hold_not_active` (`hold_expired` after the sweep); money moves only when
    the capture won, once."""
    wallet = make_wallet(balance="1000.00")
    expires_at = timezone.now() + LATER
    holds = [
        ledger.hold_create(wallet=wallet, amount=D(10), expires_at=expires_at)
        for _ in range(ROUNDS)
    ]
    provider = system_wallet("KZT", Wallet.SystemCode.PROVIDER)

    def capture(hold_id):
        def run():
            try:
                ledger.hold_capture(
                    hold_id=hold_id, counterpart=provider, kind=Transaction.Kind.PAYOUT
                )
            except HoldNotActive as exc:
                return exc.status_code, exc.code
            return 200, "captured"

        return run

    def void(hold_id):
        def run():
            try:
                ledger.hold_void(hold_id=hold_id, reason="racing")
            except HoldNotActive as exc:
                return exc.status_code, exc.code
            return 200, "voided"

        return run

    def sweep():
        return ledger.hold_expire_due(now=expires_at + timedelta(seconds=1))

    works = [capture(h.id) for h in holds]
    works += [void(h.id) for h in holds] if rival == "void" else [sweep] * ROUNDS
    results = run_all(works)
    captures, rivals = results[:ROUNDS], results[ROUNDS:]

    statuses = {h.id: h.status for h in Hold.objects.all()}
    won = [h.id for h, answer in zip(holds, captures, strict=True) if answer[0] == 200]
    assert all(statuses[h] == "captured" for h in won)
    lost_with = "hold_not_active" if rival == "void" else "hold_expired"
    for hold, answer in zip(holds, captures, strict=True):
        if hold.id not in won:
            assert answer == (409, lost_with)
            assert statuses[hold.id] == ("voided" if rival == "void" else "expired")
    if rival == "void":
        for capture_answer, void_answer in zip(captures, rivals, strict=True):
            assert sorted([capture_answer[0], void_answer[0]]) == [200, 409]
            if void_answer[0] == 409:
                assert void_answer == (409, "hold_not_active")
    else:
        assert sum(rivals) == ROUNDS - len(won)  # each expired by one sweep
    wallet.refresh_from_db()
    assert wallet.balance.amount == D("1000.00") - 10 * len(won)
    assert wallet.held == 0
    assert Transaction.objects.filter(kind="payout").count() == len(won)
    assert ledger_reconcile().clean


@pytest.mark.parametrize("rival", ["failed", "cancel", "sweep"])
def test_paid_racing_another_decision_exactly_one_wins(
    rival, user, make_wallet, service_account
):
    """`paid` (the provider) at the same moment as `failed` (the provider), a
    cancel (the owner) or the expiry sweep (run as if past the TTL): exactly one
    wins, the loser gets 409 `payout_already_decided` (`payout_expired` after
    the sweep), the hold ends in the matching state and the money moves once
    or not at all."""
    wallet = make_wallet(owner=user, balance="1000.00")
    payouts = [
        ledger.payout_create(
            wallet=wallet, amount=D(10), destination="card_tok", initiator=user
        )
        for _ in range(ROUNDS)
    ]
    stale_at = timezone.now() + settings.PAYOUT_TTL + timedelta(seconds=1)

    def put(payout_id, decision):
        client = client_for(service_account)
        return lambda: _answer(
            client.put(decide_url(payout_id), {"status": decision}, format="json")
        )

    def cancel(payout_id):
        client = client_for(user)
        return lambda: _answer(client.post(cancel_url(payout_id)))

    def sweep():
        return ledger.payout_expire_stale(now=stale_at)

    works = [put(p.id, "paid") for p in payouts]
    if rival == "failed":
        works += [put(p.id, "failed") for p in payouts]
    elif rival == "cancel":
        works += [cancel(p.id) for p in payouts]
    else:
        works += [sweep] * ROUNDS
    results = run_all(works)
    pays, rivals = results[:ROUNDS], results[ROUNDS:]

    statuses = dict(Payout.objects.values_list("id", "status"))
    paid = [p.id for p, answer in zip(payouts, pays, strict=True) if answer[0] == 200]
    assert all(statuses[p] == "paid" for p in paid)
    if rival == "sweep":
        for payout, answer in zip(payouts, pays, strict=True):
            if payout.id not in paid:
                assert answer == (409, "payout_expired")
                assert statuses[payout.id] == "expired"
        assert sum(rivals) == ROUNDS - len(paid)  # each expired by one sweep
    else:
        loser_status = "failed" if rival == "failed" else "canceled"
        for payout, pay, other in zip(payouts, pays, rivals, strict=True):
            assert sorted([pay[0], other[0]]) == [200, 409], (pay, other)
            loser = pay if other[0] == 200 else other
            assert loser[1] == "payout_already_decided"
            if other[0] == 200:
                assert statuses[payout.id] == loser_status
    assert_payouts_match_their_holds()
    wallet.refresh_from_db()
    assert wallet.balance.amount == D("1000.00") - 10 * len(paid)
    assert wallet.held == 0
    assert Transaction.objects.filter(kind="payout").count() == len(paid)
    assert Entry.objects.filter(
        wallet=wallet, transaction__kind="payout"
    ).count() == len(paid)
    assert ledger_reconcile().clean


def _answer(response) -> tuple[int, str]:
    body = response.json()
    return response.status_code, body.get("code") or body["status"]


def test_the_same_payout_decision_sent_many_times_at_once_pays_once(
    user, make_wallet, service_account
):
    """Eight `paid` at once: every one is a 200 with the same body, one
    transaction, the hold captured once."""
    wallet = make_wallet(owner=user, balance="100.00")
    payout = ledger.payout_create(
        wallet=wallet, amount=D("25.00"), destination="card_tok", initiator=user
    )

    def pay():
        response = client_for(service_account).put(
            decide_url(payout.id), {"status": "paid"}, format="json"
        )
        return response.status_code, response.json()

    answers = run_all([pay] * 8)
    assert [status for status, _ in answers] == [200] * 8
    assert len({body["transaction_id"] for _, body in answers}) == 1
    wallet.refresh_from_db()
    assert (wallet.balance.amount, wallet.held) == (D("75.00"), D(0))
    assert Transaction.objects.filter(kind="payout").count() == 1
    assert_payouts_match_their_holds()
    assert ledger_reconcile().clean
