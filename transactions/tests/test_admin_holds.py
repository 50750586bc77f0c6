"""Holds and payouts in the back-office: read-only lists with filters, void a
hold and fail a payout through the services with a reason in the audit log,
the wallet's held and available balance, and the money held on the dashboard."""

import re
from datetime import timedelta
from decimal import Decimal
from html import unescape

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.contenttypes.models import ContentType
from django.urls import reverse
from django.utils import timezone

from accounts.tests.operators import FINANCE, SUPPORT, admin_client, operator
from transactions import ledger
from transactions.models import Hold, Payout
from transactions.selectors import ledger_reconcile
from wallets.models import Wallet

pytestmark = pytest.mark.django_db

D = Decimal
HOLDS = reverse("admin:transactions_hold_changelist")
PAYOUTS = reverse("admin:transactions_payout_changelist")
DASHBOARD = reverse("admin:dashboard")
REASON = "Provider outage, ticket 3141"


def found(response) -> set:
    assert response.status_code == 200
    return {obj.pk for obj in response.context["cl"].result_list}


def hold(wallet: Wallet, amount: str) -> Hold:
    return ledger.hold_create(
        wallet=wallet, amount=D(amount), expires_at=timezone.now() + timedelta(hours=2)
    )


def payout(wallet: Wallet, amount: str, destination: str = "KZ86125KZT5004100100"):
    return ledger.payout_create(
        wallet=wallet, amount=D(amount), destination=destination
    )


def created_ago(obj, age: timedelta) -> None:
    """Test data: a row created `age` ago (the services stamp `now`)."""
    type(obj).objects.filter(pk=obj.pk).update(created_at=timezone.now() - age)


def act(client, url: str, action: str, objects, reason: str = REASON):
    """Run an admin action through its reason page, as an operator does."""
    return client.post(
        url,
        {
            "action": action,
            "_selected_action": [str(obj.pk) for obj in objects],
            "apply": "yes",
            "reason": reason,
        },
        follow=True,
    )


def held(wallet: Wallet) -> Decimal:
    wallet.refresh_from_db()
    return wallet.held


def log_messages(obj) -> list[str]:
    return list(
        LogEntry.objects.filter(
            content_type=ContentType.objects.get_for_model(obj), object_id=str(obj.pk)
        ).values_list("change_message", flat=True)
    )


@pytest.fixture
def superuser(db):
    return admin_client(operator())


@pytest.fixture
def finance(db):
    return admin_client(operator(FINANCE, email="fin@ops.example"))


class TestLists:
    @pytest.mark.parametrize("role", [None, SUPPORT, FINANCE])
    def test_holds_filter_by_status_currency_and_age(self, role, make_wallet):
        kzt = make_wallet(currency="KZT", balance="100.00")
        usd = make_wallet(currency="USD", balance="100.00")
        fresh, old, voided = hold(kzt, "10"), hold(usd, "20"), hold(kzt, "5")
        created_ago(old, timedelta(days=2))
        created_ago(voided, timedelta(hours=3))
        ledger.hold_void(hold_id=voided.pk, reason="x", resolved_by=None)
        client = admin_client(operator(role))
        page = client.get(HOLDS)
        assert found(page) == {fresh.pk, old.pk, voided.pk}
        html = page.content.decode()
        for text in ("Last hour", "Last 24 hours", "Older than a day", "USD"):
            assert text in html
        assert found(client.get(HOLDS, {"status__exact": "active"})) == {
            fresh.pk,
            old.pk,
        }
        assert found(client.get(HOLDS, {"currency": "USD"})) == {old.pk}
        assert found(client.get(HOLDS, {"age": "hour"})) == {fresh.pk}
        assert found(client.get(HOLDS, {"age": "day"})) == {fresh.pk, voided.pk}
        assert found(client.get(HOLDS, {"age": "older"})) == {old.pk}

    @pytest.mark.parametrize("role", [None, SUPPORT, FINANCE])
    def test_payouts_filter_by_status_currency_and_age(self, role, make_wallet):
        kzt = make_wallet(currency="KZT", balance="100.00")
        usd = make_wallet(currency="USD", balance="100.00")
        fresh, old = payout(kzt, "10"), payout(usd, "20")
        created_ago(old, timedelta(days=2))
        failed = payout(kzt, "1")
        ledger.payout_decide(payout_id=failed.pk, status="failed", decided_by=None)
        client = admin_client(operator(role))
        assert found(client.get(PAYOUTS)) == {fresh.pk, old.pk, failed.pk}
        assert found(client.get(PAYOUTS, {"status__exact": "failed"})) == {failed.pk}
        assert found(client.get(PAYOUTS, {"currency__exact": "USD"})) == {old.pk}
        assert found(client.get(PAYOUTS, {"age": "hour"})) == {fresh.pk, failed.pk}
        assert found(client.get(PAYOUTS, {"age": "older"})) == {old.pk}

    def test_search_by_wallet_number_payout_id_and_destination(
        self, make_wallet, superuser
    ):
        one, two = make_wallet(balance="50"), make_wallet(balance="50")
        first = payout(one, "10", destination="card_tok_4242")
        second = payout(two, "10", destination="KZ00IBAN0002")
        assert found(superuser.get(PAYOUTS, {"q": one.number})) == {first.pk}
        assert found(superuser.get(PAYOUTS, {"q": str(second.pk)})) == {second.pk}
        assert found(superuser.get(PAYOUTS, {"q": "card_tok_4242"})) == {first.pk}
        assert found(superuser.get(HOLDS, {"q": two.number})) == {second.hold_id}
        assert found(superuser.get(HOLDS, {"q": str(first.pk)})) == {first.hold_id}
        assert found(superuser.get(HOLDS, {"q": str(first.hold_id)})) == {first.hold_id}

    def test_rows_link_to_the_wallet_hold_payout_and_transaction(
        self, wallet, superuser
    ):
        paid = payout(wallet, "30")
        paid = ledger.payout_decide(payout_id=paid.pk, status="paid", decided_by=None)
        wallet_url = reverse("admin:wallets_wallet_change", args=[wallet.pk])
        txn_url = reverse(
            "admin:transactions_transaction_change", args=[paid.transaction_id]
        )
        hold_url = reverse("admin:transactions_hold_change", args=[paid.hold_id])
        payout_url = reverse("admin:transactions_payout_change", args=[paid.pk])
        payouts = superuser.get(PAYOUTS).content.decode()
        for url in (wallet_url, txn_url, hold_url):
            assert url in payouts, url
        holds = superuser.get(HOLDS).content.decode()
        for url in (wallet_url, txn_url, payout_url):
            assert url in holds, url
        detail = superuser.get(payout_url)
        assert detail.status_code == 200
        assert txn_url in detail.content.decode()

    def test_nobody_adds_changes_or_deletes_them(self, wallet, superuser):
        pending = payout(wallet, "10")
        assert superuser.get(reverse("admin:transactions_hold_add")).status_code == 403
        assert (
            superuser.get(reverse("admin:transactions_payout_add")).status_code == 403
        )
        change = reverse("admin:transactions_payout_change", args=[pending.pk])
        page = superuser.get(change).content.decode()
        assert 'name="_save"' not in page
        delete = reverse("admin:transactions_payout_delete", args=[pending.pk])
        assert superuser.post(delete, {"post": "yes"}).status_code == 403
        superuser.post(change, {"destination": "elsewhere"})
        pending.refresh_from_db()
        assert pending.destination == "KZ86125KZT5004100100"

    def test_what_users_type_is_shown_as_text(self, wallet, superuser):
        xss = "<script>alert(1)</script>"
        mine = ledger.payout_create(
            wallet=wallet, amount=D("5"), destination=xss, description=xss
        )
        for url in (
            PAYOUTS,
            reverse("admin:transactions_payout_change", args=[mine.pk]),
        ):
            html = superuser.get(url).content.decode()
            assert "<script>alert" not in html, url
            assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html, url


class TestVoidHold:
    def test_void_releases_the_hold_and_logs_the_reason(self, wallet, finance):
        reserved = hold(wallet, "300.00")
        assert held(wallet) == D("300.00")
        response = act(finance, HOLDS, "void_holds", [reserved])
        assert response.status_code == 200
        assert "voided: the money is available" in response.content.decode()
        reserved.refresh_from_db()
        assert reserved.status == Hold.Status.VOIDED
        assert reserved.reason == REASON
        assert held(wallet) == D("0.00")
        assert wallet.available_balance == D("1000.00")
        assert log_messages(reserved) == [
            f"Voided hold of 300.00 KZT. Reason: {REASON}"
        ]
        assert LogEntry.objects.get().user.email == "fin@ops.example"
        assert ledger_reconcile().clean

    def test_the_action_asks_for_a_reason_first(self, wallet, finance):
        reserved = hold(wallet, "10.00")
        page = act(finance, HOLDS, "void_holds", [reserved], reason="   ")
        assert "This field is required." in page.content.decode()
        reserved.refresh_from_db()
        assert reserved.status == Hold.Status.ACTIVE
        assert held(wallet) == D("10.00")
        assert not LogEntry.objects.exists()

    def test_a_payouts_hold_is_refused_fail_the_payout_instead(self, wallet, finance):
        pending = payout(wallet, "200.00")
        response = act(finance, HOLDS, "void_holds", [pending.hold])
        html = response.content.decode()
        assert "This hold belongs to a payout: fail or cancel the payout instead." in (
            html
        )
        assert wallet.number in html
        pending.refresh_from_db()
        assert pending.status == Payout.Status.PENDING
        assert pending.hold.status == Hold.Status.ACTIVE
        assert held(wallet) == D("200.00")
        assert not LogEntry.objects.exists()

    def test_voiding_again_shows_an_error_and_changes_nothing(self, wallet, finance):
        reserved = hold(wallet, "10.00")
        act(finance, HOLDS, "void_holds", [reserved], reason="first")
        again = act(finance, HOLDS, "void_holds", [reserved], reason="second")
        assert again.status_code == 200
        assert "This hold is no longer active: voided." in again.content.decode()
        reserved.refresh_from_db()
        assert reserved.reason == "first"
        assert held(wallet) == D("0.00")
        assert log_messages(reserved) == ["Voided hold of 10.00 KZT. Reason: first"]

    def test_one_refusal_does_not_stop_the_others(self, make_wallet, finance):
        one, two = make_wallet(balance="50"), make_wallet(balance="50")
        free, of_payout = hold(one, "20"), payout(two, "20").hold
        response = act(finance, HOLDS, "void_holds", [free, of_payout])
        html = response.content.decode()
        assert "voided: the money is available" in html
        assert "fail or cancel the payout instead" in html
        assert (held(one), held(two)) == (D("0.00"), D("20.00"))

    def test_support_may_look_but_not_void(self, wallet):
        reserved = hold(wallet, "10.00")
        support = admin_client(operator(SUPPORT))
        page = support.get(HOLDS)
        assert "void_holds" not in page.content.decode()
        act(support, HOLDS, "void_holds", [reserved])
        reserved.refresh_from_db()
        assert reserved.status == Hold.Status.ACTIVE
        assert held(wallet) == D("10.00")


class TestFailPayout:
    def test_fail_releases_the_hold_and_keeps_the_reason(self, wallet, finance):
        pending = payout(wallet, "250.00")
        assert held(wallet) == D("250.00")
        response = act(finance, PAYOUTS, "fail_payouts", [pending])
        assert response.status_code == 200
        assert "failed." in response.content.decode()
        pending.refresh_from_db()
        assert pending.status == Payout.Status.FAILED
        assert pending.failure_reason == REASON
        assert pending.decided_by.email == "fin@ops.example"
        assert pending.hold.status == Hold.Status.VOIDED
        wallet.refresh_from_db()
        assert (wallet.held, wallet.balance.amount) == (D("0.00"), D("1000.00"))
        assert log_messages(pending) == [
            f"Failed payout of {pending.amount} to KZ86125KZT5004100100. "
            f"Reason: {REASON}"
        ]
        assert ledger_reconcile().clean

    def test_failing_again_shows_an_error_and_changes_nothing(self, wallet, finance):
        pending = payout(wallet, "10.00")
        act(finance, PAYOUTS, "fail_payouts", [pending], reason="first")
        pending.refresh_from_db()
        decided_at = pending.decided_at
        again = act(finance, PAYOUTS, "fail_payouts", [pending], reason="second")
        assert again.status_code == 200
        assert "This payout has already been decided: failed." in (
            again.content.decode()
        )
        pending.refresh_from_db()
        assert (pending.failure_reason, pending.decided_at) == ("first", decided_at)
        assert len(log_messages(pending)) == 1

    def test_a_paid_payout_cannot_be_failed(self, wallet, finance):
        paid = payout(wallet, "100.00")
        ledger.payout_decide(payout_id=paid.pk, status="paid", decided_by=None)
        response = act(finance, PAYOUTS, "fail_payouts", [paid])
        assert "This payout has already been decided: paid." in (
            response.content.decode()
        )
        paid.refresh_from_db()
        wallet.refresh_from_db()
        assert paid.status == Payout.Status.PAID
        assert wallet.balance.amount == D("900.00")
        assert not LogEntry.objects.exists()

    def test_a_stale_payout_expires_instead(self, wallet, finance):
        stale = payout(wallet, "100.00")
        Payout.objects.filter(pk=stale.pk).update(
            expires_at=timezone.now() - timedelta(seconds=1)
        )
        response = act(finance, PAYOUTS, "fail_payouts", [stale])
        assert response.status_code == 200
        assert "This payout has expired and can no longer be decided." in (
            response.content.decode()
        )
        stale.refresh_from_db()
        assert stale.status == Payout.Status.EXPIRED
        assert held(wallet) == D("0.00")
        assert not LogEntry.objects.exists()

    def test_support_may_look_but_not_fail(self, wallet):
        pending = payout(wallet, "10.00")
        support = admin_client(operator(SUPPORT))
        assert "fail_payouts" not in support.get(PAYOUTS).content.decode()
        act(support, PAYOUTS, "fail_payouts", [pending])
        pending.refresh_from_db()
        assert pending.status == Payout.Status.PENDING


def test_the_wallet_shows_held_and_available_balance(wallet, superuser):
    hold(wallet, "123.45")
    listing = superuser.get(reverse("admin:wallets_wallet_changelist")).content
    detail = superuser.get(reverse("admin:wallets_wallet_change", args=[wallet.pk]))
    for html in (listing.decode(), detail.content.decode()):
        assert "123.45 KZT" in html
        assert "876.55 KZT" in html
        assert "available balance" in html.lower()
    assert 'name="held"' not in detail.content.decode()


def test_the_dashboard_shows_money_held_and_pending_payouts_per_currency(
    make_wallet,
):
    kzt = make_wallet(currency="KZT", balance="1000.00")
    usd = make_wallet(currency="USD", balance="100.00")
    hold(kzt, "100.00")
    payout(kzt, "250.50")
    payout(usd, "10.00")
    voided = hold(usd, "5.00")
    ledger.hold_void(hold_id=voided.pk, reason="x", resolved_by=None)
    response = admin_client(operator(SUPPORT)).get(DASHBOARD)
    assert response.status_code == 200
    rows = {row["currency"]: row for row in response.context["held"]}
    assert rows["KZT"] == {
        "currency": "KZT",
        "held": D("350.50"),
        "holds": 2,
        "pending_payouts": 1,
    }
    assert (rows["USD"]["held"], rows["USD"]["holds"]) == (D("10.00"), 1)
    assert (rows["EUR"]["held"], rows["EUR"]["holds"]) == (D("0"), 0)
    assert response.context["pending_payouts"] == 2
    html = response.content.decode()
    section = html.split('id="held"')[1].split("</table>")[0]
    assert "350.50" in section
    assert f"{PAYOUTS}?status__exact=pending" in html
    client = admin_client(operator(SUPPORT))
    kzt_links = re.findall(r'href="([^"]*currency(?:__exact)?=KZT)"', section)
    assert [len(found(client.get(unescape(url)))) for url in kzt_links] == [2, 1]
