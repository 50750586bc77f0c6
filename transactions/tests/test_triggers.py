"""PostgreSQL enforces the ledger's rules itself (transaction=True: a deferred
trigger fires only at COMMIT)."""

from decimal import Decimal

import pytest
from django.db import IntegrityError, connection, transaction
from djmoney.money import Money

from transactions import ledger
from transactions.models import Entry, Transaction
from wallets.models import Wallet
from wallets.selectors import system_wallet

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_hand_made_unbalanced_transaction_fails_to_commit(make_wallet):
    wallet = make_wallet()
    external = system_wallet("KZT", Wallet.SystemCode.EXTERNAL)
    with pytest.raises(IntegrityError, match="does not balance"):
        with transaction.atomic():
            txn = Transaction.objects.create(kind="adjustment")
            Entry.objects.create(transaction=txn, wallet=wallet, amount=Money(5, "KZT"))
            Entry.objects.create(
                transaction=txn, wallet=external, amount=Money(-4, "KZT")
            )
    assert not Transaction.objects.exists()
    assert not Entry.objects.exists()


def test_legs_balancing_per_currency_commit(make_wallet):
    wallet = make_wallet()
    external = system_wallet("KZT", Wallet.SystemCode.EXTERNAL)
    with transaction.atomic():
        txn = Transaction.objects.create(kind="adjustment")
        Entry.objects.create(transaction=txn, wallet=wallet, amount=Money(5, "KZT"))
        Entry.objects.create(transaction=txn, wallet=external, amount=Money(-5, "KZT"))
    assert Entry.objects.filter(transaction=txn).count() == 2


def test_balancing_one_currency_with_another_is_refused(make_wallet):
    wallet = make_wallet(currency="USD")
    external_kzt = system_wallet("KZT", Wallet.SystemCode.EXTERNAL)
    with (
        pytest.raises(IntegrityError, match="does not balance"),
        transaction.atomic(),
    ):
        txn = Transaction.objects.create(kind="adjustment")
        Entry.objects.create(transaction=txn, wallet=wallet, amount=Money(5, "USD"))
        Entry.objects.create(
            transaction=txn, wallet=external_kzt, amount=Money(-5, "KZT")
        )


def test_entries_cannot_be_updated_or_deleted(make_wallet):
    wallet = make_wallet(balance="10.00")
    entry = Entry.objects.filter(wallet=wallet).get()
    with pytest.raises(IntegrityError, match="append-only"):
        Entry.objects.filter(pk=entry.pk).update(amount=Decimal("1000.00"))
    with pytest.raises(IntegrityError, match="append-only"):
        Entry.objects.filter(pk=entry.pk).delete()
    entry.refresh_from_db()
    assert entry.amount.amount == Decimal("10.00")


def test_posted_transactions_cannot_be_edited_or_deleted(make_wallet):
    wallet = make_wallet()
    posting = ledger.wallet_deposit(wallet=wallet, amount=Decimal("3.00"))
    with pytest.raises(IntegrityError, match="append-only"):
        Transaction.objects.filter(pk=posting.transaction.pk).update(
            description="edited"
        )
    # Django's PROTECT stops an ORM delete first; the trigger stops raw SQL too.
    with pytest.raises(IntegrityError, match="append-only"), connection.cursor() as c:
        c.execute(
            "DELETE FROM transactions_transaction WHERE id = %s",
            [posting.transaction.pk],
        )


def test_database_refuses_a_negative_user_balance(make_wallet):
    wallet = make_wallet(balance="1.00")
    with pytest.raises(IntegrityError):
        Wallet.objects.filter(pk=wallet.pk).update(balance=Decimal("-1.00"))
