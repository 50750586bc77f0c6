"""Top-up services directly: commission arithmetic, decisions as the admin makes
them, expiry in batches, and the service-account command."""

from datetime import timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from accounts.models import User
from accounts.tests.factories import UserFactory
from transactions import ledger
from transactions.ledger import (
    InvalidAmount,
    InvalidCommission,
    TopupAlreadyDecided,
    TopupExpired,
    TopupNotFound,
)
from transactions.models import TopUp
from transactions.selectors import ledger_reconcile

pytestmark = pytest.mark.django_db


# --- Commission arithmetic -------------------------------------------------------------


@pytest.mark.parametrize(
    ("percent", "amount", "expected"),
    [
        ("0", "123.45", "0.00"),
        ("1.5", "100.01", "1.50"),  # 1.50015
        ("0.5", "1.00", "0.00"),  # 0.005: half to even -> 0.00
        ("0.5", "3.00", "0.02"),  # 0.015: half to even -> 0.02
        ("0.5", "5.00", "0.02"),  # 0.025: half to even -> 0.02
        ("2.5", "0.01", "0.00"),
        ("100", "42.42", "42.42"),
        ("3.333", "1000000000.00", "33330000.00"),
    ],
)
def test_percent_commission_is_rounded_half_even_to_the_minor_unit(
    settings, percent, amount, expected
):
    settings.TOPUP_COMMISSION_PERCENT = Decimal(percent)
    fee = ledger.topup_commission(amount=Decimal(amount), currency="KZT")
    assert fee == Decimal(expected)
    assert fee.as_tuple().exponent == -2


def test_a_stated_commission_overrides_the_percent(settings):
    settings.TOPUP_COMMISSION_PERCENT = Decimal("10")
    assert ledger.topup_commission(
        amount=Decimal("50.00"), currency="USD", commission=Decimal("0")
    ) == Decimal("0.00")
    assert ledger.topup_commission(
        amount=Decimal("50.00"), currency="USD", commission=Decimal("50")
    ) == Decimal("50.00")


@pytest.mark.parametrize(
    "commission", ["-0.01", "50.01", "0.001", "NaN", "Infinity", "sNaN"]
)
def test_a_stated_commission_outside_zero_to_amount_is_refused(commission):
    with pytest.raises(InvalidCommission):
        ledger.topup_commission(
            amount=Decimal("50.00"), currency="USD", commission=Decimal(commission)
        )


# --- Creating and deciding ----------------------------------------------------------------


def test_topup_create_validates_the_amount_against_the_currency(make_wallet):
    wallet = make_wallet(currency="EUR")
    for bad in ("0", "-1", "0.001"):
        with pytest.raises(InvalidAmount):
            ledger.topup_create(wallet=wallet, amount=Decimal(bad))
    topup = ledger.topup_create(wallet=wallet, amount=Decimal("7.5"))
    assert str(topup.amount.currency) == "EUR"
    assert topup.amount.amount == Decimal("7.50")


def test_an_operator_can_decide_through_the_same_service(make_wallet):
    """What the admin's approve/reject actions call."""
    operator = UserFactory(is_staff=True)
    wallet = make_wallet(currency="USD", balance="1.00")
    topup = ledger.topup_create(wallet=wallet, amount=Decimal("9.99"))
    decided = ledger.topup_decide(
        topup_id=topup.id,
        status="paid",
        commission=Decimal("0.99"),
        provider_reference="manual",
        decided_by=operator,
    )
    assert decided.status == "paid"
    assert decided.decided_by == operator
    assert decided.transaction.initiator == operator
    wallet.refresh_from_db()
    assert wallet.balance.amount == Decimal("10.00")
    with pytest.raises(TopupAlreadyDecided) as exc:
        ledger.topup_decide(topup_id=topup.id, status="rejected", decided_by=operator)
    assert exc.value.code == "topup_already_decided"
    assert ledger_reconcile().clean


def test_deciding_an_unknown_topup_or_with_a_non_decision_fails(make_wallet):
    with pytest.raises(TopupNotFound):
        ledger.topup_decide(
            topup_id="00000000-0000-0000-0000-000000000000",
            status="paid",
            decided_by=None,
        )
    topup = ledger.topup_create(wallet=make_wallet(), amount=Decimal("1.00"))
    with pytest.raises(ValueError, match="not a top-up decision"):
        ledger.topup_decide(topup_id=topup.id, status="expired", decided_by=None)


def test_the_database_refuses_a_paid_topup_without_its_transaction(make_wallet):
    from django.db import IntegrityError, transaction

    topup = ledger.topup_create(wallet=make_wallet(), amount=Decimal("1.00"))
    with pytest.raises(IntegrityError), transaction.atomic():
        TopUp.objects.filter(pk=topup.pk).update(status="paid")


# --- Expiry ---------------------------------------------------------------------------------


def test_expiry_works_through_every_batch(settings, make_wallet):
    wallet = make_wallet()
    stale = [
        ledger.topup_create(wallet=wallet, amount=Decimal("1.00")) for _ in range(7)
    ]
    fresh = ledger.topup_create(wallet=wallet, amount=Decimal("1.00"))
    TopUp.objects.filter(pk__in=[t.pk for t in stale]).update(
        created_at=timezone.now() - settings.TOPUP_TTL - timedelta(seconds=1)
    )
    assert ledger.topup_expire_stale(batch_size=3) == 7
    assert TopUp.objects.filter(status="expired").count() == 7
    assert TopUp.objects.get(pk=fresh.pk).status == "pending"
    assert ledger.topup_expire_stale() == 0
    with pytest.raises(TopupExpired):
        ledger.topup_decide(topup_id=stale[0].id, status="paid", decided_by=None)


def test_a_shorter_ttl_setting_applies(settings, make_wallet):
    settings.TOPUP_TTL = timedelta(minutes=5)
    topup = ledger.topup_create(wallet=make_wallet(), amount=Decimal("1.00"))
    TopUp.objects.filter(pk=topup.pk).update(
        created_at=timezone.now() - timedelta(minutes=6)
    )
    assert ledger.topup_expire_stale() == 1


# --- create_service_account ------------------------------------------------------------------

STRONG = "Provider-Pass-2024!"


def run(*args) -> str:
    out = StringIO()
    call_command("create_service_account", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def test_create_service_account_creates_a_service_user_and_prints_no_secret():
    output = run("--email", "PSP@Example.com", "--password", STRONG)
    user = User.objects.get(email="psp@example.com")
    assert user.is_service and user.is_active
    assert not user.is_staff and not user.is_superuser
    assert user.check_password(STRONG)
    assert "psp@example.com" in output
    assert STRONG not in output
    assert user.password not in output


def test_create_service_account_again_only_sets_the_password():
    run("--email", "psp@example.com", "--password", STRONG)
    output = run("--email", "psp@example.com", "--password", STRONG + "x")
    assert "Updated" in output
    assert User.objects.filter(email="psp@example.com").count() == 1
    assert User.objects.get(email="psp@example.com").check_password(STRONG + "x")


def test_create_service_account_refuses_an_ordinary_users_email(user):
    with pytest.raises(CommandError, match="ordinary user"):
        run("--email", user.email, "--password", STRONG)
    user.refresh_from_db()
    assert not user.is_service


def test_create_service_account_reads_the_password_from_the_environment(monkeypatch):
    monkeypatch.setenv("SERVICE_ACCOUNT_PASSWORD", STRONG)
    run("--email", "env@example.com")
    assert User.objects.get(email="env@example.com").check_password(STRONG)


@pytest.mark.parametrize(
    "args",
    [
        ("--email", "not-an-email", "--password", STRONG),
        ("--email", "weak@example.com", "--password", "123"),
    ],
)
def test_create_service_account_refuses_bad_input(args):
    with pytest.raises(CommandError):
        run(*args)
    assert not User.objects.filter(is_service=True).exists()
