"""Accounts' error codes and domain errors: sign-up and password codes, login,
tokens. The codes also name what simplejwt's authentication answers (it is
accounts' authentication), so the API's codes are all listed in one place per app."""

from django.utils.translation import gettext_lazy as _
from rest_framework import status

from wallet_project.errors import DomainError, ErrorCodes, RetryLater


class ErrorCode(ErrorCodes):
    SESSION_NOT_FOUND = "session_not_found"
    CODE_INVALID = "code_invalid"
    CODE_EXPIRED = "code_expired"
    CODE_USED = "code_used"
    SESSION_DEAD = "session_dead"
    RESEND_TOO_SOON = "resend_too_soon"
    ACCOUNT_LOCKED = "account_locked"
    INVALID_CREDENTIALS = "invalid_credentials"
    TOKEN_NOT_VALID = "token_not_valid"
    TOKEN_NOT_YOURS = "token_not_yours"
    NO_ACTIVE_ACCOUNT = "no_active_account"
    EMAIL_TAKEN = "email_taken"
    PHONE_TAKEN = "phone_taken"
    # simplejwt's authentication (accounts.authentication) answers with these:
    # no `Bearer <token>` header, the token's user gone or deactivated, or the
    # password changed after the token was issued.
    BAD_AUTHORIZATION_HEADER = "bad_authorization_header"
    USER_NOT_FOUND = "user_not_found"
    USER_INACTIVE = "user_inactive"
    PASSWORD_CHANGED = "password_changed"


class VerificationSessionNotFound(DomainError):
    code = ErrorCode.SESSION_NOT_FOUND
    message = _("Unknown verification session.")


class CodeInvalid(DomainError):
    code = ErrorCode.CODE_INVALID
    message = _("The code is wrong. Attempts left: %(attempts_left)s.")


class CodeExpired(DomainError):
    code = ErrorCode.CODE_EXPIRED
    message = _("The code has expired. Request a new one.")


class CodeUsed(DomainError):
    code = ErrorCode.CODE_USED
    message = _("This code has already been used.")


class VerificationSessionDead(DomainError):
    code = ErrorCode.SESSION_DEAD
    message = _("Too many wrong codes: this session is closed. Start again.")


class ResendTooSoon(RetryLater):
    code = ErrorCode.RESEND_TOO_SOON
    message = _("A new code can be requested in %(retry_after)s seconds.")


class AccountLocked(RetryLater):
    code = ErrorCode.ACCOUNT_LOCKED
    message = _("Too many failed logins. Try again in %(retry_after)s seconds.")


class InvalidCredentials(DomainError):
    status_code = status.HTTP_401_UNAUTHORIZED
    code = ErrorCode.INVALID_CREDENTIALS
    message = _("No active account found with the given credentials.")


class RefreshTokenRevoked(DomainError):
    status_code = status.HTTP_401_UNAUTHORIZED
    code = ErrorCode.TOKEN_NOT_VALID
    message = _("Token is blacklisted")


class RefreshTokenNotYours(DomainError):
    code = ErrorCode.TOKEN_NOT_YOURS
    message = _("This refresh token belongs to another account.")


class AccountInactive(DomainError):
    status_code = status.HTTP_401_UNAUTHORIZED
    code = ErrorCode.NO_ACTIVE_ACCOUNT
    message = _("No active account found for the given token.")


class EmailTaken(DomainError):
    code = ErrorCode.EMAIL_TAKEN
    message = _("A user with this email already exists.")


class PhoneNumberTaken(DomainError):
    code = ErrorCode.PHONE_TAKEN
    message = _("A user with this phone number already exists.")
