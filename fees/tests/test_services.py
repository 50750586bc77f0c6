"""The fee run, blocking and debt collection against the real ledger."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from accounts.tests.factories import UserFactory
from fees.errors import FeeChargeNotWaivable
from fees.models import FeeCharge
from fees.selectors import fee_debt_total
from fees.services import (
    FEE_BLOCK_REASON,
    fee_charge_due,
    fee_charge_waive,
    fee_debt_collect,
)
from transactions import ledger
from transactions.ledger import WalletBlocked, wallet_block, wallet_unblock
from transactions.models import Entry, Transaction
from transactions.selectors import ledger_reconcile
from wallets.models import Wallet
from wallets.selectors import system_wallet
from wallets.services import exchange_rate_set

pytestmark = pytest.mark.django_db

PERIOD = timedelta(days=30)


def make_due(wallet: Wallet, *, overdue: timedelta = timedelta(0)) -> Wallet:
    """Make the wallet's fee due `overdue` ago (now when zero)."""
    Wallet.objects.filter(pk=wallet.pk).update(next_fee_at=timezone.now() - overdue)
    wallet.refresh_from_db()
    return wallet


def run(**kwargs):
    kwargs.setdefault("as_of", timezone.now())
    kwargs.setdefault("batch_size", 2)
    return fee_charge_due(**kwargs)


def fee_transactions(wallet: Wallet):
    return Transaction.objects.filter(kind=Transaction.Kind.FEE, entries__wallet=wallet)


def fees_wallet_total(currency: str = "KZT") -> Decimal:
    fees = system_wallet(currency, Wallet.SystemCode.FEES)
    return sum((e.amount.amount for e in Entry.objects.filter(wallet=fees)), Decimal(0))


def test_a_due_wallet_pays_200_kzt_to_the_fees_wallet_and_its_next_fee_moves_30_days(
    make_wallet,
):
    wallet = make_due(make_wallet(balance="1000.00"))
    due_at = wallet.next_fee_at
    not_due = make_wallet(balance="1000.00")

    summary = run()

    wallet.refresh_from_db()
    assert wallet.balance.amount == Decimal("800.00")
    assert wallet.status == Wallet.Status.ACTIVE
    assert wallet.next_fee_at == due_at + PERIOD
    charge = FeeCharge.objects.get(wallet=wallet)
    assert charge.status == FeeCharge.Status.PAID
    assert charge.period_start == due_at
    assert charge.amount.amount == Decimal("200.00")
    assert str(charge.currency) == "KZT"
    assert charge.paid_at is not None
    txn = charge.transaction
    assert txn.kind == Transaction.Kind.FEE
    legs = {(e.wallet_id, e.amount.amount) for e in txn.entries.all()}
    fees = system_wallet("KZT", Wallet.SystemCode.FEES)
    assert legs == {(wallet.id, Decimal("-200.00")), (fees.id, Decimal("200.00"))}
    assert txn.metadata["fee_period_start"] == due_at.isoformat()

    not_due.refresh_from_db()
    assert not_due.balance.amount == Decimal("1000.00")
    assert not FeeCharge.objects.filter(wallet=not_due).exists()
    assert summary.wallets == 1
    assert summary.charged == 1
    assert summary.blocked == summary.skipped == summary.debts == 0
    assert summary.totals == {"KZT": Decimal("200.00")}
    assert ledger_reconcile().clean


def test_running_twice_charges_each_period_once(make_wallet):
    wallets = [make_due(make_wallet(balance="1000.00")) for _ in range(5)]
    as_of = timezone.now()

    first = run(as_of=as_of)
    second = run(as_of=as_of)

    assert first.wallets == 5
    assert second.wallets == 0
    assert second.charged == 0
    for wallet in wallets:
        wallet.refresh_from_db()
        assert wallet.balance.amount == Decimal("800.00")
        assert FeeCharge.objects.filter(wallet=wallet).count() == 1
    assert fees_wallet_total() == Decimal("1000.00")


def test_a_wallet_that_cannot_pay_is_blocked_and_owes_the_fee(make_wallet):
    wallet = make_due(make_wallet(balance="50.00"))
    due_at = wallet.next_fee_at

    summary = run()

    wallet.refresh_from_db()
    assert wallet.status == Wallet.Status.BLOCKED
    assert wallet.blocked_reason == FEE_BLOCK_REASON
    assert wallet.balance.amount == Decimal("50.00")  # nothing moved
    assert wallet.next_fee_at == due_at + PERIOD
    charge = FeeCharge.objects.get(wallet=wallet)
    assert charge.status == FeeCharge.Status.DEBT
    assert charge.transaction is None
    assert not fee_transactions(wallet).exists()
    assert fee_debt_total(wallet=wallet) == Decimal("200.00")
    assert (summary.blocked, summary.debts, summary.charged) == (1, 1, 0)
    assert summary.debt_totals == {"KZT": Decimal("200.00")}
    assert ledger_reconcile().clean


def test_a_blocked_wallet_cannot_send(make_wallet):
    wallet = make_due(make_wallet(balance="50.00"))
    run()

    with pytest.raises(WalletBlocked):
        ledger.wallet_withdraw(wallet=wallet, amount=Decimal("10.00"))
    wallet.refresh_from_db()
    assert wallet.balance.amount == Decimal("50.00")


def test_a_deposit_that_covers_the_debt_collects_it_and_unblocks(make_wallet):
    wallet = make_due(make_wallet(balance="50.00"))
    run()

    posting = ledger.wallet_deposit(wallet=wallet, amount=Decimal("100.00"))
    wallet.refresh_from_db()
    assert posting.balances[wallet.id] == Decimal("150.00")
    assert wallet.status == Wallet.Status.BLOCKED  # 150 < 200: still owes
    assert FeeCharge.objects.get(wallet=wallet).status == FeeCharge.Status.DEBT

    posting = ledger.wallet_deposit(wallet=wallet, amount=Decimal("100.00"))

    wallet.refresh_from_db()
    assert posting.balances[wallet.id] == Decimal("50.00")
    assert wallet.balance.amount == Decimal("50.00")
    assert wallet.status == Wallet.Status.ACTIVE
    assert wallet.blocked_reason == ""
    charge = FeeCharge.objects.get(wallet=wallet)
    assert charge.status == FeeCharge.Status.PAID
    assert charge.transaction.kind == Transaction.Kind.FEE
    assert charge.transaction.metadata["collected_debt"] is True
    assert fee_debt_total(wallet=wallet) == Decimal("0.00")
    # The wallet's history: deposit 50, deposit 100, deposit 100, fee -200.
    history = list(
        Entry.objects.filter(wallet=wallet)
        .order_by("id")
        .values_list("amount", "balance_after")
    )
    assert history == [
        (Decimal("50.00"), Decimal("50.00")),
        (Decimal("100.00"), Decimal("150.00")),
        (Decimal("100.00"), Decimal("250.00")),
        (Decimal("-200.00"), Decimal("50.00")),
    ]
    ledger.wallet_withdraw(wallet=wallet, amount=Decimal("50.00"))  # may send again
    assert ledger_reconcile().clean


def test_a_wallet_several_periods_behind_pays_each_period_then_owes_the_rest(
    make_wallet,
):
    """Three periods due (65, 35 and 5 days ago) and 450 KZT: the two oldest are
    paid, the newest is debt and the wallet is blocked."""
    wallet = make_due(make_wallet(balance="450.00"), overdue=timedelta(days=65))
    first_due = wallet.next_fee_at
    as_of = timezone.now()

    summary = run(as_of=as_of)

    wallet.refresh_from_db()
    charges = list(FeeCharge.objects.filter(wallet=wallet).order_by("period_start"))
    assert [c.period_start for c in charges] == [
        first_due,
        first_due + PERIOD,
        first_due + 2 * PERIOD,
    ]
    assert [c.status for c in charges] == ["paid", "paid", "debt"]
    assert wallet.balance.amount == Decimal("50.00")
    assert wallet.status == Wallet.Status.BLOCKED
    assert wallet.next_fee_at == first_due + 3 * PERIOD
    assert wallet.next_fee_at > as_of
    assert (summary.wallets, summary.charged, summary.debts) == (1, 2, 1)

    ledger.wallet_deposit(wallet=wallet, amount=Decimal("150.00"))
    wallet.refresh_from_db()
    assert wallet.balance.amount == Decimal("0.00")
    assert wallet.status == Wallet.Status.ACTIVE
    assert ledger_reconcile().clean


def test_debt_accumulates_over_periods_and_is_collected_oldest_first(make_wallet):
    wallet = make_due(make_wallet(balance="0"))
    first_due = wallet.next_fee_at
    run(as_of=first_due)
    run(as_of=first_due + PERIOD)

    wallet.refresh_from_db()
    assert wallet.status == Wallet.Status.BLOCKED
    assert fee_debt_total(wallet=wallet) == Decimal("400.00")
    assert FeeCharge.objects.filter(wallet=wallet, status="debt").count() == 2

    ledger.wallet_deposit(wallet=wallet, amount=Decimal("300.00"))

    wallet.refresh_from_db()
    oldest, newest = FeeCharge.objects.filter(wallet=wallet).order_by("period_start")
    assert (oldest.status, newest.status) == ("paid", "debt")
    assert wallet.balance.amount == Decimal("100.00")
    assert wallet.status == Wallet.Status.BLOCKED
    assert fee_debt_total(wallet=wallet) == Decimal("200.00")

    ledger.wallet_deposit(wallet=wallet, amount=Decimal("100.00"))

    wallet.refresh_from_db()
    newest.refresh_from_db()
    assert newest.status == "paid"
    assert wallet.balance.amount == Decimal("0.00")
    assert wallet.status == Wallet.Status.ACTIVE
    assert fees_wallet_total() == Decimal("400.00")
    assert ledger_reconcile().clean


def test_one_credit_that_covers_several_debts_collects_all_without_recursion(
    make_wallet,
):
    wallet = make_due(make_wallet(balance="0"), overdue=timedelta(days=40))
    run()
    assert FeeCharge.objects.filter(wallet=wallet, status="debt").count() == 2

    ledger.wallet_deposit(wallet=wallet, amount=Decimal("1000.00"))

    wallet.refresh_from_db()
    assert wallet.balance.amount == Decimal("600.00")
    assert wallet.status == Wallet.Status.ACTIVE
    assert fee_transactions(wallet).count() == 2
    assert Transaction.objects.filter(kind=Transaction.Kind.DEPOSIT).count() == 1
    assert ledger_reconcile().clean


def test_a_debt_is_not_collected_when_the_balance_does_not_cover_the_oldest(
    make_wallet, settings
):
    """Oldest first, strictly: a later, smaller debt is not paid before it."""
    wallet = make_due(make_wallet(balance="0"))
    first_due = wallet.next_fee_at
    run(as_of=first_due)  # owes 200
    settings.FEE_AMOUNT = Decimal("10.00")
    run(as_of=first_due + PERIOD)  # and then 10

    ledger.wallet_deposit(wallet=wallet, amount=Decimal("150.00"))

    wallet.refresh_from_db()
    assert wallet.balance.amount == Decimal("150.00")
    assert wallet.status == Wallet.Status.BLOCKED
    assert not FeeCharge.objects.filter(wallet=wallet, status="paid").exists()
    assert fee_debt_total(wallet=wallet) == Decimal("210.00")


def test_the_run_collects_an_older_debt_before_charging_the_new_period(make_wallet):
    """A wallet an operator unblocked while it still owed (then topped up while
    active, so no collection happened) pays the old debt first."""
    wallet = make_due(make_wallet(balance="0"))
    first_due = wallet.next_fee_at
    run(as_of=first_due)
    wallet_unblock(wallet=wallet)
    ledger.wallet_deposit(wallet=wallet, amount=Decimal("300.00"))
    assert FeeCharge.objects.get(wallet=wallet).status == "debt"

    summary = run(as_of=first_due + PERIOD)

    wallet.refresh_from_db()
    assert (summary.collected, summary.charged, summary.debts) == (1, 0, 1)
    assert [c.status for c in FeeCharge.objects.order_by("period_start")] == [
        "paid",
        "debt",
    ]
    assert wallet.balance.amount == Decimal("100.00")
    assert wallet.status == Wallet.Status.BLOCKED
    assert summary.blocked == 1


def test_a_wallet_blocked_by_an_operator_stays_blocked_after_paying_its_debt(
    make_wallet,
):
    wallet = make_due(make_wallet(balance="0"))
    run()
    wallet_block(wallet=wallet, reason="Suspicious activity")

    ledger.wallet_deposit(wallet=wallet, amount=Decimal("500.00"))

    wallet.refresh_from_db()
    assert FeeCharge.objects.get(wallet=wallet).status == "paid"
    assert wallet.balance.amount == Decimal("300.00")
    assert wallet.status == Wallet.Status.BLOCKED
    assert wallet.blocked_reason == "Suspicious activity"


def test_an_operator_blocked_wallet_is_still_charged_and_keeps_its_reason(
    make_wallet,
):
    rich = make_due(make_wallet(balance="500.00"))
    poor = make_due(make_wallet(balance="0"))
    for wallet in (rich, poor):
        wallet_block(wallet=wallet, reason="KYC review")

    summary = run()

    rich.refresh_from_db()
    poor.refresh_from_db()
    assert rich.balance.amount == Decimal("300.00")
    assert FeeCharge.objects.get(wallet=poor).status == "debt"
    assert (rich.blocked_reason, poor.blocked_reason) == ("KYC review", "KYC review")
    assert summary.blocked == 0  # neither was blocked by this run


def test_debt_collect_with_no_debt_changes_nothing(wallet):
    assert fee_debt_collect(wallet=wallet) is None
    wallet.refresh_from_db()
    assert wallet.balance.amount == Decimal("1000.00")
    assert wallet.status == Wallet.Status.ACTIVE


# --- Currency conversion --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("currency", "balance", "fee"),
    [("USD", "10.00", Decimal("0.40")), ("EUR", "10.00", Decimal("0.36"))],
)
def test_usd_and_eur_wallets_pay_the_fee_converted_at_the_current_rate(
    make_wallet, rates, currency, balance, fee
):
    """200 KZT at 0.002 USD = 0.40 USD; at 0.0018181818 EUR = 0.3636... -> 0.36."""
    wallet = make_due(make_wallet(currency=currency, balance=balance))

    summary = run()

    wallet.refresh_from_db()
    charge = FeeCharge.objects.get(wallet=wallet)
    assert charge.amount.amount == fee
    assert str(charge.currency) == currency
    assert charge.rate == rates[("KZT", currency)]
    assert wallet.balance.amount == Decimal(balance) - fee
    txn = charge.transaction
    assert txn.metadata["rate"] == str(
        rates[("KZT", currency)].quantize(Decimal("1e-10"))
    )
    assert txn.metadata["fee_amount"] == "200.00"
    assert txn.metadata["fee_currency"] == "KZT"
    fees = system_wallet(currency, Wallet.SystemCode.FEES)
    assert txn.entries.get(wallet=fees).amount.amount == fee
    assert summary.totals == {currency: fee}
    assert ledger_reconcile().clean


@pytest.mark.parametrize(
    ("rate", "fee"),
    [
        (Decimal("0.002125"), Decimal("0.42")),  # 0.425 -> half to even: 0.42
        (Decimal("0.002175"), Decimal("0.44")),  # 0.435 -> half to even: 0.44
    ],
)
def test_the_converted_fee_is_rounded_half_to_even(make_wallet, rate, fee):
    exchange_rate_set(base="KZT", quote="USD", rate=rate)
    wallet = make_due(make_wallet(currency="USD", balance="5.00"))

    run()

    assert FeeCharge.objects.get(wallet=wallet).amount.amount == fee


def test_without_a_rate_the_wallet_is_skipped_logged_and_charged_next_run(
    make_wallet, caplog
):
    usd = make_due(make_wallet(currency="USD", balance="5.00"))
    kzt = make_due(make_wallet(balance="500.00"))
    due_at = usd.next_fee_at

    summary = run()

    usd.refresh_from_db()
    assert summary.skipped == 1
    assert summary.wallets == 1  # the KZT wallet
    assert usd.next_fee_at == due_at  # still due
    assert usd.balance.amount == Decimal("5.00")
    assert not FeeCharge.objects.filter(wallet=usd).exists()
    assert FeeCharge.objects.filter(wallet=kzt).count() == 1
    assert "no fresh KZT->USD rate" in caplog.text

    exchange_rate_set(base="KZT", quote="USD", rate=Decimal("0.002"))
    summary = run()

    usd.refresh_from_db()
    assert summary.skipped == 0
    assert FeeCharge.objects.get(wallet=usd).period_start == due_at
    assert usd.balance.amount == Decimal("4.60")


def test_a_stale_rate_is_no_rate(make_wallet, settings):
    exchange_rate_set(base="KZT", quote="EUR", rate=Decimal("0.0018"))
    wallet = make_due(make_wallet(currency="EUR", balance="5.00"))

    summary = run(as_of=timezone.now())
    assert summary.wallets == 1

    settings.RATE_MAX_AGE = timedelta(seconds=0)
    Wallet.objects.filter(pk=wallet.pk).update(next_fee_at=timezone.now())
    summary = run(as_of=timezone.now())
    assert summary.skipped == 1
    assert FeeCharge.objects.filter(wallet=wallet).count() == 1


# --- Dry run ------------------------------------------------------------------------------


def test_a_dry_run_reports_what_would_happen_and_changes_nothing(make_wallet, rates):
    payer = make_due(make_wallet(balance="1000.00"), overdue=timedelta(days=31))
    debtor = make_due(make_wallet(balance="10.00"))
    usd = make_due(make_wallet(currency="USD", balance="1.00"))
    before = {
        w.pk: (w.balance.amount, w.status, w.next_fee_at) for w in (payer, debtor, usd)
    }
    entries = Entry.objects.count()

    summary = run(dry_run=True)

    assert summary.dry_run
    assert (summary.wallets, summary.charged, summary.debts, summary.blocked) == (
        3,
        3,
        1,
        1,
    )
    assert summary.totals == {"KZT": Decimal("400.00"), "USD": Decimal("0.40")}
    assert summary.debt_totals == {"KZT": Decimal("200.00")}
    assert not FeeCharge.objects.exists()
    assert not Transaction.objects.filter(kind=Transaction.Kind.FEE).exists()
    assert Entry.objects.count() == entries
    for w in (payer, debtor, usd):
        w.refresh_from_db()
        assert (w.balance.amount, w.status, w.next_fee_at) == before[w.pk]

    real = run()
    assert real.as_dict() | {"dry_run": True, "as_of": None} == summary.as_dict() | {
        "as_of": None
    }


# --- Waiving ------------------------------------------------------------------------------


def test_waiving_the_only_debt_unblocks_and_records_who_and_why(make_wallet):
    operator = UserFactory(is_staff=True)
    wallet = make_due(make_wallet(balance="0"))
    run()
    charge = FeeCharge.objects.get(wallet=wallet)

    waived = fee_charge_waive(charge=charge, waived_by=operator, reason=" Goodwill ")

    wallet.refresh_from_db()
    waived.refresh_from_db()
    assert waived.status == FeeCharge.Status.WAIVED
    assert waived.waived_by == operator
    assert waived.waived_reason == "Goodwill"
    assert waived.waived_at is not None
    assert waived.transaction is None
    assert wallet.status == Wallet.Status.ACTIVE
    assert fee_debt_total(wallet=wallet) == Decimal("0.00")


def test_waiving_the_oldest_debt_lets_the_balance_pay_the_next(make_wallet, settings):
    operator = UserFactory(is_staff=True)
    wallet = make_due(make_wallet(balance="0"))
    first_due = wallet.next_fee_at
    run(as_of=first_due)  # owes 200
    settings.FEE_AMOUNT = Decimal("100.00")
    run(as_of=first_due + PERIOD)  # and then 100
    ledger.wallet_deposit(wallet=wallet, amount=Decimal("150.00"))
    oldest, newest = FeeCharge.objects.filter(wallet=wallet).order_by("period_start")
    assert (oldest.status, newest.status) == ("debt", "debt")  # 150 < 200, oldest first

    fee_charge_waive(charge=oldest, waived_by=operator, reason="Outage compensation")

    wallet.refresh_from_db()
    newest.refresh_from_db()
    assert newest.status == FeeCharge.Status.PAID
    assert wallet.balance.amount == Decimal("50.00")
    assert wallet.status == Wallet.Status.ACTIVE
    assert ledger_reconcile().clean


def test_only_a_debt_can_be_waived_and_a_reason_is_required(make_wallet):
    operator = UserFactory(is_staff=True)
    wallet = make_due(make_wallet(balance="500.00"))
    run()
    paid = FeeCharge.objects.get(wallet=wallet)

    with pytest.raises(FeeChargeNotWaivable):
        fee_charge_waive(charge=paid, waived_by=operator, reason="Goodwill")
    poor = make_due(make_wallet(balance="0"))
    run()
    debt = FeeCharge.objects.get(wallet=poor)
    with pytest.raises(ValidationError):
        fee_charge_waive(charge=debt, waived_by=operator, reason="  ")
    debt.refresh_from_db()
    assert debt.status == FeeCharge.Status.DEBT
    fee_charge_waive(charge=debt, waived_by=operator, reason="Goodwill")
    with pytest.raises(FeeChargeNotWaivable):
        fee_charge_waive(charge=debt, waived_by=operator, reason="Again")
