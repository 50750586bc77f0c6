"""Operators' roles: the back-office groups and what each may do.

- support: read-only, sees every back-office screen and changes nothing.
- finance: support's view, plus what moves or freezes money: block/unblock and
  adjust wallets (change_wallet; an adjustment also needs a second operator),
  decide top-ups, void holds, fail payouts, waive fee charges, edit exchange
  rates; and resend webhook deliveries and disable/enable webhook endpoints
  (the change permission opens those operations only: nobody edits their rows).

Both see the dashboard (`DASHBOARD_PERMISSION`, a permission of no model's own:
roles_ensure creates it); a staff user in neither group sees no figures at all.

Neither group may change users (that would let an operator grant themselves
superuser status): deactivating users and managing operators stays with
superusers. The groups are built from Django's own view_/change_/add_
permissions by a post_migrate receiver, so a fresh database has them after
`migrate`; an operator's extra grants made in the admin are kept.
"""

from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.db.models import Q

SUPPORT = "support"
FINANCE = "finance"

# The back-office dashboard (wallet_project/admin_site.py): balances, fees and
# volume of the whole house. Hung on the wallet model's content type.
DASHBOARD_PERMISSION = "wallets.view_dashboard"
# Permissions that are no model's default ones: (app_label, model) -> codename, name.
_EXTRA_PERMISSIONS = {
    ("wallets", "wallet"): [("view_dashboard", "Can view the back-office dashboard")],
}

_VIEWED = {
    "accounts": ["user"],
    "wallets": ["wallet", "exchangerate"],
    "transactions": [
        "transaction",
        "entry",
        "topup",
        "hold",
        "payout",
        "event",
        "webhookendpoint",
        "webhookdelivery",
        "webhookattempt",
    ],
    "fees": ["feecharge"],
    "admin": ["logentry"],
    "django_celery_beat": [
        "periodictask",
        "intervalschedule",
        "crontabschedule",
        "clockedschedule",
        "solarschedule",
    ],
}
_FINANCE_EXTRA = {
    "wallets": ["change_wallet", "add_exchangerate", "change_exchangerate"],
    "transactions": [
        "change_topup",
        "change_hold",
        "change_payout",
        "change_webhookendpoint",
        "change_webhookdelivery",
    ],
    "fees": ["change_feecharge"],
}


def _codenames() -> dict[str, dict[str, list[str]]]:
    support = {
        app: [f"view_{model}" for model in models] for app, models in _VIEWED.items()
    }
    support["wallets"].append("view_dashboard")
    finance = {app: list(codenames) for app, codenames in support.items()}
    for app, codenames in _FINANCE_EXTRA.items():
        finance.setdefault(app, []).extend(codenames)
    return {SUPPORT: support, FINANCE: finance}


def _permissions(by_app: dict[str, list[str]], using: str):
    query = Q(pk__in=[])
    for app, codenames in by_app.items():
        query |= Q(content_type__app_label=app, codename__in=codenames)
    return Permission.objects.using(using).filter(query)


def roles_ensure(*, using: str = "default") -> None:
    """Create the groups and grant them whichever of their permissions exist.

    Idempotent; a model whose app has not been migrated yet gets its permission
    granted on a later call (the receiver runs after every app's migration).
    """
    for (app_label, model), permissions in _EXTRA_PERMISSIONS.items():
        content_type, _created = ContentType.objects.db_manager(using).get_or_create(
            app_label=app_label, model=model
        )
        for codename, name in permissions:
            Permission.objects.using(using).get_or_create(
                content_type=content_type, codename=codename, defaults={"name": name}
            )
    for name, by_app in _codenames().items():
        group, _created = Group.objects.using(using).get_or_create(name=name)
        group.permissions.add(*_permissions(by_app, using))


def roles_post_migrate(sender, using="default", **kwargs) -> None:
    roles_ensure(using=using)
