"""The verification-code email, rendered and sent, and its outbox sweep. Called by
the Celery tasks (accounts.tasks) that the services schedule on commit; it needs
nothing from the services, so the services can import the tasks without a cycle.

The session is the email's outbox: its `code_nonce` (the code is derived from
it, accounts.codes) and `code_emailed_at` (null until the email went out). A
broker message lost with Redis, or a worker killed before it sent, leaves the
session unsent; `verification_emails_unsent` finds those and the beat task sends
them again, with the same code. At least once: a slow message and the sweep may
both send it (the same code twice, harmless)."""

import uuid
from datetime import datetime

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.template.loader import select_template
from django.utils import timezone, translation

from accounts.codes import code_derive, code_matches, session_usable_or_error
from accounts.models import VerificationSession


def verification_email_send(*, session_id: uuid.UUID | str, nonce: str) -> bool:
    """Mail the code of `nonce` to the session's address in its language (plain
    text and HTML), then mark it emailed. Skips (returns False) a code that can
    no longer be used: the session is gone, used, dead, expired, or a resend
    replaced the code (another nonce, or a SECRET_KEY rotated since)."""
    session = VerificationSession.objects.filter(pk=session_id).first()
    if session is None or not nonce or session.code_nonce != nonce:
        return False
    code = code_derive(session_id=session.id, nonce=nonce)
    if not _email_send(session=session, code=code, language=session.code_language):
        return False
    VerificationSession.objects.filter(
        pk=session.pk, code_nonce=nonce, code_emailed_at__isnull=True
    ).update(code_emailed_at=timezone.now())
    return True


def verification_email_send_code(
    *, session_id: uuid.UUID | str, code: str, language: str
) -> bool:
    """The same for a message queued before codes were derived (the code in the
    message itself): only for messages in flight across that upgrade."""
    session = VerificationSession.objects.filter(pk=session_id).first()
    if session is None:
        return False
    return _email_send(session=session, code=code, language=language)


def verification_emails_unsent(
    *, now: datetime | None = None, limit: int = 1000
) -> list[tuple[str, str]]:
    """(session id, nonce) of the codes still usable whose email has not gone out
    VERIFICATION_EMAIL_RESEND_AFTER after they were issued, oldest first."""
    now = now or timezone.now()
    rows = (
        VerificationSession.objects.filter(
            code_emailed_at__isnull=True,
            code_nonce__gt="",
            code_issued_at__lte=now - settings.VERIFICATION_EMAIL_RESEND_AFTER,
            used_at__isnull=True,
            expires_at__gt=now,
            attempts__lt=settings.VERIFICATION_CODE_MAX_ATTEMPTS,
        )
        .order_by("code_issued_at")
        .values_list("pk", "code_nonce")[:limit]
    )
    return [(str(pk), nonce) for pk, nonce in rows]


def _email_send(*, session: VerificationSession, code: str, language: str) -> bool:
    if session_usable_or_error(session=session, now=timezone.now()) or not code_matches(
        session=session, code=code
    ):
        return False
    language = translation.get_supported_language_variant(language or "en")
    context = {
        "code": code,
        "purpose": session.purpose,
        "email": session.email,
        "minutes": int(settings.VERIFICATION_CODE_TTL.total_seconds() // 60),
    }
    with translation.override(language):

        def render(name: str) -> str:
            template = select_template(
                [f"emails/{language}/{name}", f"emails/en/{name}"]
            )
            return template.render(context)

        subject = " ".join(render("verification_code_subject.txt").split())
        message = EmailMultiAlternatives(
            subject=subject,
            body=render("verification_code.txt"),
            to=[session.email],
        )
        message.attach_alternative(render("verification_code.html"), "text/html")
    message.send()
    return True
