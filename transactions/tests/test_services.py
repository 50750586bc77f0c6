from decimal import Decimal

import pytest
from django.core.management import call_command

from transactions import ledger
from transactions.ledger import (
    BalanceLimitExceeded,
    IdempotencyConflict,
    InsufficientFunds,
    InvalidAmount,
    WalletBlocked,
    wallet_block,
)
from transactions.models import Entry, IdempotencyKey, Transaction
from transactions.selectors import ledger_reconcile
from wallets.models import Wallet
from wallets.selectors import system_wallet

pytestmark = pytest.mark.django_db


def test_deposit_credits_wallet_and_debits_external_in_one_transaction(make_wallet):
    wallet = make_wallet(currency="USD")
    posting = ledger.wallet_deposit(wallet=wallet, amount=Decimal("10.25"))
    wallet.refresh_from_db()
    assert wallet.balance.amount == Decimal("10.25")
    external = system_wallet("USD", Wallet.SystemCode.EXTERNAL)
    legs = {
        e.wallet_id: e for e in Entry.objects.filter(transaction=posting.transaction)
    }
    assert legs[wallet.id].amount.amount == Decimal("10.25")
    assert legs[wallet.id].balance_after == Decimal("10.25")
    assert legs[external.id].amount.amount == Decimal("-10.25")
    assert legs[external.id].balance_after is None
    assert posting.transaction.kind == Transaction.Kind.DEPOSIT
    external.refresh_from_db()
    assert external.balance.amount == 0, "system wallets keep no cached balance"


def test_withdraw_more_than_balance_is_refused_and_changes_nothing(make_wallet):
    wallet = make_wallet(balance="5.00")
    before = Entry.objects.count()
    with pytest.raises(InsufficientFunds):
        ledger.wallet_withdraw(wallet=wallet, amount=Decimal("5.01"))
    wallet.refresh_from_db()
    assert wallet.balance.amount == Decimal("5.00")
    assert Entry.objects.count() == before


def test_withdraw_exact_balance_leaves_zero(make_wallet):
    wallet = make_wallet(balance="5.00")
    posting = ledger.wallet_withdraw(wallet=wallet, amount=Decimal("5.00"))
    assert posting.balances[wallet.id] == Decimal("0.00")


def test_blocked_wallet_cannot_withdraw_but_can_receive(make_wallet):
    wallet = make_wallet(balance="50.00")
    wallet_block(wallet=wallet, reason="test")
    with pytest.raises(WalletBlocked):
        ledger.wallet_withdraw(wallet=wallet, amount=Decimal("1.00"))
    ledger.wallet_deposit(wallet=wallet, amount=Decimal("1.00"))
    wallet.refresh_from_db()
    assert wallet.balance.amount == Decimal("51.00")


@pytest.mark.parametrize(
    "amount", ["0", "-1", "1.001", "NaN", "Infinity", "-Infinity", "10000000000.00"]
)
def test_invalid_amounts_are_refused_never_rounded(make_wallet, amount):
    wallet = make_wallet(balance="10.00")
    with pytest.raises(InvalidAmount):
        ledger.wallet_deposit(wallet=wallet, amount=Decimal(amount))
    wallet.refresh_from_db()
    assert wallet.balance.amount == Decimal("10.00")


def test_balance_limit_is_a_clean_error(make_wallet, settings):
    settings.MAX_WALLET_BALANCE = Decimal("100.00")
    wallet = make_wallet(balance="99.00")
    with pytest.raises(BalanceLimitExceeded):
        ledger.wallet_deposit(wallet=wallet, amount=Decimal("1.01"))


def test_unbalanced_posting_is_refused_before_touching_the_database(make_wallet):
    wallet = make_wallet()
    with pytest.raises(ValueError, match="unbalanced"):
        ledger.ledger_post(kind="adjustment", legs=[ledger.Leg(wallet, Decimal("1"))])
    assert not Transaction.objects.exists()


def _request(user, key="key-1", body=None):
    return ledger.IdempotencyRequest(
        user_id=user.pk,
        key=key,
        fingerprint=ledger.IdempotencyRequest.fingerprint_of(
            "POST", "/x", body or {"amount": "1.00"}
        ),
    )


def test_idempotent_replay_returns_stored_response_and_moves_nothing(user, make_wallet):
    wallet = make_wallet(owner=user)

    def deposit():
        return ledger.wallet_deposit(wallet=wallet, amount=Decimal("1.00"))

    def render(posting):
        return {"id": str(posting.transaction.id)}

    first = ledger.idempotency_execute(
        request=_request(user), action=deposit, render=render
    )
    again = ledger.idempotency_execute(
        request=_request(user), action=deposit, render=render
    )
    assert (again.status, again.body, again.replayed) == (
        first.status,
        first.body,
        True,
    )
    wallet.refresh_from_db()
    assert wallet.balance.amount == Decimal("1.00")
    assert Transaction.objects.count() == 1


def test_same_key_with_another_body_is_a_conflict(user, make_wallet):
    wallet = make_wallet(owner=user)

    def deposit():
        return ledger.wallet_deposit(wallet=wallet, amount=Decimal("1.00"))

    ledger.idempotency_execute(
        request=_request(user), action=deposit, render=lambda p: {}
    )
    with pytest.raises(IdempotencyConflict):
        ledger.idempotency_execute(
            request=_request(user, body={"amount": "2.00"}),
            action=deposit,
            render=lambda p: {},
        )


def test_a_failed_request_leaves_no_key_so_it_can_be_retried(user, make_wallet):
    wallet = make_wallet(owner=user)

    def withdraw():
        return ledger.wallet_withdraw(wallet=wallet, amount=Decimal("1.00"))

    with pytest.raises(InsufficientFunds):
        ledger.idempotency_execute(
            request=_request(user), action=withdraw, render=lambda p: {}
        )
    assert not IdempotencyKey.objects.exists()
    ledger.wallet_deposit(wallet=wallet, amount=Decimal("1.00"))
    done = ledger.idempotency_execute(
        request=_request(user), action=withdraw, render=lambda p: {"ok": True}
    )
    assert done.body == {"ok": True}


def test_keys_are_per_user(user, other_user, make_wallet):
    mine, theirs = make_wallet(owner=user), make_wallet(owner=other_user)
    for owner, wallet in ((user, mine), (other_user, theirs)):
        ledger.idempotency_execute(
            request=_request(owner),
            action=lambda w=wallet: ledger.wallet_deposit(
                wallet=w, amount=Decimal("1.00")
            ),
            render=lambda p: {},
        )
    assert Transaction.objects.count() == 2


def test_reconcile_is_clean_after_operations_and_reports_a_tampered_balance(
    make_wallet, capsys
):
    wallet = make_wallet(balance="10.00")
    ledger.wallet_withdraw(wallet=wallet, amount=Decimal("3.00"))
    assert ledger_reconcile().clean
    call_command("reconcile", "--quiet")
    assert "Ledger clean" in capsys.readouterr().out

    Wallet.objects.filter(pk=wallet.pk).update(balance=Decimal("100.00"))
    report = ledger_reconcile()
    assert not report.clean
    assert wallet.number in report.balance_mismatches[0]
    with pytest.raises(SystemExit) as exit_info:
        call_command("reconcile", "--quiet")
    assert exit_info.value.code == 1
    assert "NOT clean" in capsys.readouterr().out
