"""Users, roles and the audit log in the back-office."""

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Group
from django.urls import reverse
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken
from rest_framework_simplejwt.tokens import RefreshToken

from accounts.models import User
from accounts.roles import roles_ensure
from accounts.tests.factories import PASSWORD, UserFactory
from accounts.tests.operators import (
    FINANCE,
    SUPPORT,
    admin_client,
    operator,
    totp_code,
    totp_device,
)

pytestmark = pytest.mark.django_db

USERS = reverse("admin:accounts_user_changelist")
AUDIT = reverse("admin:admin_logentry_changelist")


def found(response) -> set:
    assert response.status_code == 200
    return {obj.pk for obj in response.context["cl"].result_list}


class TestRoles:
    def test_migrate_creates_support_read_only_and_finance_with_money_rights(self):
        support = set(
            Group.objects.get(name=SUPPORT).permissions.values_list(
                "content_type__app_label", "codename"
            )
        )
        finance = set(
            Group.objects.get(name=FINANCE).permissions.values_list(
                "content_type__app_label", "codename"
            )
        )
        assert all(codename.startswith("view_") for _app, codename in support)
        assert {
            ("accounts", "view_user"),
            ("wallets", "view_wallet"),
            ("transactions", "view_transaction"),
            ("transactions", "view_entry"),
            ("admin", "view_logentry"),
            ("django_celery_beat", "view_periodictask"),
        } <= support
        assert support < finance
        assert ("wallets", "change_wallet") in finance
        assert not {codename for _app, codename in finance} & {
            "change_user",
            "add_user",
            "delete_wallet",
            "change_transaction",
            "delete_logentry",
        }

    def test_ensuring_again_keeps_grants_added_by_hand(self):
        group = Group.objects.get(name=SUPPORT)
        before = group.permissions.count()
        extra = Group.objects.get(name=FINANCE).permissions.exclude(
            codename__startswith="view_"
        )[0]
        group.permissions.add(extra)
        roles_ensure()
        assert group.permissions.count() == before + 1


class TestUsers:
    def test_search_by_email_phone_and_name(self):
        ann = UserFactory(email="ann@example.com", phone_number="+77011234567")
        UserFactory(first_name="Zhanna", last_name="Bekova")
        client = admin_client(operator(SUPPORT))
        assert found(client.get(USERS, {"q": "ann@example"})) == {ann.pk}
        assert found(client.get(USERS, {"q": "+7701123"})) == {ann.pk}
        assert {
            User.objects.get(pk=pk).last_name
            for pk in found(client.get(USERS, {"q": "Bekova"}))
        } == {"Bekova"}

    def test_filters_active_staff_and_service_accounts(self):
        service = UserFactory(is_service=True)
        inactive = UserFactory(is_active=False)
        client = admin_client(operator())
        assert found(client.get(USERS, {"is_service__exact": "1"})) == {service.pk}
        assert found(client.get(USERS, {"is_active__exact": "0"})) == {inactive.pk}
        staff = found(client.get(USERS, {"is_staff__exact": "1"}))
        assert service.pk not in staff and inactive.pk not in staff

    def test_a_user_page_shows_wallets_read_only_and_links_to_transactions(
        self, wallet
    ):
        client = admin_client(operator(SUPPORT))
        page = client.get(
            reverse("admin:accounts_user_change", args=[wallet.owner_id])
        ).content.decode()
        assert wallet.number in page
        assert 'name="wallets-0-balance' not in page
        link = f"{reverse('admin:transactions_transaction_changelist')}?owner={wallet.owner_id}"
        assert link in page
        listed = found(client.get(link))
        assert listed == {wallet.entries.get().transaction_id}

    def test_deactivation_needs_a_reason_blocks_login_and_revokes_tokens(
        self, user, api
    ):
        refresh = RefreshToken.for_user(user)
        client = admin_client(operator())
        ask = client.post(
            USERS,
            {"action": "deactivate", "_selected_action": [str(user.pk)], "index": 0},
        )
        assert 'name="reason"' in ask.content.decode()
        user.refresh_from_db()
        assert user.is_active
        client.post(
            USERS,
            {
                "action": "deactivate",
                "_selected_action": [str(user.pk)],
                "apply": "yes",
                "reason": "account takeover reported",
            },
        )
        user.refresh_from_db()
        assert not user.is_active
        assert BlacklistedToken.objects.filter(token__jti=refresh["jti"]).exists()
        assert (
            api.post(
                "/api/v1/auth/token/refresh/", {"refresh": str(refresh)}, format="json"
            ).status_code
            == 401
        )
        entry = LogEntry.objects.get(object_id=str(user.pk))
        assert entry.change_message == "Deactivated. Reason: account takeover reported"

    def test_finance_and_support_cannot_change_users(self, user):
        for role in (SUPPORT, FINANCE):
            client = admin_client(operator(role))
            client.post(
                USERS,
                {
                    "action": "deactivate",
                    "_selected_action": [str(user.pk)],
                    "apply": "yes",
                    "reason": "x",
                },
            )
            change = reverse("admin:accounts_user_change", args=[user.pk])
            response = client.post(change, {"email": user.email, "is_superuser": "on"})
            assert response.status_code == 403
        user.refresh_from_db()
        assert user.is_active and not user.is_superuser

    def test_a_superuser_creates_an_operator_who_can_log_in(self, client):
        admin = admin_client(operator())
        response = admin.post(
            reverse("admin:accounts_user_add"),
            {
                "email": "New.Operator@Example.com",
                "usable_password": "true",
                "password1": "a-long-unusual-password-1",
                "password2": "a-long-unusual-password-1",
            },
        )
        assert response.status_code == 302, response.content.decode()[:2000]
        created = User.objects.get(email="new.operator@example.com")
        assert created.check_password("a-long-unusual-password-1")
        duplicate = admin.post(
            reverse("admin:accounts_user_add"),
            {
                "email": "NEW.operator@example.com",
                "usable_password": "true",
                "password1": "a-long-unusual-password-1",
                "password2": "a-long-unusual-password-1",
            },
        )
        assert "A user with this email already exists." in duplicate.content.decode()
        created.is_staff = True
        created.save()
        login = client.post(
            reverse("admin:login"),
            {
                "username": "new.operator@example.com",
                "password": "a-long-unusual-password-1",
            },
        )
        assert login.status_code == 302

    def test_an_operator_logs_in_with_email_password_and_a_code(self, client):
        staff = operator(SUPPORT)
        device = totp_device(staff)
        response = client.post(
            reverse("admin:login") + "?next=/admin/",
            {"username": staff.email, "password": PASSWORD},
        )
        assert response.status_code == 302
        # The password alone opens nothing but the code page.
        assert client.get("/admin/")["Location"].startswith(
            reverse("admin:second_factor")
        )
        verified = client.post(
            reverse("admin:second_factor"),
            {"code": totp_code(device), "next": "/admin/"},
        )
        assert verified.status_code == 302 and verified["Location"] == "/admin/"
        assert client.get("/admin/").status_code == 200


class TestAuditLog:
    def test_lists_who_when_what_why_and_is_read_only(self, wallet):
        finance = admin_client(operator(FINANCE, email="fin@ops.example"))
        finance.post(
            reverse("admin:wallets_wallet_block", args=[wallet.pk]),
            {"reason": "chargeback storm"},
        )
        support = admin_client(operator(SUPPORT))
        page = support.get(AUDIT, {"q": "chargeback"})
        assert page.status_code == 200
        html = page.content.decode()
        assert "fin@ops.example" in html
        assert "Blocked. Reason: chargeback storm" in html
        entry = LogEntry.objects.get()
        for client in (support, admin_client(operator())):
            assert client.get(reverse("admin:admin_logentry_add")).status_code == 403
            delete = reverse("admin:admin_logentry_delete", args=[entry.pk])
            assert client.post(delete, {"post": "yes"}).status_code == 403
            change = reverse("admin:admin_logentry_change", args=[entry.pk])
            client.post(change, {"change_message": "nothing happened"})
        entry.refresh_from_db()
        assert entry.change_message == "Blocked. Reason: chargeback storm"
