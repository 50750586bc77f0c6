"""The wallets back-office: finding wallets, read-only balances, and block /
unblock / adjust going through the services with a reason in the audit log."""

from decimal import Decimal

import pytest
from django.contrib.admin.models import LogEntry
from django.urls import reverse

from accounts.tests.operators import FINANCE, SUPPORT, admin_client, operator
from transactions.ledger import wallet_block
from transactions.models import Transaction
from wallets.models import ExchangeRate, Wallet
from wallets.selectors import system_wallet

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:wallets_wallet_changelist")


def change_url(wallet):
    return reverse("admin:wallets_wallet_change", args=[wallet.pk])


def found(response) -> set:
    assert response.status_code == 200
    return {wallet.pk for wallet in response.context["cl"].result_list}


@pytest.fixture
def finance(db):
    return admin_client(operator(FINANCE))


@pytest.fixture
def support(db):
    return admin_client(operator(SUPPORT))


class TestFinding:
    def test_search_by_number_owner_email_and_ids(self, make_wallet, support):
        target = make_wallet(currency="USD")
        other = make_wallet(currency="USD")
        assert found(support.get(CHANGELIST, {"q": target.number})) == {target.pk}
        assert found(support.get(CHANGELIST, {"q": target.owner.email})) == {target.pk}
        assert found(support.get(CHANGELIST, {"q": str(target.pk)})) == {target.pk}
        by_owner_id = found(support.get(CHANGELIST, {"q": str(other.owner_id)}))
        assert by_owner_id == {other.pk}

    def test_filters_by_currency_status_and_kind(self, make_wallet, support):
        kzt, usd = make_wallet(currency="KZT"), make_wallet(currency="USD")
        wallet_block(wallet=usd, reason="test")
        assert found(
            support.get(CHANGELIST, {"currency": "KZT", "kind__exact": "user"})
        ) == {kzt.pk}
        assert found(support.get(CHANGELIST, {"status__exact": "blocked"})) == {usd.pk}
        system = found(support.get(CHANGELIST, {"kind__exact": "system"}))
        assert system_wallet("KZT", Wallet.SystemCode.EXTERNAL).pk in system
        assert kzt.pk not in system


class TestReadOnly:
    def test_balance_is_shown_and_never_an_input(self, wallet):
        client = admin_client(operator())  # even a superuser
        response = client.get(change_url(wallet))
        assert response.status_code == 200
        page = response.content.decode()
        assert "1,000.00 KZT" in page
        assert 'name="balance' not in page
        assert 'name="_save"' not in page

    def test_posting_the_change_form_changes_nothing(self, wallet):
        client = admin_client(operator())
        client.post(change_url(wallet), {"balance_0": "999999", "status": "blocked"})
        wallet.refresh_from_db()
        assert wallet.balance.amount == Decimal("1000.00")
        assert wallet.status == Wallet.Status.ACTIVE

    def test_nobody_adds_or_deletes_wallets(self, wallet):
        client = admin_client(operator())
        assert client.get(reverse("admin:wallets_wallet_add")).status_code == 403
        delete = reverse("admin:wallets_wallet_delete", args=[wallet.pk])
        assert client.post(delete, {"post": "yes"}).status_code == 403
        assert Wallet.objects.filter(pk=wallet.pk).exists()


class TestBlocking:
    def test_finance_blocks_with_a_reason_recorded_in_the_audit_log(
        self, wallet, finance
    ):
        url = reverse("admin:wallets_wallet_block", args=[wallet.pk])
        assert finance.get(url).status_code == 200
        response = finance.post(url, {"reason": "suspected card fraud, ticket 42"})
        assert response.status_code == 302
        wallet.refresh_from_db()
        assert wallet.status == Wallet.Status.BLOCKED
        assert wallet.blocked_reason == "suspected card fraud, ticket 42"
        entry = LogEntry.objects.get(object_id=str(wallet.pk))
        assert (
            entry.change_message == "Blocked. Reason: suspected card fraud, ticket 42"
        )
        assert entry.user.groups.filter(name=FINANCE).exists()

    def test_blocking_without_a_reason_is_refused(self, wallet, finance):
        url = reverse("admin:wallets_wallet_block", args=[wallet.pk])
        response = finance.post(url, {"reason": "  "})
        assert response.status_code == 200
        assert "This field is required." in response.content.decode()
        wallet.refresh_from_db()
        assert wallet.status == Wallet.Status.ACTIVE
        assert not LogEntry.objects.exists()

    def test_block_action_asks_for_a_reason_then_blocks_every_selected_wallet(
        self, make_wallet, finance
    ):
        wallets = [make_wallet(), make_wallet()]
        ids = [str(w.pk) for w in wallets]
        ask = finance.post(
            CHANGELIST, {"action": "block_wallets", "_selected_action": ids, "index": 0}
        )
        assert ask.status_code == 200
        assert 'name="reason"' in ask.content.decode()
        assert Wallet.objects.filter(status="blocked").count() == 0
        done = finance.post(
            CHANGELIST,
            {
                "action": "block_wallets",
                "_selected_action": ids,
                "apply": "yes",
                "reason": "court order",
            },
        )
        assert done.status_code == 302
        assert set(
            Wallet.objects.filter(status="blocked").values_list(
                "blocked_reason", flat=True
            )
        ) == {"court order"}
        assert (
            LogEntry.objects.filter(change_message__contains="court order").count() == 2
        )

    def test_unblock_restores_sending(self, wallet, finance):
        wallet_block(wallet=wallet, reason="check")
        url = reverse("admin:wallets_wallet_unblock", args=[wallet.pk])
        assert finance.get(url).status_code == 405, "a GET never changes anything"
        assert finance.post(url).status_code == 302
        wallet.refresh_from_db()
        assert wallet.status == Wallet.Status.ACTIVE
        assert wallet.blocked_reason == ""
        assert (
            LogEntry.objects.get().change_message == "Unblocked (was blocked: check)."
        )

    def test_support_can_look_but_not_block_or_unblock(self, wallet, support):
        assert support.get(change_url(wallet)).status_code == 200
        block = reverse("admin:wallets_wallet_block", args=[wallet.pk])
        assert support.get(block).status_code == 403
        assert support.post(block, {"reason": "x"}).status_code == 403
        support.post(
            CHANGELIST,
            {
                "action": "block_wallets",
                "_selected_action": [str(wallet.pk)],
                "apply": "yes",
                "reason": "x",
            },
        )
        wallet.refresh_from_db()
        assert wallet.status == Wallet.Status.ACTIVE
        page = support.get(change_url(wallet)).content.decode()
        assert "block-link" not in page and "adjust-link" not in page

    def test_system_wallets_are_never_blocked(self, finance):
        external = system_wallet("KZT", Wallet.SystemCode.EXTERNAL)
        url = reverse("admin:wallets_wallet_block", args=[external.pk])
        assert finance.post(url, {"reason": "x"}).status_code == 404
        external.refresh_from_db()
        assert external.status == Wallet.Status.ACTIVE


class TestAdjusting:
    def test_requesting_creates_a_pending_adjustment_and_moves_nothing(
        self, wallet, finance
    ):
        url = reverse("admin:wallets_wallet_adjust", args=[wallet.pk])
        response = finance.post(
            url, {"amount": "-150.00", "reason": "duplicate deposit"}
        )
        txn = Transaction.objects.get(kind="adjustment")
        assert response.status_code == 302
        assert response["Location"] == reverse(
            "admin:transactions_transaction_review", args=[txn.pk]
        )
        assert txn.status == Transaction.Status.PENDING
        wallet.refresh_from_db()
        assert wallet.balance.amount == Decimal("1000.00")
        log = LogEntry.objects.get(object_id=str(wallet.pk))
        assert "Requested adjustment -150.00 KZT" in log.change_message
        assert "Reason: duplicate deposit" in log.change_message

    @pytest.mark.parametrize(
        ("data", "error"),
        [
            ({"amount": "10", "reason": ""}, "This field is required."),
            ({"amount": "0", "reason": "x"}, "The amount must not be zero."),
            ({"amount": "1.001", "reason": "x"}, "decimal place"),
            ({"amount": "-1000.01", "reason": "x"}, "Insufficient funds."),
        ],
    )
    def test_bad_requests_show_the_error_and_create_nothing(
        self, wallet, finance, data, error
    ):
        url = reverse("admin:wallets_wallet_adjust", args=[wallet.pk])
        response = finance.post(url, data)
        assert response.status_code == 200
        assert error in response.content.decode()
        assert not Transaction.objects.filter(kind="adjustment").exists()

    def test_adjust_action_opens_the_form_for_exactly_one_wallet(
        self, make_wallet, finance
    ):
        one, two = make_wallet(), make_wallet()
        response = finance.post(
            CHANGELIST,
            {"action": "adjust_wallet", "_selected_action": [str(one.pk)], "index": 0},
        )
        assert response["Location"] == reverse(
            "admin:wallets_wallet_adjust", args=[one.pk]
        )
        response = finance.post(
            CHANGELIST,
            {
                "action": "adjust_wallet",
                "_selected_action": [str(one.pk), str(two.pk)],
                "index": 0,
            },
            follow=True,
        )
        assert "Select exactly one user wallet to adjust." in response.content.decode()

    def test_support_cannot_request_adjustments(self, wallet, support):
        url = reverse("admin:wallets_wallet_adjust", args=[wallet.pk])
        assert support.post(url, {"amount": "5", "reason": "x"}).status_code == 403
        assert not Transaction.objects.filter(kind="adjustment").exists()


class TestExchangeRates:
    URL = reverse("admin:wallets_exchangerate_changelist")

    def test_finance_sets_a_rate_by_hand_with_a_reason(self, finance):
        response = finance.post(
            reverse("admin:wallets_exchangerate_add"),
            {
                "base": "USD",
                "quote": "KZT",
                "rate": "480.1234567891",
                "reason": "provider down",
            },
        )
        assert response.status_code == 302
        rate = ExchangeRate.objects.get(base="USD", quote="KZT")
        assert rate.rate == Decimal("480.1234567891")
        assert rate.source.startswith("manual: ")
        log = LogEntry.objects.get(object_id=str(rate.pk))
        assert log.change_message == (
            "Set 1 USD = 480.1234567891 KZT. Reason: provider down"
        )
        change = reverse("admin:wallets_exchangerate_change", args=[rate.pk])
        finance.post(change, {"rate": "481", "reason": "correction"})
        rate.refresh_from_db()
        assert rate.rate == Decimal("481")
        assert ExchangeRate.objects.count() == 1

    def test_a_bad_rate_is_refused(self, finance):
        response = finance.post(
            reverse("admin:wallets_exchangerate_add"),
            {"base": "USD", "quote": "USD", "rate": "-1", "reason": "x"},
        )
        assert response.status_code == 200
        assert not ExchangeRate.objects.exists()

    def test_support_only_looks(self, support):
        assert support.get(self.URL).status_code == 200
        response = support.post(
            reverse("admin:wallets_exchangerate_add"),
            {"base": "USD", "quote": "KZT", "rate": "480", "reason": "x"},
        )
        assert response.status_code == 403
        assert not ExchangeRate.objects.exists()
