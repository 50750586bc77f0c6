"""The verification email's outbox: a code whose broker message was lost (Redis
killed, a worker gone before it sent) is mailed again, with the same code, by the
beat sweep; PostgreSQL holds what is needed to send it (the session and its
nonce) but never the code, and the message carries no code."""

from datetime import timedelta

import pytest
import time_machine
from django.core import mail
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.emails import verification_emails_unsent
from accounts.models import VerificationSession
from accounts.tasks import verification_email_task, verification_emails_sweep
from accounts.tests.conftest import code_in

pytestmark = pytest.mark.django_db

PASSWORD = "sturdy-kettle-4821"


def _signup_losing_the_message(captured) -> tuple[str, list]:
    """A sign-up whose on-commit enqueue never runs: the broker message is lost."""
    with captured(execute=False) as callbacks:
        response = APIClient().post(
            "/api/v1/auth/signup/",
            {"email": "lost@example.com", "password": PASSWORD},
            format="json",
        )
    assert response.status_code == 201, response.json()
    return response.json()["session_id"], callbacks


def test_a_lost_message_is_swept_and_the_code_it_mails_confirms_the_signup(
    celery_eager, django_capture_on_commit_callbacks
):
    session_id, callbacks = _signup_losing_the_message(
        django_capture_on_commit_callbacks
    )
    assert len(callbacks) == 1 and not mail.outbox
    session = VerificationSession.objects.get(pk=session_id)
    assert session.code_emailed_at is None and session.code_nonce
    # Not before the grace period: the message may just be slow.
    assert verification_emails_unsent() == []

    with time_machine.travel(timezone.now() + timedelta(seconds=31)):
        assert verification_emails_sweep.delay().get() == 1

    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["lost@example.com"]
    code = code_in(mail.outbox[0])
    session.refresh_from_db()
    assert session.code_emailed_at is not None
    assert code not in (session.code_nonce, session.code_hash)
    # Sent: never swept again.
    with time_machine.travel(timezone.now() + timedelta(seconds=60)):
        assert verification_emails_sweep.delay().get() == 0
    confirmed = APIClient().post(
        "/api/v1/auth/signup/confirm/",
        {"session_id": session_id, "code": code},
        format="json",
    )
    assert confirmed.status_code == 201, confirmed.json()


def test_the_message_carries_no_code_and_a_late_duplicate_sends_the_same_code(
    celery_eager, django_capture_on_commit_callbacks
):
    session_id, callbacks = _signup_losing_the_message(
        django_capture_on_commit_callbacks
    )
    (enqueue,) = callbacks
    session = VerificationSession.objects.get(pk=session_id)
    assert enqueue.args == (session_id, session.code_nonce)  # the id and the nonce
    enqueue()  # the original message, late
    verification_email_task.delay(session_id, session.code_nonce)  # and the sweep's
    assert len(mail.outbox) == 2
    assert code_in(mail.outbox[0]) == code_in(mail.outbox[1])


def test_a_resend_replaces_the_code_so_the_old_message_sends_nothing(
    celery_eager, django_capture_on_commit_callbacks
):
    session_id, _ = _signup_losing_the_message(django_capture_on_commit_callbacks)
    old_nonce = VerificationSession.objects.get(pk=session_id).code_nonce
    with time_machine.travel(timezone.now() + timedelta(seconds=61)):
        with django_capture_on_commit_callbacks(execute=True):
            resent = APIClient().post(
                "/api/v1/auth/signup/resend/", {"session_id": session_id}, format="json"
            )
        assert resent.status_code == 200, resent.json()
    assert len(mail.outbox) == 1
    assert verification_email_task.delay(session_id, old_nonce).get() is False
    assert len(mail.outbox) == 1
    with time_machine.travel(timezone.now() + timedelta(seconds=120)):
        assert verification_emails_unsent() == []  # the resend's email went out


def test_an_expired_used_or_dead_session_is_not_swept(
    celery_eager, django_capture_on_commit_callbacks
):
    session_id, _ = _signup_losing_the_message(django_capture_on_commit_callbacks)
    later = timezone.now() + timedelta(seconds=31)
    assert [s for s, _ in verification_emails_unsent(now=later)] == [session_id]
    assert verification_emails_unsent(now=later + timedelta(minutes=10)) == []
    VerificationSession.objects.filter(pk=session_id).update(attempts=5)
    assert verification_emails_unsent(now=later) == []
    VerificationSession.objects.filter(pk=session_id).update(
        attempts=0, used_at=timezone.now()
    )
    assert verification_emails_unsent(now=later) == []
