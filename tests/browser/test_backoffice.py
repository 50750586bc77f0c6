"""An operator runs the back-office in a real browser."""

from decimal import Decimal

import pytest
from playwright.sync_api import expect
from rest_framework_simplejwt.tokens import RefreshToken

from accounts.tests.factories import PASSWORD
from accounts.tests.operators import FINANCE, operator, totp_code, totp_device
from transactions.models import TopUp, Transaction
from wallets.models import Wallet

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def login(page, user) -> None:
    """The password, then the code the operator's authenticator app shows."""
    device = totp_device(user)
    page.goto("/admin/")
    page.fill("#id_username", user.email)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_selector("#second-factor-form")
    page.fill("#id_code", totp_code(device))
    page.click("#second-factor-form input[type=submit]")
    page.wait_for_selector("#user-tools")


def bearer(user) -> dict:
    return {"Authorization": f"Bearer {RefreshToken.for_user(user).access_token}"}


def test_operator_blocks_unblocks_approves_a_topup_and_opens_the_dashboard(
    page, shot, make_wallet
):
    ops = operator(email="ops@wallet.test")
    wallet = make_wallet(currency="KZT", balance="1000.00")
    owner = wallet.owner
    operation = f"/api/v1/wallets/{wallet.pk}/operation"
    withdraw = {"operation_type": "WITHDRAW", "amount": "100.00"}

    page.goto("/admin/")
    shot("01-login")
    assert page.locator("link[href*='admin/css/base.css']").count() == 1
    login(page, ops)
    shot("02-index")
    header = page.evaluate(
        "getComputedStyle(document.querySelector('#header')).display"
    )
    assert header == "flex", "the admin's CSS is served and applied"

    # Find the wallet by its number and open it.
    page.click("a[href='/admin/wallets/wallet/']")
    page.fill("#searchbar", wallet.number)
    page.press("#searchbar", "Enter")
    results = page.locator("#result_list tbody tr")
    # expect() waits for the result page; count() would read a page still loading.
    expect(results).to_have_count(1)
    shot("03-wallet-search")
    results.first.locator("th a").click()
    assert "1,000.00 KZT" in page.inner_text("#content")
    shot("04-wallet")

    # Block it, with a reason.
    page.click("#block-link")
    page.fill("#id_reason", "Suspicious card activity, ticket 1042")
    shot("05-block-form")
    page.click("#submit")
    page.wait_for_selector(".messagelist .success")
    assert "Suspicious card activity" in page.inner_text("#content")
    shot("06-wallet-blocked")
    assert Wallet.objects.get(pk=wallet.pk).status == "blocked"

    # The owner's WITHDRAW through the API is now refused.
    refused = page.request.post(operation, data=withdraw, headers=bearer(owner))
    assert refused.status == 409
    assert refused.json()["code"] == "wallet_blocked"

    # Unblock: the same WITHDRAW goes through.
    page.click("#unblock-button")
    page.wait_for_selector(".messagelist .success")
    expect(page.locator("#block-link")).to_have_count(1)
    shot("07-wallet-unblocked")
    allowed = page.request.post(operation, data=withdraw, headers=bearer(owner))
    assert allowed.status == 201, allowed.text()
    assert allowed.json()["new_balance"] == "900.00"

    # A top-up the provider never confirmed: the operator approves it.
    created = page.request.post(
        f"/api/v1/wallets/{wallet.pk}/topups/",
        data={"amount": "250.00"},
        headers=bearer(owner),
    )
    assert created.status == 201, created.text()
    page.goto("/admin/transactions/topup/?status__exact=pending")
    page.locator("#result_list input.action-select").first.check()
    page.select_option("select[name=action]", "approve_topups")
    page.click("button[name=index]")
    page.fill("#id_reason", "Provider confirmed by phone, ref 77-A")
    shot("08-topup-approve")
    page.click("input[name=_confirm]")
    page.wait_for_selector(".messagelist .success")
    shot("09-topups")
    topup = TopUp.objects.get()
    assert topup.status == TopUp.Status.PAID
    assert topup.decided_by == ops
    wallet.refresh_from_db()
    assert wallet.balance.amount == Decimal("1150.00") - topup.commission

    # The dashboard.
    page.click("#dashboard-link")
    page.wait_for_selector("#chart-KZT svg")
    expect(page.locator("#chart-KZT rect.bar")).to_have_count(30)
    assert page.inner_text("#card-blocked .value") == "0"
    assert page.inner_text("#card-topups .value") == "0"
    shot("10-dashboard")


def test_two_operators_confirm_an_adjustment(page, shot, make_wallet):
    alice = operator(FINANCE, email="alice@wallet.test")
    bob = operator(FINANCE, email="bob@wallet.test")
    wallet = make_wallet(currency="USD", balance="40.00")

    login(page, alice)
    page.goto(f"/admin/wallets/wallet/{wallet.pk}/change/")
    page.click("#adjust-link")
    page.fill("#id_amount", "-15.00")
    page.fill("#id_reason", "Duplicate deposit, ticket 88")
    shot("11-adjust-form")
    page.click("#submit")
    page.wait_for_selector("#own-request")
    assert page.locator("#approve-button").count() == 0
    shot("12-adjust-awaiting")

    page.context.clear_cookies()
    login(page, bob)
    page.goto(
        "/admin/transactions/transaction/?kind__exact=adjustment&status__exact=pending"
    )
    page.locator("#result_list tbody tr th a").first.click()
    page.click("#review-link")
    shot("13-adjust-review")
    page.click("#approve-button")
    page.wait_for_selector(".messagelist .success")
    assert page.inner_text("#adjustment-status") == "posted"
    shot("14-adjust-posted")
    wallet.refresh_from_db()
    assert wallet.balance.amount == Decimal("25.00")
    assert Transaction.objects.get(kind="adjustment").status == "posted"
