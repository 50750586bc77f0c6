from uuid import UUID

from django.core.exceptions import ValidationError

from accounts.models import User, VerificationSession, normalize_email
from accounts.phones import phone_number_normalize


def user_find_for_login(
    *, email: str | None = None, phone_number: str | None = None
) -> User | None:
    """The active user with this email or phone number (in any format
    `phonenumbers` reads), or None."""
    query = User.objects.filter(is_active=True)
    if email:
        return query.filter(email=normalize_email(email)).first()
    if phone_number:
        try:
            phone_number = phone_number_normalize(phone_number)
        except ValidationError:
            return None
        return query.filter(phone_number=phone_number).first()
    return None


def user_email_taken(*, email: str) -> bool:
    return User.objects.filter(email=normalize_email(email)).exists()


def user_phone_number_taken(*, phone_number: str, exclude: User | None = None) -> bool:
    query = User.objects.filter(phone_number=phone_number)
    if exclude is not None:
        query = query.exclude(pk=exclude.pk)
    return query.exists()


def verification_session_email(*, session_id: UUID | str) -> str | None:
    """The address a verification session mails its codes to (for throttling)."""
    try:
        return (
            VerificationSession.objects.filter(pk=session_id)
            .values_list("email", flat=True)
            .first()
        )
    except (ValidationError, ValueError):
        return None
