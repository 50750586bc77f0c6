"""The set-based fee run: a claimed batch's common wallets are charged with a few
statements (`ledger_debit_many` and friends), everything else one by one; the
outcome is exactly the per-wallet rules'."""

from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from djmoney.money import Money

from conftest import run_in_threads
from fees import services
from fees.models import FeeCharge
from fees.services import FEE_BLOCK_REASON, FeeRunSummary, fee_charge_due
from transactions import ledger
from transactions.ledger import (
    Debit,
    InsufficientFunds,
    WalletBlocked,
    ledger_debit_many,
    wallet_block,
)
from transactions.models import Entry, Transaction
from transactions.selectors import ledger_reconcile
from wallets.models import Wallet
from wallets.selectors import system_wallet

PERIOD = timedelta(days=30)
MINUTE = timedelta(minutes=1)


def build(make_wallet, as_of: datetime) -> dict[str, Wallet]:
    """One wallet of every kind the run meets, due relative to `as_of`."""
    wallets: dict[str, Wallet] = {}

    def due(label: str, balance: str, currency: str = "KZT", overdue=MINUTE):
        wallet = make_wallet(currency=currency, balance=balance)
        Wallet.objects.filter(pk=wallet.pk).update(next_fee_at=as_of - overdue)
        wallets[label] = wallet
        return wallet

    def owes_an_older_period(wallet: Wallet) -> None:
        FeeCharge.objects.create(
            wallet=wallet,
            period_start=as_of - MINUTE - PERIOD,
            amount=Money("200.00", "KZT"),
            status=FeeCharge.Status.DEBT,
        )

    due("payer", "1000.00")
    due("exact", "200.00")
    due("poor", "50.00")
    due("empty", "0")
    due("usd_payer", "10.00", "USD")
    due("eur_poor", "0.10", "EUR")
    due("several_periods", "450.00", overdue=timedelta(days=65))
    # Owes an older period but active (an operator unblocked it, then it was
    # topped up): the run collects the old debt first.
    owes_an_older_period(due("debtor_active", "300.00"))
    owes_an_older_period(due("debtor_blocked", "50.00"))
    wallet_block(wallet=wallets["debtor_blocked"], reason=FEE_BLOCK_REASON)
    wallet_block(wallet=due("operator_blocked", "500.00"), reason="KYC review")
    wallet_block(wallet=due("operator_blocked_poor", "0"), reason="KYC review")
    # next_fee_at moved back by hand over a period already settled: never twice.
    FeeCharge.objects.create(
        wallet=due("period_already_settled", "1000.00"),
        period_start=as_of - MINUTE,
        amount=Money("200.00", "KZT"),
        status=FeeCharge.Status.WAIVED,
        waived_at=as_of,
    )
    not_due = make_wallet(balance="1000.00")
    Wallet.objects.filter(pk=not_due.pk).update(next_fee_at=as_of + MINUTE)
    wallets["not_due"] = not_due
    return wallets


def charge_one_by_one(wallets: dict[str, Wallet], as_of: datetime) -> FeeRunSummary:
    """The per-wallet rules, wallet by wallet (what every run did before)."""
    summary = FeeRunSummary(as_of=as_of)

    def quote_for(currency: str) -> services.FeeQuote:
        return services.fee_quote(currency=currency)

    for wallet in sorted(wallets.values(), key=lambda w: w.pk):
        services._charge_wallet(
            wallet.pk, as_of=as_of, quote_for=quote_for, summary=summary, wait=True
        )
    return summary


def snapshot(wallets: dict[str, Wallet]) -> dict[str, dict]:
    """Everything the run decides about each wallet, without ids and clocks."""
    names = {
        w.pk: f"{w.system_code} {w.currency}"
        for w in Wallet.objects.filter(kind=Wallet.Kind.SYSTEM)
    } | {w.pk: label for label, w in wallets.items()}
    result = {}
    for label, wallet in wallets.items():
        wallet.refresh_from_db()
        charges = [
            (
                c.period_start,
                c.status,
                c.amount,
                c.rate,
                c.transaction.metadata if c.transaction else None,
                c.paid_at is not None,
            )
            for c in FeeCharge.objects.filter(wallet=wallet)
            .select_related("transaction")
            .order_by("period_start")
        ]
        history = []
        for entry in (
            Entry.objects.filter(wallet=wallet)
            .select_related("transaction")
            .order_by("id")
        ):
            txn = entry.transaction
            legs = [
                (names[e.wallet_id], e.amount, e.balance_after)
                for e in txn.entries.order_by("id")
            ]
            history.append((txn.kind, txn.status, txn.description, txn.metadata, legs))
        result[label] = {
            "balance": wallet.balance,
            "status": wallet.status,
            "blocked_reason": wallet.blocked_reason,
            "next_fee_at": wallet.next_fee_at,
            "charges": charges,
            "history": history,
        }
    return result


@pytest.mark.django_db
def test_a_mixed_batch_ends_exactly_as_the_per_wallet_rules_leave_it(
    make_wallet, rates
):
    """Payers, non-payers, converted fees, several periods due, older debts,
    operator-blocked wallets and a period already settled, in one batch: the
    same balances, charges, entries, statuses and summary as one by one."""
    as_of = timezone.now()
    batched = build(make_wallet, as_of)

    summary = fee_charge_due(as_of=as_of, batch_size=100)

    after_batch = snapshot(batched)
    assert ledger_reconcile().clean
    one_by_one = build(make_wallet, as_of)
    reference = charge_one_by_one(one_by_one, as_of)
    assert after_batch == snapshot(one_by_one)
    assert summary.as_dict() == reference.as_dict()
    assert ledger_reconcile().clean

    # ... and that outcome is the documented one.
    assert summary.as_dict() == {
        "as_of": as_of.isoformat(),
        "dry_run": False,
        "wallets": 12,
        "charged": 6,
        "debts": 7,
        "blocked": 5,
        "collected": 1,
        "skipped": 0,
        "totals": {"KZT": "1200.00", "USD": "0.40"},
        "debt_totals": {"EUR": "0.36", "KZT": "1200.00"},
    }
    state = {
        label: (s["balance"].amount, s["status"], s["blocked_reason"])
        for label, s in after_batch.items()
    }
    assert state == {
        "payer": (Decimal("800.00"), "active", ""),
        "exact": (Decimal("0.00"), "active", ""),
        "poor": (Decimal("50.00"), "blocked", FEE_BLOCK_REASON),
        "empty": (Decimal("0.00"), "blocked", FEE_BLOCK_REASON),
        "usd_payer": (Decimal("9.60"), "active", ""),
        "eur_poor": (Decimal("0.10"), "blocked", FEE_BLOCK_REASON),
        "several_periods": (Decimal("50.00"), "blocked", FEE_BLOCK_REASON),
        "debtor_active": (Decimal("100.00"), "blocked", FEE_BLOCK_REASON),
        "debtor_blocked": (Decimal("50.00"), "blocked", FEE_BLOCK_REASON),
        "operator_blocked": (Decimal("300.00"), "blocked", "KYC review"),
        "operator_blocked_poor": (Decimal("0.00"), "blocked", "KYC review"),
        "period_already_settled": (Decimal("1000.00"), "active", ""),
        "not_due": (Decimal("1000.00"), "active", ""),
    }
    payer = after_batch["payer"]
    assert payer["next_fee_at"] == as_of - MINUTE + PERIOD
    assert [c[1] for c in payer["charges"]] == ["paid"]
    kind, status, description, metadata, legs = payer["history"][-1]
    assert (kind, status) == ("fee", "posted")
    assert description == f"Monthly fee from {as_of - MINUTE:%Y-%m-%d}"
    assert metadata["collected_debt"] is False
    assert legs == [
        ("payer", Money("-200.00", "KZT"), Decimal("800.00")),
        ("fees KZT", Money("200.00", "KZT"), None),
    ]
    assert not after_batch["not_due"]["charges"]
    assert after_batch["period_already_settled"]["next_fee_at"] == (
        as_of - MINUTE + PERIOD
    )


@pytest.mark.django_db
def test_a_batch_of_common_wallets_is_charged_in_a_handful_of_statements(
    make_wallet, django_assert_max_num_queries
):
    """100 payers and non-payers: a few statements per batch, not ~8 per wallet."""
    wallets = [make_wallet(balance="1000.00") for _ in range(80)]
    wallets += [make_wallet(balance="10.00") for _ in range(20)]
    as_of = timezone.now()
    Wallet.objects.filter(pk__in=[w.pk for w in wallets]).update(next_fee_at=as_of)
    system_wallet("KZT", Wallet.SystemCode.FEES)  # cached, as in any long-lived run

    with django_assert_max_num_queries(20):
        summary = fee_charge_due(as_of=as_of, batch_size=1000)

    assert (summary.wallets, summary.charged, summary.debts) == (100, 80, 20)
    assert FeeCharge.objects.filter(status="paid").count() == 80
    assert Transaction.objects.filter(kind=Transaction.Kind.FEE).count() == 80
    assert ledger_reconcile().clean


@pytest.mark.django_db(transaction=True)
def test_ledger_debit_many_moves_only_the_wallets_its_rule_allows(make_wallet):
    """Each debit is its own balanced transaction with its entries; a wallet that
    is short or blocked does not move and gets nothing recorded. Committed, so
    the deferred balance trigger has checked every transaction."""
    rich = make_wallet(balance="1000.00")
    short = make_wallet(balance="100.00")
    blocked = wallet_block(wallet=make_wallet(balance="500.00"), reason="KYC review")
    fees = system_wallet("KZT", Wallet.SystemCode.FEES)
    entries = Entry.objects.count()

    def debit(wallet: Wallet, amount: str) -> Debit:
        return Debit(
            wallet_id=wallet.pk,
            amount=Decimal(amount),
            counterpart=fees,
            description="test",
            metadata={"n": wallet.number},
        )

    results = ledger_debit_many(
        kind=Transaction.Kind.COMMISSION,
        debits=[debit(rich, "250.00"), debit(short, "100.01"), debit(blocked, "1")],
    )

    moved, refused_short, refused_blocked = results
    assert refused_short is None and refused_blocked is None
    assert moved.balance == Decimal("750.00")
    txn = Transaction.objects.get(pk=moved.transaction_id)
    assert (txn.kind, txn.status, txn.description) == ("commission", "posted", "test")
    assert txn.metadata == {"n": rich.number}
    legs = [
        (e.wallet_id, e.amount, e.balance_after) for e in txn.entries.order_by("id")
    ]
    assert legs == [
        (rich.pk, Money("-250.00", "KZT"), Decimal("750.00")),
        (fees.pk, Money("250.00", "KZT"), None),
    ]
    assert Entry.objects.count() == entries + 2
    for wallet, balance in ((rich, "750.00"), (short, "100.00"), (blocked, "500.00")):
        wallet.refresh_from_db()
        assert wallet.balance.amount == Decimal(balance)

    (with_blocked,) = ledger_debit_many(
        kind=Transaction.Kind.COMMISSION,
        debits=[debit(blocked, "1")],
        allow_blocked=True,
    )
    assert with_blocked.balance == Decimal("499.00")
    with pytest.raises(ValueError, match="more than once"):
        ledger_debit_many(
            kind=Transaction.Kind.COMMISSION,
            debits=[debit(rich, "1"), debit(rich, "2")],
        )
    assert ledger_reconcile().clean


@pytest.mark.django_db(transaction=True)
def test_two_runs_and_racing_payments_charge_each_period_once_and_balances_add_up(
    make_wallet,
):
    """Two fee runs at once (small batches, so they interleave) while two
    threads deposit to and withdraw from every wallet: each due period is
    charged exactly once, every balance is its deposits minus its withdrawals
    minus its paid fees, a wallet is blocked exactly when it owes, and the
    ledger reconciles."""
    as_of = timezone.now()
    periods: dict = {}
    start: dict = {}
    wallets = []
    for balance, overdue, count in (
        ("1000.00", MINUTE, 24),  # pays
        ("50.00", MINUTE, 8),  # cannot pay unless a deposit lands first
        ("450.00", timedelta(days=65), 4),  # three periods due
    ):
        for _ in range(count):
            wallet = make_wallet(balance=balance)
            Wallet.objects.filter(pk=wallet.pk).update(next_fee_at=as_of - overdue)
            first = as_of - overdue
            periods[wallet.pk] = [first + i * PERIOD for i in range(3)]
            periods[wallet.pk] = [p for p in periods[wallet.pk] if p <= as_of]
            start[wallet.pk] = Decimal(balance)
            wallets.append(wallet)

    def work(i: int):
        if i < 2:
            return fee_charge_due(as_of=as_of, batch_size=5)
        moved = {}
        for wallet in wallets[i % 2 :: 2] + wallets[(i + 1) % 2 :: 2]:
            net = Decimal(0)
            ledger.wallet_deposit(wallet=wallet, amount=Decimal("100.00"))
            net += Decimal("100.00")
            try:
                ledger.wallet_withdraw(wallet=wallet, amount=Decimal("120.00"))
                net -= Decimal("120.00")
            except (InsufficientFunds, WalletBlocked):
                pass
            moved[wallet.pk] = net
        return moved

    results = run_in_threads(4, work)

    runs, payments = results[:2], results[2:]
    assert sum(run.wallets for run in runs) == len(wallets)
    for wallet in wallets:
        wallet.refresh_from_db()
        charges = list(FeeCharge.objects.filter(wallet=wallet).order_by("period_start"))
        assert [c.period_start for c in charges] == periods[wallet.pk]
        assert wallet.next_fee_at == periods[wallet.pk][-1] + PERIOD
        paid = sum(
            (c.amount.amount for c in charges if c.status == FeeCharge.Status.PAID),
            Decimal(0),
        )
        net = sum((p[wallet.pk] for p in payments), Decimal(0))
        assert wallet.balance.amount == start[wallet.pk] + net - paid
        owes = any(c.status == FeeCharge.Status.DEBT for c in charges)
        assert wallet.status == ("blocked" if owes else "active")
        assert wallet.blocked_reason == (FEE_BLOCK_REASON if owes else "")
        for charge in charges:
            if charge.status == FeeCharge.Status.PAID:
                assert charge.transaction.kind == Transaction.Kind.FEE
    assert Transaction.objects.filter(kind=Transaction.Kind.FEE).count() == (
        FeeCharge.objects.filter(status=FeeCharge.Status.PAID).count()
    )
    assert ledger_reconcile().clean
