"""The operators' second factor: a TOTP device (an authenticator app) and ten
single-use recovery codes (django-otp's static device), a lockout after wrong
codes, the reset by a superuser, and the audit of all of it.

Every staff user enrols on their first back-office login and gives a code after
the password on every later one (wallet_project/admin_second_factor.py shows the
pages; wallet_project.middleware.SecondFactorMiddleware keeps every other admin
view closed until then). The audit log is the admin's LogEntry, as for every
back-office action: who (the operator, or the superuser who reset them), when,
what (the operator's user row) and the message.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth import SESSION_KEY
from django.contrib.contenttypes.models import ContentType
from django.contrib.sessions.models import Session
from django.db import transaction
from django.utils import timezone
from django_otp.models import Device
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.models import SecondFactorThrottle, User

RECOVERY_CODES = 10
AUTHENTICATOR_NAME = "authenticator"
RECOVERY_NAME = "recovery codes"
_NOT_A_CODE_CHARACTER = re.compile(r"[\s-]+")


class SecondFactorLocked(Exception):
    """Too many wrong codes: no code is accepted before `until`."""

    def __init__(self, until: datetime) -> None:
        super().__init__(until)
        self.until = until


class WrongCode(Exception):
    """The code matched no device of the operator; `left` tries before the lock."""

    def __init__(self, left: int) -> None:
        super().__init__(left)
        self.left = left


@dataclass(frozen=True)
class Enrolment:
    device: TOTPDevice
    recovery_codes: list[str]


# --- Reads ------------------------------------------------------------------------------


def totp_device_confirmed(*, user: User) -> TOTPDevice | None:
    return TOTPDevice.objects.filter(user=user, confirmed=True).first()


def second_factor_enrolled(*, user: User) -> bool:
    return TOTPDevice.objects.filter(user=user, confirmed=True).exists()


def recovery_codes_left(*, user: User) -> int:
    return StaticToken.objects.filter(device__user=user, device__confirmed=True).count()


def totp_secret(device: TOTPDevice) -> str:
    """The key as authenticator apps take it by hand: base32, no padding."""
    return base64.b32encode(device.bin_key).decode("ascii").rstrip("=")


def _normalized(code: str) -> str:
    return _NOT_A_CODE_CHARACTER.sub("", code or "").lower()[:64]


# --- Enrolment -----------------------------------------------------------------------------


def totp_device_start(*, user: User) -> TOTPDevice:
    """The unconfirmed device of an operator who has none confirmed: the same one on
    every visit (the QR code scanned before a reload stays the right one)."""
    with transaction.atomic():
        User.objects.select_for_update().filter(pk=user.pk).first()
        device = TOTPDevice.objects.filter(user=user, confirmed=False).first()
        if device is None:
            device = TOTPDevice.objects.create(
                user=user, name=AUTHENTICATOR_NAME, confirmed=False
            )
        return device


def totp_device_confirm(*, user: User, code: str) -> Enrolment:
    """Confirm the operator's new device with a code from it; issue the recovery
    codes (the only time they are shown). Wrong codes count toward the lock."""

    def check(now: datetime) -> Device | None:
        device = (
            TOTPDevice.objects.select_for_update()
            .filter(user=user, confirmed=False)
            .first()
        )
        if device is None or not device.verify_token(_normalized(code)):
            return None
        TOTPDevice.objects.filter(user=user).exclude(pk=device.pk).delete()
        device.confirmed = True
        device.save(update_fields=["confirmed"])
        return device

    device = _attempt(user=user, check=check, what="enrolment")
    codes = _recovery_codes_issue(user=user)
    _audit(
        actor=user,
        user=user,
        message=(
            "Second factor enrolled: an authenticator app, and "
            f"{len(codes)} recovery codes issued."
        ),
    )
    return Enrolment(device=device, recovery_codes=codes)


def _recovery_codes_issue(*, user: User) -> list[str]:
    with transaction.atomic():
        StaticDevice.objects.filter(user=user).delete()
        device = StaticDevice.objects.create(user=user, name=RECOVERY_NAME)
        codes = [StaticToken.random_token() for _ in range(RECOVERY_CODES)]
        StaticToken.objects.bulk_create(
            [StaticToken(device=device, token=code) for code in codes]
        )
    return codes


# --- Verification ----------------------------------------------------------------------------


def second_factor_verify(*, user: User, code: str) -> Device:
    """The device (authenticator or recovery codes) that accepts `code`; a recovery
    code is used up. Raises SecondFactorLocked or WrongCode."""
    token = _normalized(code)

    def check(now: datetime) -> Device | None:
        totp = (
            TOTPDevice.objects.select_for_update()
            .filter(user=user, confirmed=True)
            .first()
        )
        if totp is not None and token.isdigit() and totp.verify_token(token):
            return totp
        recovery = (
            StaticDevice.objects.select_for_update()
            .filter(user=user, confirmed=True)
            .first()
        )
        if recovery is not None and recovery.verify_token(token):
            return recovery
        return None

    device = _attempt(user=user, check=check, what="login")
    if isinstance(device, StaticDevice):
        how = f"a recovery code ({recovery_codes_left(user=user)} left)"
    else:
        how = "the authenticator app"
    _audit(
        actor=user,
        user=user,
        message=f"Logged in to the back-office: password and {how}.",
    )
    return device


def _attempt(*, user: User, check, what: str) -> Device:
    """Run `check` under the operator's throttle row: refused while locked, a wrong
    code counted (and audited) in the same DB transaction, the lock set at the
    limit. The exception is raised after the commit, so the count stays."""
    limit = settings.SECOND_FACTOR_FAILURE_LIMIT
    with transaction.atomic():
        now = timezone.now()
        SecondFactorThrottle.objects.get_or_create(user=user)
        throttle = SecondFactorThrottle.objects.select_for_update().get(user=user)
        if throttle.locked_until is not None:
            if now < throttle.locked_until:
                _audit(
                    actor=user,
                    user=user,
                    message=(
                        f"Second factor ({what}): a code while locked, refused "
                        f"(locked until {throttle.locked_until:%Y-%m-%d %H:%M:%S} UTC)."
                    ),
                )
                refused: Exception = SecondFactorLocked(throttle.locked_until)
                device = None
            else:
                throttle.failures, throttle.locked_until = 0, None
        if throttle.locked_until is None:
            device = check(now)
            if device is not None:
                throttle.failures = 0
            else:
                throttle.failures += 1
                message = (
                    f"Second factor ({what}): wrong code "
                    f"({throttle.failures} of {limit})."
                )
                if throttle.failures >= limit:
                    throttle.locked_until = now + settings.SECOND_FACTOR_LOCKOUT
                    message += (
                        f" Locked until {throttle.locked_until:%Y-%m-%d %H:%M:%S} UTC."
                    )
                    refused = SecondFactorLocked(throttle.locked_until)
                else:
                    refused = WrongCode(left=limit - throttle.failures)
                _audit(actor=user, user=user, message=message)
        throttle.save(update_fields=["failures", "locked_until"])
    if device is None:
        raise refused
    return device


# --- Reset by a superuser -------------------------------------------------------------------


def second_factor_reset(*, user: User, by: User, reason: str) -> int:
    """Forget the operator's devices and recovery codes (they enrol again on their
    next login) and end every session of theirs. Returns the sessions ended."""
    if by.pk == user.pk:
        raise ValueError("An operator cannot reset their own second factor.")
    if not by.is_superuser:
        raise PermissionError("Only a superuser resets a second factor.")
    with transaction.atomic():
        User.objects.select_for_update().filter(pk=user.pk).first()
        TOTPDevice.objects.filter(user=user).delete()
        StaticDevice.objects.filter(user=user).delete()
        SecondFactorThrottle.objects.filter(user=user).delete()
        ended = user_sessions_end(user=user)
        _audit(
            actor=by,
            user=user,
            message=(
                f"Second factor reset ({ended} session(s) ended); the operator "
                f"enrols again at the next login. Reason: {reason}"
            ),
        )
    return ended


def user_sessions_end(*, user: User, keep: str | None = None) -> int:
    """Delete every live session of `user` but `keep` (a session key).

    Sessions serve only the back-office (the API takes bearer tokens), so the
    live ones are a few per operator and reading them all is cheap."""
    ended = []
    for session in Session.objects.filter(expire_date__gt=timezone.now()).iterator():
        if session.session_key == keep:
            continue
        if session.get_decoded().get(SESSION_KEY) == str(user.pk):
            ended.append(session.session_key)
    Session.objects.filter(session_key__in=ended).delete()
    return len(ended)


# --- The audit log -------------------------------------------------------------------------


def _audit(*, actor: User, user: User, message: str) -> None:
    LogEntry.objects.create(
        user_id=actor.pk,
        content_type=ContentType.objects.get_for_model(User),
        object_id=str(user.pk),
        object_repr=str(user)[:200],
        action_flag=CHANGE,
        change_message=message,
    )
