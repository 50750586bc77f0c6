"""The ledger in the back-office: read-only for everyone, searchable, and the
two-person adjustment confirmation page."""

from decimal import Decimal

import pytest
from django.contrib.admin.models import LogEntry
from django.urls import reverse

from accounts.tests.operators import FINANCE, SUPPORT, admin_client, operator
from transactions import ledger
from transactions.models import Transaction
from transactions.selectors import ledger_reconcile
from wallets.models import Wallet

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:transactions_transaction_changelist")


def found(response) -> set:
    assert response.status_code == 200
    return {txn.pk for txn in response.context["cl"].result_list}


def review_url(txn) -> str:
    return reverse("admin:transactions_transaction_review", args=[txn.pk])


@pytest.fixture
def superuser(db):
    return admin_client(operator())


class TestLedgerScreens:
    def test_search_by_transaction_id_wallet_number_and_wallet_id(
        self, make_wallet, superuser
    ):
        one, two = make_wallet(), make_wallet()
        deposit_one = ledger.wallet_deposit(wallet=one, amount=Decimal("5")).transaction
        deposit_two = ledger.wallet_deposit(wallet=two, amount=Decimal("7")).transaction
        assert found(superuser.get(CHANGELIST, {"q": str(deposit_two.pk)})) == {
            deposit_two.pk
        }
        assert found(superuser.get(CHANGELIST, {"q": one.number})) == {deposit_one.pk}
        assert found(superuser.get(CHANGELIST, {"q": str(two.pk)})) == {deposit_two.pk}
        assert found(superuser.get(CHANGELIST, {"q": "0000000000000000"})) == set()

    def test_filters_by_kind_status_date_wallet_and_owner(self, make_wallet, superuser):
        wallet = make_wallet(balance="10")
        withdrawal = ledger.wallet_withdraw(wallet=wallet, amount=Decimal("3"))
        make_wallet(balance="20")
        assert found(superuser.get(CHANGELIST, {"kind__exact": "withdrawal"})) == {
            withdrawal.transaction.pk
        }
        assert len(found(superuser.get(CHANGELIST, {"status__exact": "posted"}))) == 3
        today = superuser.get(
            CHANGELIST,
            {
                "created_at__gte": withdrawal.transaction.created_at.replace(
                    hour=0, minute=0, second=0, microsecond=0
                ).isoformat()
            },
        )
        assert len(found(today)) == 3
        by_wallet = found(superuser.get(CHANGELIST, {"wallet": str(wallet.pk)}))
        by_owner = found(superuser.get(CHANGELIST, {"owner": str(wallet.owner_id)}))
        assert by_wallet == by_owner
        assert len(by_wallet) == 2
        assert found(superuser.get(CHANGELIST, {"wallet": "not-a-uuid"})) == set()
        unknown = "00000000-0000-0000-0000-000000000000"
        assert found(superuser.get(CHANGELIST, {"owner": unknown})) == set()

    def test_a_transaction_shows_its_entries_read_only(self, wallet, superuser):
        txn = wallet.entries.get().transaction
        page = superuser.get(
            reverse("admin:transactions_transaction_change", args=[txn.pk])
        )
        assert page.status_code == 200
        html = page.content.decode()
        assert "1000.00" in html or "1,000.00" in html
        assert wallet.number in html
        assert 'name="entries-0-amount_0"' not in html
        assert 'name="_save"' not in html

    def test_nobody_adds_changes_or_deletes_transactions(self, wallet):
        txn = wallet.entries.get().transaction
        client = admin_client(operator())  # a superuser
        assert (
            client.get(reverse("admin:transactions_transaction_add")).status_code == 403
        )
        change = reverse("admin:transactions_transaction_change", args=[txn.pk])
        client.post(change, {"description": "edited", "kind": "fee"})
        delete = reverse("admin:transactions_transaction_delete", args=[txn.pk])
        assert client.post(delete, {"post": "yes"}).status_code == 403
        txn.refresh_from_db()
        assert (txn.kind, txn.description) == ("deposit", "")
        response = client.get(CHANGELIST)
        assert (
            response.context["cl"].model_admin.get_actions(response.wsgi_request) == {}
        )


class TestAdjustmentReview:
    def request(self, wallet, amount="50.00") -> tuple[Transaction, object]:
        alice = operator(FINANCE, email="alice@ops.example")
        client = admin_client(alice)
        client.post(
            reverse("admin:wallets_wallet_adjust", args=[wallet.pk]),
            {"amount": amount, "reason": "goodwill credit, ticket 7"},
        )
        return Transaction.objects.get(kind="adjustment"), client

    def test_a_second_finance_operator_confirms_and_it_posts(self, wallet):
        txn, _alice = self.request(wallet)
        bob = admin_client(operator(FINANCE, email="bob@ops.example"))
        page = bob.get(review_url(txn)).content.decode()
        assert "goodwill credit, ticket 7" in page
        assert "1,050.00" in page, "the balance after confirmation is shown"
        assert 'id="approve-button"' in page
        response = bob.post(review_url(txn), {"decision": "approve"})
        assert response.status_code == 302
        txn.refresh_from_db()
        wallet.refresh_from_db()
        assert txn.status == Transaction.Status.POSTED
        assert wallet.balance.amount == Decimal("1050.00")
        assert ledger_reconcile().clean
        approvals = LogEntry.objects.filter(change_message__startswith="Approved")
        assert {entry.user.email for entry in approvals} == {"bob@ops.example"}
        assert {entry.object_id for entry in approvals} == {str(txn.pk), str(wallet.pk)}

    def test_the_requester_cannot_confirm_but_may_withdraw(self, wallet):
        txn, alice = self.request(wallet)
        page = alice.get(review_url(txn)).content.decode()
        assert 'id="approve-button"' not in page
        assert "a different operator must confirm it" in page
        response = alice.post(review_url(txn), {"decision": "approve"}, follow=True)
        assert "An adjustment must be confirmed by a different operator." in (
            response.content.decode()
        )
        txn.refresh_from_db()
        assert txn.status == Transaction.Status.PENDING
        alice.post(review_url(txn), {"decision": "reject", "note": "typo"})
        txn.refresh_from_db()
        wallet.refresh_from_db()
        assert txn.status == Transaction.Status.REJECTED
        assert wallet.balance.amount == Decimal("1000.00")
        assert LogEntry.objects.filter(
            change_message__contains="Rejected adjustment +50.00 KZT"
        ).exists()

    def test_support_sees_the_request_but_cannot_decide_it(self, wallet):
        txn, _alice = self.request(wallet)
        support = admin_client(operator(SUPPORT))
        page = support.get(review_url(txn))
        assert page.status_code == 200
        assert 'id="decision-form"' not in page.content.decode()
        assert support.post(review_url(txn), {"decision": "approve"}).status_code == 403
        txn.refresh_from_db()
        assert txn.status == Transaction.Status.PENDING

    def test_a_pending_adjustment_links_to_its_review(self, wallet, superuser):
        txn, _alice = self.request(wallet)
        page = superuser.get(
            reverse("admin:transactions_transaction_change", args=[txn.pk])
        )
        assert review_url(txn) in page.content.decode()
        pending = found(
            superuser.get(
                CHANGELIST, {"kind__exact": "adjustment", "status__exact": "pending"}
            )
        )
        assert pending == {txn.pk}

    def test_only_adjustments_have_a_review_page(self, wallet, superuser):
        deposit = wallet.entries.get().transaction
        assert superuser.get(review_url(deposit)).status_code == 404


def test_system_wallet_pages_show_the_sum_of_entries(wallet, superuser):
    external = Wallet.objects.get(kind="system", system_code="external", currency="KZT")
    page = superuser.get(reverse("admin:wallets_wallet_change", args=[external.pk]))
    assert "-1,000.00 KZT" in page.content.decode()


XSS = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def test_wallet_names_and_descriptions_are_escaped_on_every_admin_page(
    user, make_wallet, superuser
):
    """What users and operators type (a wallet's name, a transfer's description,
    an adjustment's reason) is shown as text, never run as HTML."""
    from wallets.services import wallet_update

    source = make_wallet(owner=user, balance="100.00")
    wallet_update(wallet=source, name=XSS)
    destination = make_wallet()
    transfer = ledger.transfer_create(
        source=source,
        destination_number=destination.number,
        amount=Decimal("1.00"),
        description=XSS,
    ).transaction
    adjustment = ledger.adjustment_request(
        wallet=source, amount=Decimal("1"), reason=XSS, requested_by=operator()
    )
    pages = [
        CHANGELIST,
        reverse("admin:transactions_transaction_change", args=[transfer.pk]),
        reverse("admin:transactions_transaction_change", args=[adjustment.pk]),
        review_url(adjustment),
        reverse("admin:wallets_wallet_changelist"),
        reverse("admin:wallets_wallet_change", args=[source.pk]),
        reverse("admin:dashboard"),
    ]
    escaped = "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;"
    for url in pages:
        response = superuser.get(url)
        assert response.status_code == 200, url
        html = response.content.decode()
        assert "<script>alert" not in html, url
        assert "<img src=x" not in html, url
    for url in pages[:4] + pages[5:6]:
        assert escaped in superuser.get(url).content.decode(), url
