"""Verification codes, the one mechanism behind every emailed code: a 6-digit
code derived from a random nonce (`secrets`) by an HMAC keyed with SECRET_KEY,
stored as another HMAC-SHA256 keyed with SECRET_KEY, compared in constant time.
The sign-up and password services (accounts.services) issue and redeem them; the
email (accounts.emails) re-derives the code from the session's nonce and checks
it is still good to send.

Why derived: the email must survive a lost broker message (Redis killed, a
worker gone). PostgreSQL then holds everything needed to send it again (the
session, its nonce) without ever holding the code itself, and the Celery
message carries no code either."""

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


def code_nonce_new() -> str:
    return secrets.token_hex(16)


def code_derive(*, session_id: uuid.UUID | str, nonce: str) -> str:
    """The code of `nonce`: unpredictable without SECRET_KEY (an HMAC of a random
    nonce), the same every time it is derived again (a resent email)."""
    message = f"verification-code:{session_id}:{nonce}".encode()
    digest = hmac.new(settings.SECRET_KEY.encode(), message, hashlib.sha256).digest()
    # 64 bits mod 10**6: a bias below 1e-13.
    number = int.from_bytes(digest[:8], "big") % 10**CODE_DIGITS
    return f"{number:0{CODE_DIGITS}d}"


def code_hash(*, session_id: uuid.UUID | str, code: str) -> str:
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
