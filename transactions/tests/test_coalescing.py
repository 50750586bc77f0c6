"""Group commit: concurrent DEPOSIT/WITHDRAW requests posted together in one DB
transaction must give every client exactly the answer, entries and balance it
would have had alone (threads against the real PostgreSQL)."""

import random
import threading
from collections import Counter, deque
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import client_for, run_in_threads
from transactions import ledger
from transactions.batching import Coalescer
from transactions.ledger import InsufficientFunds, WalletBlocked, group_commit
from transactions.models import Entry, IdempotencyKey, Transaction
from transactions.selectors import ledger_reconcile
from wallets.models import Wallet


def _operate(wallet: Wallet, operation_type: str, amount: Decimal, key=None):
    """The service the API calls, rendering what the API renders."""

    def render(wallet, posting):
        return {
            "operation_id": str(posting.transaction.id),
            "new_balance": str(posting.balances[wallet.id]),
        }

    request = None
    if key is not None:
        request = ledger.IdempotencyRequest(
            user_id=wallet.owner_id,
            key=key,
            fingerprint=ledger.IdempotencyRequest.fingerprint_of(
                "POST", "/op", {"type": operation_type, "amount": str(amount)}
            ),
        )
    return ledger.wallet_operation(
        wallet_id=wallet.id,
        owner=wallet.owner,
        operation_type=operation_type,
        amount=amount,
        request=request,
        render=render,
    )


def _assert_history_consistent(wallet: Wallet, opening: Decimal) -> None:
    """In id order, every entry's balance_after is the previous one plus its amount."""
    balance = opening
    for amount, balance_after in (
        Entry.objects.filter(wallet=wallet)
        .order_by("id")
        .values_list("amount", "balance_after")
    ):
        balance += amount
        assert balance_after == balance
        assert balance_after >= 0
    wallet.refresh_from_db()
    assert wallet.balance.amount == balance


@pytest.mark.django_db(transaction=True)
def test_concurrent_operations_on_one_wallet_are_each_answered_exactly(make_wallet):
    wallet = make_wallet(balance="50.00")
    threads, ops_per_thread = 32, 40

    def work(i: int):
        rng = random.Random(i)
        answers = []
        for _ in range(ops_per_thread):
            amount = Decimal(rng.randint(1, 600)) / 100
            kind = "DEPOSIT" if rng.random() < 0.5 else "WITHDRAW"
            try:
                answer = _operate(wallet, kind, amount)
            except InsufficientFunds:
                answers.append((kind, amount, None))
            else:
                assert answer.status == 201
                answers.append((kind, amount, answer.body))
        return answers

    answers = [a for per_thread in run_in_threads(threads, work) for a in per_thread]
    succeeded = [a for a in answers if a[2] is not None]
    net = sum(
        (amount if kind == "DEPOSIT" else -amount for kind, amount, _ in succeeded),
        Decimal(0),
    )
    wallet.refresh_from_db()
    assert wallet.balance.amount == Decimal("50.00") + net
    # Each client was told its own transaction and the balance right after it.
    legs = {
        str(txn_id): (amount, balance_after)
        for txn_id, amount, balance_after in Entry.objects.filter(
            wallet=wallet
        ).values_list("transaction_id", "amount", "balance_after")
    }
    for kind, amount, body in succeeded:
        signed = amount if kind == "DEPOSIT" else -amount
        assert legs[body["operation_id"]] == (signed, Decimal(body["new_balance"]))
    assert Transaction.objects.count() == len(succeeded) + 1  # + the opening deposit
    _assert_history_consistent(wallet, Decimal(0))
    assert ledger_reconcile().clean
    # They really were posted together: some DB transactions carried several.
    batches = Transaction.objects.values("created_at").distinct().count()
    assert batches < len(succeeded)


@pytest.mark.django_db(transaction=True)
def test_withdrawals_racing_for_the_last_funds_through_batches(make_wallet):
    wallet = make_wallet(balance="10.00")

    def work(i: int) -> bool:
        try:
            _operate(wallet, "WITHDRAW", Decimal("1.00"))
            return True
        except InsufficientFunds:
            return False

    assert sum(run_in_threads(40, work)) == 10
    wallet.refresh_from_db()
    assert wallet.balance.amount == Decimal("0.00")
    assert ledger_reconcile().clean


@pytest.mark.django_db(transaction=True)
def test_operations_spread_over_wallets_stay_exact_per_wallet(make_wallet):
    wallets = [make_wallet(balance="20.00") for _ in range(4)]

    def work(i: int):
        rng = random.Random(100 + i)
        moved = Counter()
        for _ in range(30):
            wallet = rng.choice(wallets)
            amount = Decimal(rng.randint(1, 900)) / 100
            kind = rng.choice(["DEPOSIT", "WITHDRAW"])
            try:
                _operate(wallet, kind, amount)
            except InsufficientFunds:
                continue
            moved[wallet.id] += amount if kind == "DEPOSIT" else -amount
        return moved

    total = Counter()
    for moved in run_in_threads(24, work):
        total.update(moved)
    for wallet in wallets:
        wallet.refresh_from_db()
        assert wallet.balance.amount == Decimal("20.00") + total[wallet.id]
        _assert_history_consistent(wallet, Decimal(0))
    assert ledger_reconcile().clean


@pytest.mark.django_db(transaction=True)
def test_a_blocked_wallet_in_a_batch_receives_but_cannot_send(make_wallet):
    wallet = make_wallet(balance="30.00")
    Wallet.objects.filter(pk=wallet.pk).update(
        status=Wallet.Status.BLOCKED, blocked_reason="Operator: fraud check"
    )

    def work(i: int) -> str:
        try:
            _operate(wallet, "DEPOSIT" if i % 2 else "WITHDRAW", Decimal("1.00"))
            return "ok"
        except WalletBlocked:
            return "blocked"

    outcomes = Counter(run_in_threads(20, work))
    assert outcomes == {"ok": 10, "blocked": 10}
    wallet.refresh_from_db()
    assert wallet.balance.amount == Decimal("40.00")
    assert wallet.status == Wallet.Status.BLOCKED
    assert ledger_reconcile().clean


@pytest.mark.django_db(transaction=True)
def test_keyed_operations_in_one_batch_store_each_answer_once(make_wallet):
    wallet = make_wallet(balance="0")

    def work(i: int):
        return _operate(wallet, "DEPOSIT", Decimal("2.00"), key=f"key-{i % 8}")

    answers = run_in_threads(24, work)
    # 8 keys, each sent by three threads at once: 8 deposits, one answer per key.
    by_key: dict[str, set] = {}
    for i, answer in enumerate(answers):
        assert answer.status == 201
        by_key.setdefault(f"key-{i % 8}", set()).add(answer.body["operation_id"])
    assert all(len(ids) == 1 for ids in by_key.values())
    wallet.refresh_from_db()
    assert wallet.balance.amount == Decimal("16.00")
    assert Transaction.objects.filter(kind="deposit").count() == 8
    assert IdempotencyKey.objects.count() == 8
    # A replay returns the stored answer and moves nothing.
    replay = _operate(wallet, "DEPOSIT", Decimal("2.00"), key="key-3")
    assert replay.replayed and replay.body["operation_id"] in by_key["key-3"]
    wallet.refresh_from_db()
    assert wallet.balance.amount == Decimal("16.00")
    assert ledger_reconcile().clean


@pytest.mark.django_db(transaction=True)
def test_a_key_stored_while_its_batch_formed_rolls_the_batch_back(
    make_wallet, monkeypatch
):
    """The batch statement is sent with its COMMIT: when a key turns out to be
    taken by then, its own guard must undo the whole batch (and the request then
    answers with the stored response)."""
    wallet = make_wallet(balance="10.00")
    first = _operate(wallet, "WITHDRAW", Decimal("4.00"), key="taken")
    stored = group_commit._stored
    missed: list = []

    def miss_once(request):  # the check before the batch misses the key
        if not missed:
            missed.append(request)
            return None
        return stored(request)

    monkeypatch.setattr(group_commit, "_stored", miss_once)
    again = _operate(wallet, "WITHDRAW", Decimal("4.00"), key="taken")
    assert missed
    assert again.replayed and again.body == first.body
    wallet.refresh_from_db()
    assert wallet.balance.amount == Decimal("6.00")
    assert Transaction.objects.filter(kind="withdrawal").count() == 1
    assert ledger_reconcile().clean


@pytest.mark.django_db(transaction=True)
def test_api_operations_in_flight_together(user, make_wallet):
    wallet = make_wallet(owner=user, balance="5.00")
    url = f"/api/v1/wallets/{wallet.id}/operation"

    def work(i: int):
        body = {"operation_type": "WITHDRAW" if i % 3 else "DEPOSIT", "amount": "1.00"}
        response = client_for(user).post(url, body, format="json")
        return response.status_code, response.json()

    results = run_in_threads(30, work)
    statuses = Counter(status for status, _ in results)
    assert set(statuses) <= {201, 400}
    assert all(
        body["code"] == "insufficient_funds"
        for status, body in results
        if status == 400
    )
    deposits = 10
    withdrawals = statuses[201] - deposits
    wallet.refresh_from_db()
    assert wallet.balance.amount == Decimal("5.00") + deposits - withdrawals
    assert ledger_reconcile().clean


# --- The coalescer itself (no database) ----------------------------------------------------


class _Queue(deque):
    """The coalescer's queue, telling the test when `expected` callers wait in it
    (so a batch in flight can hold until the others have queued: an event, not
    a sleep)."""

    def __init__(self, expected: int) -> None:
        super().__init__()
        self.expected = expected
        self.full = threading.Event()

    def append(self, item) -> None:
        super().append(item)
        if len(self) >= self.expected:
            self.full.set()


def _run_callers(coalescer: Coalescer, count: int, call) -> None:
    threads = [threading.Thread(target=call, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
        assert not thread.is_alive()


def test_coalescer_answers_every_caller_and_batches_the_ones_that_wait():
    """While a batch is in flight (its commit), every other caller queues; the
    next leaders take them in batches of at most max_batch, and each caller gets
    its own answer."""
    batches: list[int] = []
    coalescer = Coalescer(lambda batch: None, max_batch=5)
    queue = coalescer._queue = _Queue(expected=19)

    def handle(batch):
        batches.append(len(batch))
        if len(batches) == 1:  # the first leader holds until the 19 others wait
            assert queue.full.wait(timeout=30)
        for pending in batch:
            pending.resolve(pending.item * 10)

    coalescer._handle = handle
    results = {}

    def caller(i: int):
        results[i] = coalescer.submit(i)

    _run_callers(coalescer, 20, caller)
    assert results == {i: i * 10 for i in range(20)}
    assert batches == [1, 5, 5, 5, 4]


def test_coalescer_gives_a_failed_batch_error_to_every_caller_in_it():
    coalescer = Coalescer(lambda batch: None, max_batch=50)
    queue = coalescer._queue = _Queue(expected=7)
    calls: list[int] = []

    def handle(batch):
        calls.append(len(batch))
        if len(calls) == 1:
            assert queue.full.wait(timeout=30)
        raise RuntimeError("database went away")

    coalescer._handle = handle
    errors = []

    def caller(i: int):
        try:
            coalescer.submit(i)
        except RuntimeError as exc:
            errors.append(str(exc))

    _run_callers(coalescer, 8, caller)
    assert errors == ["database went away"] * 8
    assert calls == [1, 7]  # the lone first batch, then the 7 that queued
    # And the coalescer still works afterwards.
    coalescer._handle = lambda batch: [p.resolve("ok") for p in batch]
    assert coalescer.submit(1) == "ok"


# --- The API on the coalesced path (outside any test transaction) --------------------------


@pytest.mark.django_db(transaction=True)
def test_api_answers_on_the_coalesced_path(user, other_user, make_wallet):
    wallet = make_wallet(owner=user, balance="10.00")
    foreign = make_wallet(owner=other_user, balance="10.00")
    client = client_for(user)

    def post(wallet_id, body):
        response = client.post(
            f"/api/v1/wallets/{wallet_id}/operation", body, format="json"
        )
        return response.status_code, response.json()

    status, body = post(wallet.id, {"operationType": "WITHDRAW", "amount": "2.50"})
    assert status == 201
    assert body["new_balance"] == "7.50" and body["amount"] == "2.50"
    assert body["currency"] == "KZT" and body["operation_type"] == "WITHDRAW"
    status, body = post(wallet.id, {"operation_type": "DEPOSIT", "amount": 1})
    assert (status, body["new_balance"]) == (201, "8.50")
    status, body = post(wallet.id, {"operation_type": "WITHDRAW", "amount": "9.00"})
    assert (status, body["code"]) == (400, "insufficient_funds")
    for wallet_id in (foreign.id, "00000000-0000-0000-0000-000000000000", "nope"):
        status, body = post(wallet_id, {"operation_type": "DEPOSIT", "amount": "1.00"})
        assert (status, body["code"]) == (404, "wallet_not_found")
    # A bad body on someone else's wallet is still a 404, on one's own a 400.
    status, body = post(foreign.id, {"operation_type": "DEPOSIT", "amount": "1.001"})
    assert status == 404
    status, body = post(wallet.id, {"operation_type": "DEPOSIT", "amount": "1.001"})
    assert status == 400 and "amount" in body
    Wallet.objects.filter(pk=wallet.pk).update(status=Wallet.Status.BLOCKED)
    status, body = post(wallet.id, {"operation_type": "WITHDRAW", "amount": "1.00"})
    assert (status, body["code"]) == (409, "wallet_blocked")
    foreign.refresh_from_db()
    wallet.refresh_from_db()
    assert foreign.balance.amount == Decimal("10.00")
    assert wallet.balance.amount == Decimal("8.50")
    assert ledger_reconcile().clean


@settings(max_examples=300, deadline=None)
@given(
    body=st.dictionaries(
        st.sampled_from(["operation_type", "operationType", "amount", "other"]),
        st.one_of(
            st.sampled_from(["DEPOSIT", "WITHDRAW", "deposit", ""]),
            st.from_regex(r"\A-?[0-9]{0,14}(\.[0-9]{0,3})?\Z"),
            st.integers(),
            st.decimals(allow_nan=False, places=2),
            st.none(),
            st.booleans(),
        ),
    )
)
def test_the_fast_body_parse_never_disagrees_with_the_serializer(body):
    from wallets.api.operations import _parse_well_formed
    from wallets.api.serializers import OperationSerializer

    parsed = _parse_well_formed(body)
    if parsed is not None:
        serializer = OperationSerializer(data=body)
        assert serializer.is_valid(), serializer.errors
        assert parsed == (
            serializer.validated_data["operation_type"],
            serializer.validated_data["amount"],
        )
        assert str(parsed[1]) == str(serializer.validated_data["amount"])


# --- Transfers on the coalesced path --------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_concurrent_transfers_and_operations_stay_exact(make_wallet, rates):
    wallets = [make_wallet(balance="30.00") for _ in range(4)]
    usd = make_wallet(owner=wallets[0].owner, currency="USD", balance="10.00")
    tokens = {w.id: client_for(w.owner) for w in wallets}

    def work(i: int):
        rng = random.Random(500 + i)
        moved = Counter()
        kinds = Counter()
        for _ in range(12):
            source = rng.choice(wallets)
            amount = Decimal(rng.randint(1, 1500)) / 100
            if rng.random() < 0.7:
                target = rng.choice([w for w in wallets if w != source])
                body = {
                    "from_wallet": str(source.id)
                    if rng.random() < 0.5
                    else source.number,
                    "to_wallet_number": target.number,
                    "amount": str(amount),
                }
                response = tokens[source.id].post(
                    "/api/v1/transfers/", body, format="json"
                )
                if response.status_code == 201:
                    assert response.json()["kind"] == "transfer"
                    assert response.json()["rate"] == "1.0000000000"
                    moved[source.id] -= amount
                    moved[target.id] += amount
            else:
                kind = rng.choice(["DEPOSIT", "WITHDRAW"])
                response = tokens[source.id].post(
                    f"/api/v1/wallets/{source.id}/operation",
                    {"operation_type": kind, "amount": str(amount)},
                    format="json",
                )
                if response.status_code == 201:
                    moved[source.id] += amount if kind == "DEPOSIT" else -amount
            if response.status_code == 400:
                assert response.json()["code"] == "insufficient_funds"
            else:
                assert response.status_code == 201, response.json()
            kinds[response.status_code] += 1
        return moved, kinds

    total, statuses = Counter(), Counter()
    # One exchange (KZT -> USD) in the crowd: it takes the one-by-one path.
    exchange = tokens[wallets[0].id].post(
        "/api/v1/transfers/",
        {
            "from_wallet": usd.number,
            "to_wallet_number": wallets[0].number,
            "amount": "1.00",
        },
        format="json",
    )
    assert exchange.status_code == 201 and exchange.json()["kind"] == "exchange"
    total[wallets[0].id] += Decimal(exchange.json()["credited_amount"])
    for moved, kinds in run_in_threads(16, work):
        total.update(moved)
        statuses.update(kinds)
    assert statuses[201] > 0
    for wallet in wallets:
        wallet.refresh_from_db()
        assert wallet.balance.amount == Decimal("30.00") + total[wallet.id]
        _assert_history_consistent(wallet, Decimal(0))
    usd.refresh_from_db()
    assert usd.balance.amount == Decimal("9.00")
    assert ledger_reconcile().clean


@pytest.mark.django_db(transaction=True)
def test_transfer_errors_on_the_coalesced_path(user, other_user, make_wallet, rates):
    mine = make_wallet(owner=user, balance="10.00")
    theirs = make_wallet(owner=other_user, balance="10.00")
    client = client_for(user)

    def transfer(source, number, amount="1.00", **extra):
        body = {"from_wallet": source, "to_wallet_number": number, "amount": amount}
        response = client.post("/api/v1/transfers/", {**body, **extra}, format="json")
        return response.status_code, response.json()

    status, body = transfer(str(mine.id), theirs.number, "2.50", description="rent")
    assert (
        status == 201 and body["amount"] == "2.50" and body["credited_amount"] == "2.50"
    )
    txn = Transaction.objects.get(pk=body["transaction_id"])
    assert txn.description == "rent" and txn.initiator_id == user.id
    assert txn.metadata["from_wallet"] == mine.number
    assert txn.metadata["to_wallet"] == theirs.number
    assert (
        transfer(str(mine.id), theirs.number, "8.00")[1]["code"] == "insufficient_funds"
    )
    assert transfer(str(mine.id), mine.number)[1]["code"] == "same_wallet"
    assert transfer(str(mine.id), "0000000000000000")[0] == 404
    assert transfer(str(theirs.id), mine.number)[0] == 404  # not the caller's source
    assert transfer(theirs.number, mine.number)[0] == 404
    assert transfer("not-a-wallet", theirs.number)[0] == 404
    Wallet.objects.filter(pk=mine.pk).update(status=Wallet.Status.BLOCKED)
    assert transfer(mine.number, theirs.number)[1]["code"] == "wallet_blocked"
    Wallet.objects.filter(pk=mine.pk).update(status=Wallet.Status.ACTIVE)
    Wallet.objects.filter(pk=theirs.pk).update(status=Wallet.Status.BLOCKED)
    assert transfer(mine.number, theirs.number, "1.00")[0] == 201  # blocked receives
    mine.refresh_from_db()
    theirs.refresh_from_db()
    assert mine.balance.amount == Decimal("6.50")
    assert theirs.balance.amount == Decimal("13.50")
    assert ledger_reconcile().clean


@pytest.mark.parametrize(
    ("body", "parsed"),
    [
        ({"operation_type": "DEPOSIT", "amount": "100.5"}, ("DEPOSIT", "100.50")),
        ({"operationType": "WITHDRAW", "amount": "7"}, ("WITHDRAW", "7.00")),
        (
            {"operation_type": "DEPOSIT", "amount": "0.00"},
            None,
        ),  # the serializer says why
        ({"operation_type": "DEPOSIT", "amount": "1.001"}, None),
        ({"operation_type": "DEPOSIT", "amount": 5}, None),  # numbers: the serializer
        ({"operation_type": "deposit", "amount": "5"}, None),
        ({"operation_type": "DEPOSIT", "amount": "5", "x": 1}, None),
    ],
)
def test_the_fast_body_parse_takes_the_common_spellings_only(body, parsed):
    from wallets.api.operations import _parse_well_formed

    result = _parse_well_formed(body)
    if parsed is None:
        assert result is None
    else:
        assert (result[0], str(result[1])) == parsed
