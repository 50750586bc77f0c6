"""The back-office dashboard: aggregate figures and a server-rendered chart."""

import re
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from accounts.tests.operators import FINANCE, SUPPORT, admin_client, operator
from transactions import ledger
from transactions.ledger import wallet_block

pytestmark = pytest.mark.django_db

DASHBOARD = reverse("admin:dashboard")


def test_shows_totals_per_currency_and_blocked_wallets(make_wallet):
    make_wallet(currency="KZT", balance="1000.00")
    blocked = make_wallet(currency="KZT", balance="250.50")
    make_wallet(currency="USD", balance="12.34")
    wallet_block(wallet=blocked, reason="test")
    response = admin_client(operator(SUPPORT)).get(DASHBOARD)
    assert response.status_code == 200
    totals = {row["currency"]: row for row in response.context["totals"]}
    assert totals["KZT"]["balance"] == Decimal("1250.50")
    assert totals["KZT"]["wallets"] == 2
    assert totals["KZT"]["blocked"] == 1
    assert totals["USD"]["balance"] == Decimal("12.34")
    assert totals["EUR"]["balance"] == Decimal("0")
    assert response.context["blocked_wallets"] == 1
    html = response.content.decode()
    assert "1,250.50" in html


def test_chart_draws_one_bar_per_day_scaled_to_the_busiest_day(make_wallet):
    wallet = make_wallet(currency="KZT", balance="300.00")
    ledger.wallet_withdraw(wallet=wallet, amount=Decimal("100.00"))
    html = admin_client(operator()).get(DASHBOARD).content.decode()
    kzt = html.split('id="chart-KZT"')[1].split("</svg>")[0]
    assert kzt.count("<rect") == 30
    heights = [float(h) for h in re.findall(r'class="bar"[^>]*height="([\d.]+)"', kzt)]
    assert heights[-1] == max(heights) > 0, "today is the only (and busiest) day"
    assert sum(1 for h in heights if h > 0) == 1
    assert "400.00 KZT (2)" in kzt, "today's tooltip: volume and transaction count"
    assert "<script" not in html.split('id="volume"')[1]


def test_pending_adjustments_are_counted(wallet):
    ledger.adjustment_request(
        wallet=wallet, amount=Decimal("1"), reason="x", requested_by=operator()
    )
    response = admin_client(operator()).get(DASHBOARD)
    assert response.context["pending_adjustments"] == 1


def test_query_count_does_not_grow_with_the_data(
    make_wallet, django_assert_max_num_queries
):
    """Aggregates only: ten times the wallets and transactions, same queries."""
    client = admin_client(operator())
    make_wallet(balance="10")
    with django_assert_max_num_queries(1000) as few:
        client.get(DASHBOARD)
    for currency in ("KZT", "USD", "EUR"):
        for _ in range(4):
            make_wallet(currency=currency, balance="10")
    with django_assert_max_num_queries(1000) as many:
        client.get(DASHBOARD)
    assert len(many.captured_queries) == len(few.captured_queries)


def test_needs_a_staff_login(client, user):
    response = client.get(DASHBOARD)
    assert response.status_code == 302
    assert reverse("admin:login") in response["Location"]
    client.force_login(user)  # not staff
    assert client.get(DASHBOARD).status_code == 302


def test_every_admin_page_links_to_the_dashboard():
    html = admin_client(operator(SUPPORT)).get(reverse("admin:index")).content.decode()
    assert f'href="{DASHBOARD}"' in html


def test_a_staff_user_without_a_role_gets_a_403_and_no_figures(make_wallet):
    """Staff in no group see "no permission" on every model page: the dashboard's
    balances, fees, blocked wallets, top-ups and volume are no different."""
    make_wallet(currency="KZT", balance="987654.32")
    client = admin_client(operator(role=None, is_superuser=False))
    response = client.get(DASHBOARD)
    assert response.status_code == 403
    html = response.content.decode()
    assert "987" not in html
    assert 'id="totals"' not in html and 'id="volume"' not in html
    index = client.get(reverse("admin:index"))
    assert index.status_code == 200
    assert f'href="{DASHBOARD}"' not in index.content.decode()


@pytest.mark.parametrize("role", [SUPPORT, FINANCE])
def test_support_and_finance_see_the_dashboard(role):
    response = admin_client(operator(role)).get(DASHBOARD)
    assert response.status_code == 200
    assert 'id="totals"' in response.content.decode()


def test_the_view_permission_alone_opens_it(make_wallet):
    """The dashboard is its own permission (`wallets.view_dashboard`), which the
    support group has; it can be granted to anyone else."""
    user = operator(role=None, is_superuser=False)
    user.user_permissions.add(
        Permission.objects.get(
            content_type__app_label="wallets", codename="view_dashboard"
        )
    )
    assert admin_client(user).get(DASHBOARD).status_code == 200


def test_the_house_fx_position_after_an_exchange(user, make_wallet, rates):
    """The fx and fees system wallets per currency (the sum of their entries) and
    their total: 1000 KZT -> USD at 0.002 less 0.5% books KZT fx +1000.00,
    USD fx -2.00 and USD fees +0.01 (the spread): the house is long 1000 KZT and
    short 1.99 USD."""
    kzt = make_wallet(owner=user, currency="KZT", balance="5000.00")
    usd = make_wallet(owner=user, currency="USD")
    ledger.transfer_create(
        source=kzt, destination_number=usd.number, amount=Decimal("1000.00")
    )
    response = admin_client(operator(SUPPORT)).get(DASHBOARD)
    position = {row["currency"]: row for row in response.context["fx_position"]}
    assert position["KZT"] == {
        "currency": "KZT",
        "fx": Decimal("1000.00"),
        "fees": Decimal("0.00"),
        "total": Decimal("1000.00"),
    }
    assert position["USD"] == {
        "currency": "USD",
        "fx": Decimal("-2.00"),
        "fees": Decimal("0.01"),
        "total": Decimal("-1.99"),
    }
    assert position["EUR"]["total"] == Decimal("0")
    html = response.content.decode()
    section = html.split('id="fx-position"')[1].split("</table>")[0]
    rows = re.findall(r"<tr>(.*?)</tr>", section, re.S)
    cells = [re.findall(r"<t[hd][^>]*>([^<]*)</t[hd]>", row) for row in rows]
    assert ["KZT", "1,000.00", "0.00", "1,000.00"] in cells
    assert ["USD", "-2.00", "0.01", "-1.99"] in cells
