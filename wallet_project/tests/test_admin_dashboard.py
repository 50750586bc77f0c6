"""The back-office dashboard: aggregate figures and a server-rendered chart."""

import re
from decimal import Decimal

import pytest
from django.urls import reverse

from accounts.tests.operators import SUPPORT, admin_client, operator
from transactions import ledger
from wallets.services import wallet_block

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
