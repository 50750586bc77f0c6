"""Back-office operators for the admin tests: staff users in a role group."""

from django.contrib.auth.models import Group
from django.test import Client

from accounts.models import User
from accounts.roles import FINANCE, SUPPORT
from accounts.tests.factories import UserFactory

__all__ = ["FINANCE", "SUPPORT", "admin_client", "operator"]


def operator(role: str | None = None, **fields) -> User:
    """A staff user in `role` (support or finance); role=None is a superuser."""
    if role is None:
        fields.setdefault("is_superuser", True)
    user = UserFactory(is_staff=True, **fields)
    if role is not None:
        user.groups.add(Group.objects.get(name=role))
    return user


def admin_client(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client
