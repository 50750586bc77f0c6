"""The email telling an owner that their webhook endpoint was disabled, sent
by a Celery task (transactions.tasks) after the disabling commits. Users have
no stored language: it goes out in LANGUAGE_CODE unless told otherwise (the
templates exist in every language of LANGUAGES)."""

from __future__ import annotations

import uuid
from datetime import UTC

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.template.loader import select_template
from django.utils import translation

from transactions.models import WebhookEndpoint


def endpoint_disabled_email_send(
    *, endpoint_id: uuid.UUID | str, language: str | None = None
) -> bool:
    """Mail the endpoint's owner (plain text and HTML); False when there is
    nothing to say: the endpoint is gone or enabled again."""
    endpoint = (
        WebhookEndpoint.objects.select_related("user")
        .filter(pk=endpoint_id, status=WebhookEndpoint.Status.DISABLED)
        .first()
    )
    if endpoint is None or not endpoint.user.email:
        return False
    language = translation.get_supported_language_variant(
        language or settings.LANGUAGE_CODE
    )
    since = endpoint.failing_since or endpoint.disabled_at
    context = {
        "url": endpoint.url,
        "failing_since": since.astimezone(UTC).strftime("%Y-%m-%d %H:%M")
        if since
        else "",
    }
    with translation.override(language):

        def render(name: str) -> str:
            template = select_template(
                [f"emails/{language}/{name}", f"emails/en/{name}"]
            )
            return template.render(context)

        message = EmailMultiAlternatives(
            subject=" ".join(render("webhook_endpoint_disabled_subject.txt").split()),
            body=render("webhook_endpoint_disabled.txt"),
            to=[endpoint.user.email],
        )
        message.attach_alternative(
            render("webhook_endpoint_disabled.html"), "text/html"
        )
    message.send()
    return True
