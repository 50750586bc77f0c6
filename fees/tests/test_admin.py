"""Fee charges in the back-office: read-only, debts waived with a reason."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.conf import settings
from django.contrib.admin.models import LogEntry
from django.urls import reverse
from django.utils import timezone

from accounts.tests.operators import FINANCE, SUPPORT, admin_client, operator
from fees.models import FeeCharge
from fees.services import fee_charge_due

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:fees_feecharge_changelist")


@pytest.fixture
def charges(make_wallet):
    """A paid fee (the wallet could pay) and a debt (it could not, and is blocked)."""
    payer = make_wallet(balance="500.00")
    debtor = make_wallet(balance="0")
    fee_charge_due(as_of=timezone.now() + settings.FEE_PERIOD + timedelta(days=1))
    return FeeCharge.objects.get(wallet=payer), FeeCharge.objects.get(wallet=debtor)


def waive(client, charge, reason="goodwill, ticket 5"):
    return client.post(
        CHANGELIST,
        {
            "action": "waive",
            "_selected_action": [str(charge.pk)],
            "apply": "yes",
            "reason": reason,
        },
        follow=True,
    )


def test_finance_waives_a_debt_and_the_wallet_is_unblocked(charges):
    _paid, debt = charges
    assert debt.status == FeeCharge.Status.DEBT
    assert debt.wallet.status == "blocked"
    finance = operator(FINANCE)
    response = waive(admin_client(finance), debt)
    assert "waived" in response.content.decode()
    debt.refresh_from_db()
    assert debt.status == FeeCharge.Status.WAIVED
    assert debt.waived_by == finance
    assert debt.waived_reason == "goodwill, ticket 5"
    debt.wallet.refresh_from_db()
    assert debt.wallet.status == "active"
    log = LogEntry.objects.get(object_id=str(debt.pk))
    assert log.change_message.endswith("Reason: goodwill, ticket 5")


def test_a_paid_fee_cannot_be_waived(charges):
    paid, _debt = charges
    response = waive(admin_client(operator(FINANCE)), paid)
    assert "Only an outstanding fee debt can be waived." in response.content.decode()
    paid.refresh_from_db()
    assert paid.status == FeeCharge.Status.PAID
    assert not LogEntry.objects.exists()


def test_support_sees_charges_but_cannot_waive(charges):
    _paid, debt = charges
    support = admin_client(operator(SUPPORT))
    listed = support.get(CHANGELIST, {"status__exact": "debt"})
    assert [c.pk for c in listed.context["cl"].result_list] == [debt.pk]
    waive(support, debt)
    debt.refresh_from_db()
    assert debt.status == FeeCharge.Status.DEBT


def test_the_dashboard_counts_fees_collected_this_month(charges):
    paid, _debt = charges
    response = admin_client(operator()).get(reverse("admin:dashboard"))
    totals = {row["currency"]: row for row in response.context["totals"]}
    assert totals["KZT"]["fees_this_month"] == paid.amount.amount == Decimal("200.00")
    assert response.context["last_fee_charge"] is not None
