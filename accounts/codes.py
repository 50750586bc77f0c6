"""Verification codes, the one mechanism behind every emailed code: a 6-digit
code from `secrets`, stored as an HMAC-SHA256 keyed with SECRET_KEY, compared in
constant time. The sign-up and password services (accounts.services) issue and
redeem them; the email (accounts.emails) checks a code is still good to send."""

import hashlib
import hmac
import secrets
import uuid
from datetime import datetime

from django.conf import settings

from accounts.errors import CodeExpired, CodeUsed, VerificationSessionDead
from accounts.models import VerificationSession
from wallet_project.errors import DomainError

CODE_DIGITS = 6


def code_new() -> str:
    return f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"


def code_hash(*, session_id: uuid.UUID, code: str) -> str:
    message = f"{session_id}:{code}".encode()
    return hmac.new(settings.SECRET_KEY.encode(), message, hashlib.sha256).hexdigest()


def code_matches(*, session: VerificationSession, code: str) -> bool:
    return hmac.compare_digest(
        code_hash(session_id=session.id, code=code), session.code_hash
    )


def session_usable_or_error(
    *, session: VerificationSession, now: datetime
) -> DomainError | None:
    """Why no code of the session can be used any more (None: it still can)."""
    if session.used_at is not None:
        return CodeUsed()
    if session.attempts >= settings.VERIFICATION_CODE_MAX_ATTEMPTS:
        return VerificationSessionDead()
    if now >= session.expires_at:
        return CodeExpired()
    return None
