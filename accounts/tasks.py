from celery import shared_task

from accounts.emails import verification_email_send


@shared_task(
    autoretry_for=(OSError,),  # SMTP errors and refused connections
    retry_backoff=True,
    retry_backoff_max=60,
    max_retries=5,
)
def verification_code_send(session_id: str, code: str, language: str) -> bool:
    """Mail a verification code (scheduled on commit by the service that made it)."""
    return verification_email_send(session_id=session_id, code=code, language=language)
