from celery import shared_task

from accounts.emails import (
    verification_email_send,
    verification_email_send_code,
    verification_emails_unsent,
)

_SMTP_RETRIES = {
    "autoretry_for": (OSError,),  # SMTP errors and refused connections
    "retry_backoff": True,
    "retry_backoff_max": 60,
    "max_retries": 5,
}


@shared_task(**_SMTP_RETRIES)
def verification_email_task(session_id: str, nonce: str) -> bool:
    """Mail a verification code (scheduled on commit by the service that made it,
    and again by the sweep if it did not go out)."""
    return verification_email_send(session_id=session_id, nonce=nonce)


@shared_task
def verification_emails_sweep() -> int:
    """Enqueue again every usable code whose email has not gone out (its broker
    message lost, its worker killed, SMTP down past the task's retries). Beat:
    every VERIFICATION_EMAIL_SWEEP_SECONDS."""
    unsent = verification_emails_unsent()
    for session_id, nonce in unsent:
        verification_email_task.delay(session_id, nonce)
    return len(unsent)


@shared_task(**_SMTP_RETRIES)
def verification_code_send(session_id: str, code: str, language: str) -> bool:
    """Messages queued before codes were derived (they carry the code): kept for
    an upgrade with messages in flight; nothing enqueues it any more."""
    return verification_email_send_code(
        session_id=session_id, code=code, language=language
    )
