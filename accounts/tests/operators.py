"""Back-office operators for the admin tests: staff users in a role group, and a
client logged in as one with a verified second factor (as after the code page)."""

from django.contrib.auth.models import Group
from django.test import Client
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.models import User
from accounts.roles import FINANCE, SUPPORT
from accounts.tests.factories import UserFactory

__all__ = [
    "FINANCE",
    "SUPPORT",
    "admin_client",
    "operator",
    "totp_code",
    "totp_device",
]


def operator(role: str | None = None, **fields) -> User:
    """A staff user in `role` (support or finance); role=None is a superuser."""
    if role is None:
        fields.setdefault("is_superuser", True)
    user = UserFactory(is_staff=True, **fields)
    if role is not None:
        user.groups.add(Group.objects.get(name=role))
    return user


def totp_device(user: User) -> TOTPDevice:
    """The operator's confirmed authenticator (the one they enrolled)."""
    device = TOTPDevice.objects.filter(user=user, confirmed=True).first()
    return device or TOTPDevice.objects.create(
        user=user, name="authenticator", confirmed=True
    )


def totp_code(device: TOTPDevice) -> str:
    """The 6-digit code the operator's app shows now (django-otp's own TOTP)."""
    code = totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits)
    return f"{code:0{device.digits}d}"


def admin_client(user: User) -> Client:
    """A client logged in as `user`, past the second factor (the session names a
    confirmed device of theirs, as django_otp.login leaves it)."""
    client = Client()
    client.force_login(user)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = totp_device(user).persistent_id
    session.save()
    return client
