"""Accounts: sign-up, login, password change and reset, profile.

Every flow that needs proof of an email address uses one mechanism, the
`VerificationSession`: a 6-digit code from `secrets`, stored as an HMAC-SHA256
keyed with SECRET_KEY, compared in constant time (accounts.codes), valid
VERIFICATION_CODE_TTL, used once, dead after VERIFICATION_CODE_MAX_ATTEMPTS wrong
tries. The code is mailed by a Celery task scheduled on commit (accounts.tasks,
which sends accounts.emails); the session is the email's outbox, so a lost
broker message is sent again by the beat sweep (accounts.emails).
"""

import math
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import PurePath
from typing import Any, TypeVar

from django.conf import settings
from django.contrib.auth.hashers import make_password
from django.contrib.auth.password_validation import validate_password
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from rest_framework_simplejwt.settings import api_settings as jwt_settings
from rest_framework_simplejwt.token_blacklist.models import (
    BlacklistedToken,
    OutstandingToken,
)
from rest_framework_simplejwt.tokens import RefreshToken

from accounts.codes import (
    code_derive,
    code_hash,
    code_matches,
    code_nonce_new,
    session_usable_or_error,
)
from accounts.errors import (
    AccountInactive,
    AccountLocked,
    CodeInvalid,
    CodeUsed,
    EmailTaken,
    InvalidCredentials,
    PhoneNumberTaken,
    RefreshTokenNotYours,
    RefreshTokenRevoked,
    ResendTooSoon,
    VerificationSessionDead,
    VerificationSessionNotFound,
)
from accounts.models import User, VerificationSession, normalize_email
from accounts.selectors import (
    user_email_taken,
    user_find_for_login,
    user_phone_number_taken,
)
from accounts.tasks import verification_email_task

T = TypeVar("T")
Purpose = VerificationSession.Purpose
SignupHook = Callable[[User], object]

EMAIL_TAKEN = _("A user with this email already exists.")
PHONE_NUMBER_TAKEN = _("A user with this phone number already exists.")
WRONG_PASSWORD = _("The current password is wrong.")

# Checked when no user matches a login, so an unknown account costs as much time
# as a wrong password (no account enumeration by timing).
_DUMMY_PASSWORD_HASH = make_password(secrets.token_urlsafe(16))
_UNSET: Any = object()
# What else a new user is given, in the sign-up's DB transaction: the higher
# layers register it in their AppConfig.ready (wallets: the first wallet).
_signup_hooks: list[SignupHook] = []


@dataclass(frozen=True)
class TokenPair:
    access: str
    refresh: str


@dataclass(frozen=True)
class SignupResult:
    user: User
    tokens: TokenPair


# --- Verification sessions (the one mechanism) -----------------------------------------


def _code_issue(
    *, session: VerificationSession, language: str, now: datetime
) -> list[str]:
    """A new code for `session` (the previous one stops working), its email
    scheduled on commit; the fields to save. Only the nonce it is derived from
    is stored, and only the session id and nonce travel to the worker."""
    nonce = code_nonce_new()
    code = code_derive(session_id=session.id, nonce=nonce)
    session.code_hash = code_hash(session_id=session.id, code=code)
    session.code_nonce = nonce
    session.code_language = language or ""
    session.code_issued_at = now
    session.code_emailed_at = None
    transaction.on_commit(
        partial(verification_email_task.delay, str(session.id), nonce)
    )
    return [
        "code_hash",
        "code_nonce",
        "code_language",
        "code_issued_at",
        "code_emailed_at",
    ]


def _session_open(
    *,
    purpose: str,
    email: str,
    language: str,
    user: User | None = None,
    payload: dict | None = None,
    deliverable: bool = True,
    now: datetime | None = None,
) -> VerificationSession:
    """A new session and its code. An undeliverable session (a password reset for
    an unknown address) gets the hash of a secret nobody knows, so no code ever
    matches, and no email."""
    now = now or timezone.now()
    session = VerificationSession(
        id=uuid.uuid4(),
        purpose=purpose,
        email=email,
        user=user,
        payload=payload or {},
        created_at=now,
        expires_at=now + settings.VERIFICATION_CODE_TTL,
        resend_available_at=now + settings.VERIFICATION_RESEND_INTERVAL,
    )
    if deliverable:
        _code_issue(session=session, language=language, now=now)
    else:
        session.code_hash = code_hash(session_id=session.id, code=secrets.token_hex(32))
    session.save(force_insert=True)
    return session


def _session_locked(
    *, session_id: uuid.UUID | str, purpose: str, user: User | None = None
) -> VerificationSession:
    query = VerificationSession.objects.select_for_update().filter(
        pk=session_id, purpose=purpose
    )
    if user is not None:
        query = query.filter(user=user)
    session = query.first()
    if session is None:
        raise VerificationSessionNotFound()
    return session


def _session_redeem(
    *,
    session_id: uuid.UUID | str,
    purpose: str,
    code: str,
    apply: Callable[[VerificationSession], T],
    user: User | None = None,
) -> T:
    """Check `code` against the session and, if it is right, mark the session
    used and `apply` it, all in one DB transaction (an error in `apply` rolls
    the whole thing back, the code stays usable).

    A wrong code is counted in a committed transaction before the error is
    raised; the row lock serialises concurrent guesses, so the limit holds."""
    now = timezone.now()
    with transaction.atomic(durable=True):
        session = _session_locked(session_id=session_id, purpose=purpose, user=user)
        error = session_usable_or_error(session=session, now=now)
        if error is None and not code_matches(session=session, code=code):
            session.attempts += 1
            session.save(update_fields=["attempts"])
            error = CodeInvalid(
                attempts_left=settings.VERIFICATION_CODE_MAX_ATTEMPTS - session.attempts
            )
        if error is None:
            session.used_at = now
            session.save(update_fields=["used_at"])
            return apply(session)
    assert error is not None
    raise error


def verification_code_resend(
    *, session_id: uuid.UUID | str, purpose: str, language: str
) -> VerificationSession:
    """A new code for a live session (the old one stops working), at most once per
    VERIFICATION_RESEND_INTERVAL. Wrong tries are not forgiven by a resend."""
    now = timezone.now()
    with transaction.atomic():
        session = _session_locked(session_id=session_id, purpose=purpose)
        if session.used_at is not None:
            raise CodeUsed()
        if session.attempts >= settings.VERIFICATION_CODE_MAX_ATTEMPTS:
            raise VerificationSessionDead()
        if now < session.resend_available_at:
            wait = (session.resend_available_at - now).total_seconds()
            raise ResendTooSoon(retry_after=math.ceil(wait))
        fields = _code_issue(session=session, language=language, now=now)
        session.expires_at = now + settings.VERIFICATION_CODE_TTL
        session.resend_available_at = now + settings.VERIFICATION_RESEND_INTERVAL
        session.save(update_fields=[*fields, "expires_at", "resend_available_at"])
    return session


# --- Sign-up -----------------------------------------------------------------------------


def signup_hook_register(hook: SignupHook) -> None:
    """Call `hook(user)` for every new user, inside the sign-up's DB transaction
    (an error in it rolls the sign-up back and the code stays usable)."""
    if hook not in _signup_hooks:
        _signup_hooks.append(hook)


def _password_validate(*, password: str, user: User, field: str = "password") -> None:
    try:
        validate_password(password, user=user)
    except ValidationError as exc:
        raise ValidationError({field: exc.messages}) from None


def signup_start(
    *,
    email: str,
    password: str,
    language: str,
    phone_number: str | None = None,
    first_name: str = "",
    last_name: str = "",
) -> VerificationSession:
    """Validate a sign-up up front and mail a code; nothing but the pending
    session (with the password already hashed) is stored until it is confirmed."""
    email = normalize_email(email)
    errors: dict[str, list] = {}
    if user_email_taken(email=email):
        errors["email"] = [EMAIL_TAKEN]
    if phone_number and user_phone_number_taken(phone_number=phone_number):
        errors["phone_number"] = [PHONE_NUMBER_TAKEN]
    candidate = User(email=email, first_name=first_name, last_name=last_name)
    try:
        _password_validate(password=password, user=candidate)
    except ValidationError as exc:
        errors.update(exc.message_dict)
    if errors:
        raise ValidationError(errors)
    with transaction.atomic():
        return _session_open(
            purpose=Purpose.SIGNUP,
            email=email,
            language=language,
            payload={
                "password_hash": make_password(password),
                "phone_number": phone_number or None,
                "first_name": first_name,
                "last_name": last_name,
            },
        )


def _tokens_for(user: User) -> TokenPair:
    refresh = RefreshToken.for_user(user)
    return TokenPair(access=str(refresh.access_token), refresh=str(refresh))


def _user_from_signup(session: VerificationSession) -> SignupResult:
    payload = session.payload
    if user_email_taken(email=session.email):
        raise EmailTaken()
    phone_number = payload.get("phone_number")
    if phone_number and user_phone_number_taken(phone_number=phone_number):
        raise PhoneNumberTaken()
    user = User(
        email=session.email,
        password=payload["password_hash"],
        phone_number=phone_number,
        first_name=payload.get("first_name", ""),
        last_name=payload.get("last_name", ""),
    )
    try:
        with transaction.atomic():
            user.save(force_insert=True)
    except IntegrityError as exc:  # a concurrent sign-up won the race
        raise (PhoneNumberTaken() if "phone" in str(exc) else EmailTaken()) from None
    for hook in _signup_hooks:
        hook(user)
    return SignupResult(user=user, tokens=_tokens_for(user))


def signup_confirm(*, session_id: uuid.UUID | str, code: str) -> SignupResult:
    """Create the user and what the sign-up hooks give them (their KZT wallet),
    in one DB transaction with the use of the code, and log them in."""
    return _session_redeem(
        session_id=session_id,
        purpose=Purpose.SIGNUP,
        code=code,
        apply=_user_from_signup,
    )


def signup_code_resend(
    *, session_id: uuid.UUID | str, language: str
) -> VerificationSession:
    return verification_code_resend(
        session_id=session_id, purpose=Purpose.SIGNUP, language=language
    )


# --- Login, JWT rotation, logout ------------------------------------------------------------


def _login_keys(key: str) -> tuple[str, str]:
    return f"accounts:login-failures:{key}", f"accounts:login-lock:{key}"


def _login_lock_check(*, key: str, now: datetime) -> None:
    locked_until = cache.get(_login_keys(key)[1])
    if locked_until is not None and now.timestamp() < locked_until:
        raise AccountLocked(retry_after=math.ceil(locked_until - now.timestamp()))


def _login_failure_record(*, key: str, now: datetime) -> None:
    failures_key, lock_key = _login_keys(key)
    window = int(settings.LOGIN_LOCKOUT.total_seconds())
    cache.add(failures_key, 0, timeout=window)
    try:
        failures = cache.incr(failures_key)
    except ValueError:  # expired between add and incr
        cache.set(failures_key, 1, timeout=window)
        failures = 1
    if failures >= settings.LOGIN_FAILURE_LIMIT:
        locked_until = (now + settings.LOGIN_LOCKOUT).timestamp()
        cache.set(lock_key, locked_until, timeout=window)
        cache.delete(failures_key)


def _login_failures_clear(*, key: str) -> None:
    cache.delete_many(_login_keys(key))


def token_obtain(
    *, password: str, email: str | None = None, phone_number: str | None = None
) -> TokenPair:
    """A JWT pair for valid credentials. LOGIN_FAILURE_LIMIT failures for one
    account lock it for LOGIN_LOCKOUT, even for the right password. Unknown
    accounts are counted and locked alike, so locking reveals nothing."""
    now = timezone.now()
    user = user_find_for_login(email=email, phone_number=phone_number)
    key = (
        f"user:{user.pk}"
        if user is not None
        else f"unknown:{normalize_email(email) if email else phone_number}"
    )
    _login_lock_check(key=key, now=now)
    if user is None:
        User(password=_DUMMY_PASSWORD_HASH).check_password(password)
        _login_failure_record(key=key, now=now)
        raise InvalidCredentials()
    if not user.check_password(password):
        _login_failure_record(key=key, now=now)
        raise InvalidCredentials()
    _login_failures_clear(key=key)
    with transaction.atomic():
        return _tokens_for(user)


def _outstanding_locked(token: RefreshToken) -> OutstandingToken:
    jti = token["jti"]
    OutstandingToken.objects.get_or_create(
        jti=jti,
        defaults={
            "user_id": token.get("user_id"),
            "token": str(token),
            "expires_at": datetime.fromtimestamp(token["exp"], tz=UTC),
        },
    )
    return OutstandingToken.objects.select_for_update().get(jti=jti)


def refresh_token_rotate(*, token: RefreshToken) -> TokenPair:
    """A new pair for a valid refresh token, which is blacklisted. The row lock
    makes a refresh token good for exactly one rotation, even when two requests
    race with it."""
    with transaction.atomic():
        outstanding = _outstanding_locked(token)
        if BlacklistedToken.objects.filter(token=outstanding).exists():
            raise RefreshTokenRevoked()
        BlacklistedToken.objects.create(token=outstanding)
        user = User.objects.filter(pk=token.get("user_id"), is_active=True).first()
        if user is None:
            raise AccountInactive()
        return _tokens_for(user)


def refresh_token_revoke(*, token: RefreshToken, user: User | None = None) -> None:
    """Log out: the refresh token can no longer be used.

    The token is its holder's credential. A caller known by an access token
    (`user`) may only end their own sessions: another account's token is
    RefreshTokenNotYours and stays valid.
    """
    if user is not None and str(token.get(jwt_settings.USER_ID_CLAIM)) != str(
        getattr(user, jwt_settings.USER_ID_FIELD)
    ):
        raise RefreshTokenNotYours()
    with transaction.atomic():
        BlacklistedToken.objects.get_or_create(token=_outstanding_locked(token))


def user_refresh_tokens_revoke(*, user: User) -> int:
    """Blacklist every refresh token the user holds; returns how many."""
    with transaction.atomic():
        live = OutstandingToken.objects.filter(
            user=user, expires_at__gt=timezone.now(), blacklistedtoken__isnull=True
        )
        created = BlacklistedToken.objects.bulk_create(
            [BlacklistedToken(token=token) for token in live], ignore_conflicts=True
        )
        return len(created)


# --- Password change and reset ---------------------------------------------------------------


def password_change_start(
    *, user: User, password: str, new_password: str, language: str
) -> VerificationSession:
    """Check the current password and the new one, then mail a code."""
    if not user.check_password(password):
        raise ValidationError({"password": [WRONG_PASSWORD]})
    _password_validate(password=new_password, user=user, field="new_password")
    with transaction.atomic():
        return _session_open(
            purpose=Purpose.PASSWORD_CHANGE,
            email=user.email,
            user=user,
            language=language,
            payload={"password_hash": make_password(new_password)},
        )


def _password_set(*, user: User, password_hash: str) -> User:
    user.password = password_hash
    user.save(update_fields=["password"])
    user_refresh_tokens_revoke(user=user)
    transaction.on_commit(lambda: _login_failures_clear(key=f"user:{user.pk}"))
    return user


def password_change_confirm(
    *, user: User, session_id: uuid.UUID | str, code: str
) -> User:
    """Set the new password and revoke all the user's refresh tokens."""
    return _session_redeem(
        session_id=session_id,
        purpose=Purpose.PASSWORD_CHANGE,
        code=code,
        user=user,
        apply=lambda session: _password_set(
            user=user, password_hash=session.payload["password_hash"]
        ),
    )


def password_reset_start(*, email: str, language: str) -> VerificationSession:
    """A session for any address. Only an active account's gets a real code and
    an email; for any other the session can never be confirmed."""
    email = normalize_email(email)
    user = user_find_for_login(email=email)
    with transaction.atomic():
        return _session_open(
            purpose=Purpose.PASSWORD_RESET,
            email=email,
            user=user,
            language=language,
            deliverable=user is not None,
        )


def password_reset_confirm(
    *, session_id: uuid.UUID | str, code: str, new_password: str
) -> User:
    """Set a new password for a right code; all refresh tokens are revoked and a
    login lock on the account is lifted."""

    def apply(session: VerificationSession) -> User:
        user = session.user
        if user is None or not user.is_active:
            raise CodeInvalid(attempts_left=0)  # unreachable: no code matches
        _password_validate(password=new_password, user=user, field="new_password")
        return _password_set(user=user, password_hash=make_password(new_password))

    return _session_redeem(
        session_id=session_id,
        purpose=Purpose.PASSWORD_RESET,
        code=code,
        apply=apply,
    )


# --- Profile ---------------------------------------------------------------------------------


def user_profile_update(
    *,
    user: User,
    first_name: str = _UNSET,
    last_name: str = _UNSET,
    phone_number: str | None = _UNSET,
    profile_image: UploadedFile | None = _UNSET,
) -> User:
    """Update the given profile fields. `phone_number` is already in E.164 (or
    None to remove it); a new image replaces (and deletes) the old file."""
    fields = []
    if first_name is not _UNSET:
        user.first_name = first_name
        fields.append("first_name")
    if last_name is not _UNSET:
        user.last_name = last_name
        fields.append("last_name")
    if phone_number is not _UNSET:
        if phone_number and user_phone_number_taken(
            phone_number=phone_number, exclude=user
        ):
            raise ValidationError({"phone_number": [PHONE_NUMBER_TAKEN]})
        user.phone_number = phone_number or None
        fields.append("phone_number")
    old_image = user.profile_image.name if user.profile_image else ""
    if profile_image is not _UNSET:
        if profile_image is None:
            user.profile_image = ""
        else:
            suffix = PurePath(profile_image.name or "").suffix.lower()
            profile_image.name = f"{uuid.uuid4().hex}{suffix}"
            user.profile_image = profile_image
        fields.append("profile_image")
    if not fields:
        return user
    try:
        with transaction.atomic():
            user.save(update_fields=fields)
    except IntegrityError:
        raise ValidationError({"phone_number": [PHONE_NUMBER_TAKEN]}) from None
    new_image = user.profile_image.name if user.profile_image else ""
    if old_image and old_image != new_image:
        storage = user.profile_image.storage
        transaction.on_commit(partial(storage.delete, old_image))
    return user
