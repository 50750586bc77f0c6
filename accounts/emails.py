"""The verification-code email, rendered and sent. Called by the Celery task
(accounts.tasks) that the services schedule on commit; it needs nothing from
the services, so the services can import the task without a cycle."""

import uuid

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.template.loader import select_template
from django.utils import timezone, translation

from accounts.codes import code_matches, session_usable_or_error
from accounts.models import VerificationSession


def verification_email_send(
    *, session_id: uuid.UUID | str, code: str, language: str
) -> bool:
    """Mail `code` to the session's address in `language` (plain text and HTML).
    Skips (returns False) a code that can no longer be used: the session is gone,
    used, dead, expired, or a resend replaced the code."""
    session = VerificationSession.objects.filter(pk=session_id).first()
    if (
        session is None
        or session_usable_or_error(session=session, now=timezone.now())
        or not code_matches(session=session, code=code)
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
