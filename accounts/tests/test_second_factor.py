"""The operators' second factor through the back-office's pages: enrolment, the
code after the password, recovery codes, the lockout, the superuser's reset, the
audit log, and the admin sessions (idle timeout, browser close, other sessions
ended by a password change or a reset)."""

import base64
import re
from datetime import timedelta

import pytest
import time_machine
from django.contrib.admin.models import LogEntry
from django.contrib.auth.hashers import make_password
from django.contrib.sessions.models import Session
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django_otp.oath import totp
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.models import SecondFactorThrottle
from accounts.tests.conftest import last_code
from accounts.tests.factories import PASSWORD
from accounts.tests.operators import (
    FINANCE,
    SUPPORT,
    admin_client,
    operator,
    totp_code,
    totp_device,
)
from wallet_project import settings as project_settings

pytestmark = pytest.mark.django_db

LOGIN = reverse("admin:login")
VERIFY = reverse("admin:second_factor")
SETUP = reverse("admin:second_factor_setup")
INDEX = reverse("admin:index")
WALLETS = reverse("admin:wallets_wallet_changelist")


def password_login(user, client: Client | None = None) -> Client:
    client = client or Client()
    response = client.post(LOGIN, {"username": user.email, "password": PASSWORD})
    assert response.status_code == 302, response.content.decode()[:500]
    return client


def audit(user) -> list[str]:
    return list(
        LogEntry.objects.filter(object_id=str(user.pk))
        .order_by("action_time", "id")
        .values_list("change_message", flat=True)
    )


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


def secret_on(page) -> str:
    return re.search(r'data-secret="([A-Z2-7]+)"', page.content.decode()).group(1)


def code_for(secret: str) -> str:
    key = base64.b32decode(secret + "=" * (-len(secret) % 8))
    return f"{totp(key):06d}"


# --- Enrolment -------------------------------------------------------------------------------


class TestEnrolment:
    def test_a_new_operator_is_sent_from_any_page_to_the_enrolment(self):
        client = password_login(operator(SUPPORT))
        to_verify = client.get(WALLETS)
        assert to_verify.status_code == 302
        assert to_verify["Location"] == f"{VERIFY}?next=%2Fadmin%2Fwallets%2Fwallet%2F"
        to_setup = client.get(to_verify["Location"])
        assert to_setup["Location"] == f"{SETUP}?next=%2Fadmin%2Fwallets%2Fwallet%2F"

    def test_the_qr_code_is_drawn_on_the_server_and_stays_the_same(self):
        ops = operator(SUPPORT)
        client = password_login(ops)
        page = client.get(SETUP)
        html = page.content.decode()
        assert page.status_code == 200
        assert "<svg" in html and "<img" not in html  # inline SVG, nothing fetched
        assert "https://" not in html.split('id="totp-qr"')[1].split("</div>")[0]
        assert secret_on(page) == secret_on(client.get(SETUP))  # a reload: same key
        assert TOTPDevice.objects.filter(user=ops).count() == 1

    def test_a_right_code_confirms_the_device_and_shows_ten_recovery_codes_once(
        self,
    ):
        ops = operator(SUPPORT)
        client = password_login(ops)
        secret = secret_on(client.get(SETUP))
        done = client.post(SETUP, {"code": code_for(secret), "next": WALLETS})
        assert done.status_code == 200
        codes = re.findall(r"<li><code>([a-z2-7]+)</code></li>", done.content.decode())
        assert len(set(codes)) == 10
        assert set(
            StaticToken.objects.filter(device__user=ops).values_list("token", flat=True)
        ) == set(codes)
        assert TOTPDevice.objects.get(user=ops).confirmed
        assert client.get(WALLETS).status_code == 200  # verified in this session
        # Never shown again: the page sends a verified operator on.
        again = client.get(SETUP)
        assert again.status_code == 302 and codes[0] not in again.content.decode()
        assert audit(ops) == [
            "Second factor enrolled: an authenticator app, and 10 recovery codes "
            "issued."
        ]

    def test_a_wrong_code_confirms_nothing(self):
        ops = operator(SUPPORT)
        client = password_login(ops)
        secret = secret_on(client.get(SETUP))
        refused = client.post(SETUP, {"code": wrong(code_for(secret))})
        assert refused.status_code == 200
        assert "Wrong code. 4 tries left" in refused.content.decode()
        assert not TOTPDevice.objects.get(user=ops).confirmed
        assert not StaticDevice.objects.filter(user=ops).exists()
        assert client.get(WALLETS).status_code == 302

    def test_the_session_id_changes_with_the_second_factor(self):
        ops = operator(SUPPORT)
        device = totp_device(ops)
        client = password_login(ops)
        before = client.cookies["sessionid"].value
        client.post(VERIFY, {"code": totp_code(device)})
        assert client.cookies["sessionid"].value != before
        assert not Session.objects.filter(session_key=before).exists()


# --- Later logins -------------------------------------------------------------------------------


class TestVerification:
    def test_the_code_after_the_password_opens_the_page_asked_for(self):
        ops = operator(FINANCE)
        device = totp_device(ops)
        client = password_login(ops)
        page = client.get(f"{VERIFY}?next={WALLETS}")
        assert page.status_code == 200 and 'id="totp-qr"' not in page.content.decode()
        done = client.post(VERIFY, {"code": totp_code(device), "next": WALLETS})
        assert done.status_code == 302 and done["Location"] == WALLETS
        assert client.get(WALLETS).status_code == 200
        assert audit(ops) == [
            "Logged in to the back-office: password and the authenticator app."
        ]

    def test_next_never_leads_off_the_site(self):
        ops = operator(FINANCE)
        device = totp_device(ops)
        client = password_login(ops)
        done = client.post(
            VERIFY, {"code": totp_code(device), "next": "https://evil.example/"}
        )
        assert done["Location"] == INDEX

    def test_a_code_is_good_once(self):
        ops = operator(FINANCE)
        device = totp_device(ops)
        code = totp_code(device)
        assert password_login(ops).post(VERIFY, {"code": code}).status_code == 302
        replay = password_login(ops).post(VERIFY, {"code": code})
        assert replay.status_code == 200 and "Wrong code" in replay.content.decode()

    def test_a_recovery_code_works_once(self):
        ops = operator(FINANCE)
        totp_device(ops)
        recovery = StaticDevice.objects.create(user=ops, name="recovery codes")
        recovery.token_set.create(token="abcd2345")
        recovery.token_set.create(token="efgh6789")
        client = password_login(ops)
        assert client.post(VERIFY, {"code": "ABCD-2345"}).status_code == 302
        assert client.get(WALLETS).status_code == 200
        assert list(recovery.token_set.values_list("token", flat=True)) == ["efgh6789"]
        again = password_login(ops).post(VERIFY, {"code": "abcd2345"})
        assert "Wrong code" in again.content.decode()
        assert audit(ops)[0] == (
            "Logged in to the back-office: password and a recovery code (1 left)."
        )

    def test_the_login_page_sends_a_half_logged_in_operator_to_the_code(self):
        ops = operator(FINANCE)
        totp_device(ops)
        client = password_login(ops)
        response = client.get(f"{LOGIN}?next={WALLETS}")
        assert response.status_code == 302
        assert response["Location"].startswith(VERIFY)

    def test_an_operator_with_only_the_password_can_log_out(self):
        ops = operator(FINANCE)
        totp_device(ops)
        client = password_login(ops)
        assert client.post(reverse("admin:logout")).status_code == 200
        assert "_auth_user_id" not in client.session
        assert client.get(VERIFY)["Location"].startswith(LOGIN)

    def test_the_code_pages_need_the_password_first(self, client, user):
        for url in (VERIFY, SETUP):
            response = client.get(url)
            assert response.status_code == 302 and response["Location"].startswith(
                LOGIN
            )
        client.force_login(user)  # not staff
        assert client.get(VERIFY)["Location"].startswith(LOGIN)


# --- Lockout ----------------------------------------------------------------------------------------


class TestLockout:
    def test_five_wrong_codes_lock_for_15_minutes_even_the_right_code(self):
        ops = operator(FINANCE)
        device = totp_device(ops)
        client = password_login(ops)
        start = timezone.now()
        with time_machine.travel(start, tick=False):
            for left in (4, 3, 2, 1):
                refused = client.post(VERIFY, {"code": wrong(totp_code(device))})
                assert f"Wrong code. {left} tries left" in refused.content.decode()
            locked = client.post(VERIFY, {"code": wrong(totp_code(device))})
            assert locked.status_code == 429
            assert "Too many wrong codes. Try again in 15 minute(s)" in (
                locked.content.decode()
            )
            right = client.post(VERIFY, {"code": totp_code(device)})
            assert right.status_code == 429
        with time_machine.travel(start + timedelta(minutes=14, seconds=59), tick=False):
            assert client.post(VERIFY, {"code": totp_code(device)}).status_code == 429
        with time_machine.travel(start + timedelta(minutes=15), tick=False):
            opened = client.post(VERIFY, {"code": totp_code(device)})
            assert opened.status_code == 302
        assert SecondFactorThrottle.objects.get(user=ops).failures == 0
        log = audit(ops)
        assert log[:4] == [
            f"Second factor (login): wrong code ({n} of 5)." for n in range(1, 5)
        ]
        assert log[4].startswith(
            "Second factor (login): wrong code (5 of 5). Locked until "
        )
        assert log[5].startswith("Second factor (login): a code while locked, refused")
        assert log[-1] == (
            "Logged in to the back-office: password and the authenticator app."
        )

    def test_a_right_code_starts_the_count_again(self):
        ops = operator(FINANCE)
        device = totp_device(ops)
        start = timezone.now()
        with time_machine.travel(start, tick=False):
            client = password_login(ops)
            for _ in range(4):
                client.post(VERIFY, {"code": wrong(totp_code(device))})
            assert client.post(VERIFY, {"code": totp_code(device)}).status_code == 302
        with time_machine.travel(start + timedelta(seconds=60), tick=False):
            client = password_login(ops)
            refused = client.post(VERIFY, {"code": wrong(totp_code(device))})
            assert "4 tries left" in refused.content.decode()

    def test_recovery_codes_count_toward_the_same_lock(self):
        ops = operator(FINANCE)
        totp_device(ops)
        StaticDevice.objects.create(user=ops, name="r").token_set.create(
            token="abcd2345"
        )
        client = password_login(ops)
        for guess in ("aaaa2222", "bbbb3333", "cccc4444", "dddd5555", "eeee6666"):
            client.post(VERIFY, {"code": guess})
        assert client.post(VERIFY, {"code": "abcd2345"}).status_code == 429
        assert StaticToken.objects.filter(token="abcd2345").exists()  # not used up


# --- Reset by a superuser --------------------------------------------------------------------------


class TestReset:
    def reset_url(self, user) -> str:
        return reverse("admin:accounts_user_second_factor_reset", args=[user.pk])

    def test_a_superuser_resets_with_a_reason_and_ends_the_operators_sessions(self):
        ops = operator(FINANCE)
        phone = admin_client(ops)
        laptop = admin_client(ops)
        StaticDevice.objects.create(user=ops, name="r").token_set.create(
            token="abcd2345"
        )
        boss = operator()
        superuser = admin_client(boss)
        change = superuser.get(reverse("admin:accounts_user_change", args=[ops.pk]))
        assert self.reset_url(ops) in change.content.decode()
        assert "Authenticator app; 1 of 10" in change.content.decode()

        no_reason = superuser.post(self.reset_url(ops), {"reason": "  "})
        assert no_reason.status_code == 200
        assert TOTPDevice.objects.filter(user=ops).exists()

        done = superuser.post(self.reset_url(ops), {"reason": "Lost phone, ticket 7"})
        assert done.status_code == 302
        assert not TOTPDevice.objects.filter(user=ops).exists()
        assert not StaticDevice.objects.filter(user=ops).exists()
        for client in (phone, laptop):
            assert client.get(WALLETS)["Location"].startswith(LOGIN)
        assert superuser.get(WALLETS).status_code == 200
        entry = LogEntry.objects.filter(object_id=str(ops.pk)).latest("action_time")
        assert entry.user == boss
        assert entry.change_message == (
            "Second factor reset (2 session(s) ended); the operator enrols again "
            "at the next login. Reason: Lost phone, ticket 7"
        )
        # At the next login the operator enrols a new device.
        assert password_login(ops).get(VERIFY)["Location"].startswith(SETUP)

    def test_only_a_superuser_resets_and_never_their_own(self):
        ops = operator(FINANCE)
        totp_device(ops)
        finance = admin_client(operator(FINANCE))
        assert finance.get(self.reset_url(ops)).status_code == 403
        boss = operator()
        superuser = admin_client(boss)
        assert superuser.post(self.reset_url(boss), {"reason": "x"}).status_code == 403
        own = superuser.get(reverse("admin:accounts_user_change", args=[boss.pk]))
        assert self.reset_url(boss) not in own.content.decode()
        assert TOTPDevice.objects.filter(user=boss).exists()
        assert superuser.get(
            reverse("admin:accounts_user_second_factor_reset", args=["nope"])
        ).status_code in (302, 404)

    def test_a_reset_lifts_a_lock(self):
        ops = operator(FINANCE)
        device = totp_device(ops)
        client = password_login(ops)
        for _ in range(5):
            client.post(VERIFY, {"code": wrong(totp_code(device))})
        admin_client(operator()).post(self.reset_url(ops), {"reason": "locked out"})
        assert not SecondFactorThrottle.objects.filter(user=ops).exists()


# --- Sessions -------------------------------------------------------------------------------------


class TestSessions:
    def test_an_idle_session_ends_after_admin_session_idle_seconds(self, settings):
        assert project_settings.SESSION_COOKIE_AGE == 1800  # the default
        ops = operator(SUPPORT)
        start = timezone.now()
        with time_machine.travel(start, tick=False):
            client = admin_client(ops)
        with time_machine.travel(start + timedelta(seconds=1700), tick=False):
            assert client.get(WALLETS).status_code == 200  # activity: it slides
        with time_machine.travel(start + timedelta(seconds=3400), tick=False):
            assert client.get(WALLETS).status_code == 200
        with time_machine.travel(start + timedelta(seconds=5201), tick=False):
            response = client.get(WALLETS)
            assert response.status_code == 302
            assert response["Location"].startswith(LOGIN)

    def test_the_session_cookie_ends_with_the_browser(self):
        ops = operator(SUPPORT)
        client = password_login(ops)
        cookie = client.cookies["sessionid"]
        assert cookie["expires"] == "" and cookie["max-age"] == ""
        assert cookie["httponly"]

    def test_a_password_change_ends_the_operators_other_sessions(self):
        ops = operator(SUPPORT)
        here = admin_client(ops)
        elsewhere = admin_client(ops)
        changed = here.post(
            reverse("admin:password_change"),
            {
                "old_password": PASSWORD,
                "new_password1": "a-brand-new-passphrase-9",
                "new_password2": "a-brand-new-passphrase-9",
            },
        )
        assert changed.status_code == 302, changed.content.decode()[:1000]
        assert here.get(WALLETS).status_code == 200
        assert elsewhere.get(WALLETS)["Location"].startswith(LOGIN)

    def test_a_superuser_setting_a_password_ends_that_operators_sessions(self):
        ops = operator(SUPPORT)
        session = admin_client(ops)
        superuser = admin_client(operator())
        done = superuser.post(
            reverse("admin:auth_user_password_change", args=[ops.pk]),
            {
                "password1": "a-brand-new-passphrase-9",
                "password2": "a-brand-new-passphrase-9",
                "usable_password": "true",
            },
        )
        assert done.status_code == 302, done.content.decode()[:1000]
        assert session.get(WALLETS)["Location"].startswith(LOGIN)
        assert superuser.get(WALLETS).status_code == 200


# --- Passwords ----------------------------------------------------------------------------------


class TestPasswordHashing:
    def test_argon2_comes_first(self):
        assert project_settings.PASSWORD_HASHERS[0] == (
            "django.contrib.auth.hashers.Argon2PasswordHasher"
        )

    def test_a_pbkdf2_hash_upgrades_to_argon2_at_the_admin_login(self, settings):
        settings.PASSWORD_HASHERS = project_settings.PASSWORD_HASHERS
        ops = operator(SUPPORT)
        ops.password = make_password(PASSWORD, hasher="pbkdf2_sha256")
        ops.save(update_fields=["password"])
        password_login(ops)
        ops.refresh_from_db()
        assert ops.password.startswith("argon2$")
        assert ops.check_password(PASSWORD)

    def test_a_pbkdf2_hash_upgrades_to_argon2_at_the_api_login(self, settings, api):
        settings.PASSWORD_HASHERS = project_settings.PASSWORD_HASHERS
        ops = operator(SUPPORT)
        ops.password = make_password(PASSWORD, hasher="pbkdf2_sha256")
        ops.save(update_fields=["password"])
        response = api.post(
            "/api/v1/auth/token/",
            {"email": ops.email, "password": PASSWORD},
            format="json",
        )
        assert response.status_code == 200
        ops.refresh_from_db()
        assert ops.password.startswith("argon2$")


# --- Headers -------------------------------------------------------------------------------------


def _inline_scripts(html: str) -> list[str]:
    return re.findall(r"<script(?![^>]*\bsrc=)([^>]*)>", html)


@pytest.mark.parametrize("url", [WALLETS, reverse("admin:dashboard"), INDEX])
def test_admin_pages_carry_a_content_security_policy(url):
    response = admin_client(operator(SUPPORT)).get(url)
    assert response.status_code == 200
    policy = response["Content-Security-Policy"]
    assert "default-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert "'unsafe-inline'" not in policy
    nonce = re.search(r"'nonce-([^']+)'", policy)
    html = response.content.decode()
    for attributes in _inline_scripts(html):
        assert nonce and f'nonce="{nonce.group(1)}"' in attributes, attributes
    for style in re.findall(r"<style([^>]*)>", html):
        assert nonce and f'nonce="{nonce.group(1)}"' in style
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"


@pytest.mark.parametrize("url", ["/api/docs/", "/api/redoc/", LOGIN, VERIFY])
def test_docs_and_login_pages_carry_one_too(client, url):
    response = client.get(url, follow=True)
    policy = response["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    nonce = re.search(r"script-src 'self' 'nonce-([^']+)'", policy)
    for attributes in _inline_scripts(response.content.decode()):
        assert nonce and f'nonce="{nonce.group(1)}"' in attributes, attributes
    assert response["X-Frame-Options"] == "DENY"


def test_the_json_api_carries_no_csp_but_the_other_headers(auth_api):
    response = auth_api.get("/api/v1/wallets/")
    assert "Content-Security-Policy" not in response
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"


def test_a_password_change_through_the_api_ends_the_admin_sessions(make_client):
    """The API's change (with the emailed code) ends the operator's back-office
    sessions too: they hold the old password's hash."""
    ops = operator(SUPPORT)
    session = admin_client(ops)
    api = make_client(ops)
    started = api.post(
        "/api/v1/users/me/password/",
        {"password": PASSWORD, "new_password": "a-brand-new-passphrase-9"},
        format="json",
    )
    assert started.status_code == 202
    confirmed = api.post(
        "/api/v1/users/me/password/confirm/",
        {"session_id": started.json()["session_id"], "code": last_code()},
        format="json",
    )
    assert confirmed.status_code == 204
    assert session.get(WALLETS)["Location"].startswith(LOGIN)
