from accounts.models import User, normalize_email


def user_find_for_login(
    *, email: str | None = None, phone_number: str | None = None
) -> User | None:
    """The active user with this email or phone number, or None."""
    query = User.objects.filter(is_active=True)
    if email:
        return query.filter(email=normalize_email(email)).first()
    if phone_number:
        return query.filter(phone_number=phone_number).first()
    return None
