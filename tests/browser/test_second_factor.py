"""An operator's second factor in a real browser: the first login enrols an
authenticator app from the QR page (its key read off the page, the code computed
as the app would, with pyotp), the recovery codes are shown once, and a later
login gets in with one of them. Also: the docs pages still run under the
Content-Security-Policy. Screenshots: var/screenshots/ (and WT21_SHOTS, if set)."""

import os
import shutil
from pathlib import Path

import pyotp
import pytest
from django.contrib.admin.models import LogEntry
from django_otp.plugins.otp_static.models import StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice
from playwright.sync_api import expect

from accounts.tests.factories import PASSWORD
from accounts.tests.operators import FINANCE, operator

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def snap(shot):
    """shot(), copied to $WT21_SHOTS too when set (a reviewer's folder)."""
    extra = os.environ.get("WT21_SHOTS")

    def take(name: str) -> Path:
        path = shot(name)
        if extra:
            Path(extra).mkdir(parents=True, exist_ok=True)
            shutil.copy(path, Path(extra) / path.name)
        return path

    return take


def password_step(page, email: str) -> None:
    page.goto("/admin/wallets/wallet/")
    page.fill("#id_username", email)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")


def test_first_login_enrols_and_a_recovery_code_logs_in_later(page, snap):
    ops = operator(FINANCE, email="newbie@wallet.test")

    password_step(page, ops.email)
    # No device yet: the code page sends the operator to the enrolment.
    page.wait_for_selector("#totp-qr svg")
    assert "/admin/second-factor/setup/" in page.url
    assert page.locator("#user-tools").count() == 0
    snap("20-second-factor-setup")
    secret = page.get_attribute("#totp-secret", "data-secret")
    shown = page.inner_text("#totp-secret").replace(" ", "")
    assert secret == shown and len(secret) >= 32
    app = pyotp.TOTP(secret)

    # A wrong code first: refused, counted, the page stays.
    page.fill("#id_code", f"{(int(app.now()) + 1) % 1_000_000:06d}")
    page.click("#second-factor-form input[type=submit]")
    expect(page.locator(".errorlist")).to_contain_text("Wrong code")
    snap("21-second-factor-setup-wrong-code")

    page.fill("#id_code", app.now())
    page.click("#second-factor-form input[type=submit]")
    page.wait_for_selector("#recovery-codes")
    codes = [c.strip() for c in page.locator("#recovery-codes code").all_inner_texts()]
    assert len(codes) == 10 and len(set(codes)) == 10
    snap("22-second-factor-recovery-codes")
    device = TOTPDevice.objects.get(user=ops)
    assert device.confirmed
    assert set(
        StaticToken.objects.filter(device__user=ops).values_list("token", flat=True)
    ) == set(codes)

    page.click("#continue-link")
    page.wait_for_selector("#user-tools")
    assert page.url.endswith("/admin/wallets/wallet/")  # where the operator was going

    # The codes are never shown again: the enrolment page now sends to the index.
    page.goto("/admin/second-factor/setup/")
    page.wait_for_selector("#user-tools")
    assert page.locator("#recovery-codes").count() == 0

    # Log out; the next login asks for a code after the password.
    page.click("#logout-form button")
    page.wait_for_load_state()
    password_step(page, ops.email)
    page.wait_for_selector("#second-factor-form")
    assert "/admin/second-factor/" in page.url
    assert page.locator("#totp-qr").count() == 0
    snap("23-second-factor-verify")

    page.fill("#id_code", codes[3])
    page.click("#second-factor-form input[type=submit]")
    page.wait_for_selector("#user-tools")
    assert not StaticToken.objects.filter(token=codes[3]).exists()  # used up
    messages = list(
        LogEntry.objects.filter(object_id=str(ops.pk))
        .order_by("action_time", "id")
        .values_list("change_message", flat=True)
    )
    assert messages == [
        "Second factor (enrolment): wrong code (1 of 5).",
        "Second factor enrolled: an authenticator app, and 10 recovery codes issued.",
        "Logged in to the back-office: password and a recovery code (9 left).",
    ]

    # A used recovery code does not open a second session.
    page.context.clear_cookies()
    password_step(page, ops.email)
    page.fill("#id_code", codes[3])
    page.click("#second-factor-form input[type=submit]")
    expect(page.locator(".errorlist")).to_contain_text("Wrong code")
    assert page.locator("#user-tools").count() == 0


def test_the_pages_in_russian(browser_page_ru, snap):
    page = browser_page_ru
    ops = operator(FINANCE, email="ru@wallet.test")
    password_step(page, ops.email)
    page.wait_for_selector("#totp-qr svg")
    assert "Настройка второго фактора" in page.inner_text("#content")
    snap("24-second-factor-setup-ru")
    app = pyotp.TOTP(page.get_attribute("#totp-secret", "data-secret"))
    page.fill("#id_code", app.now())
    page.click("#second-factor-form input[type=submit]")
    page.wait_for_selector("#recovery-codes")
    snap("25-second-factor-recovery-codes-ru")
    page.click("#second-factor-logout button")
    page.wait_for_load_state()
    password_step(page, ops.email)
    page.wait_for_selector("#second-factor-form")
    page.fill("#id_code", "000000" if app.now() != "000000" else "111111")
    page.click("#second-factor-form input[type=submit]")
    expect(page.locator(".errorlist")).to_contain_text("Неверный код")
    snap("26-second-factor-verify-ru")


@pytest.mark.parametrize(
    ("url", "ready"),
    [("/api/docs/", ".swagger-ui .opblock"), ("/api/redoc/", "[role=search]")],
)
def test_the_docs_pages_run_under_the_content_security_policy(page, url, ready):
    violations = []
    page.on(
        "console",
        lambda message: (
            violations.append(message.text)
            if "Content Security Policy" in message.text
            else None
        ),
    )
    response = page.goto(url)
    assert "script-src 'self' 'nonce-" in response.headers["content-security-policy"]
    page.wait_for_selector(ready)
    # ReDoc's footer links its logo from cdn.redoc.ly: blocked, as everything from
    # outside is meant to be. Nothing of the pages' own is refused.
    own = [text for text in violations if "cdn.redoc.ly" not in text]
    assert own == []
