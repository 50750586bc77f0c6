"""Domain errors and the one place that turns exceptions into API responses.

Services raise `DomainError` subclasses (never DRF exceptions). Each carries a
stable machine `code` and an HTTP status; `exception_handler` renders them in
DRF's shape: `{"detail": "...", "code": "..."}`.
"""

import logging
import sys

from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DatabaseError, DataError, InterfaceError, OperationalError
from django.http import Http404, JsonResponse
from django.utils.translation import gettext_lazy as _
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

logger = logging.getLogger(__name__)


class DomainError(Exception):
    status_code = status.HTTP_400_BAD_REQUEST
    code = "error"
    message = _("The request could not be completed.")

    def __init__(self, message=None, **params):
        self.params = params
        if message is not None:
            self.message = message
        super().__init__(str(self.detail))

    @property
    def detail(self) -> str:
        return str(self.message) % self.params if self.params else str(self.message)


class InvalidAmount(DomainError):
    code = "invalid_amount"
    message = _("The amount is not valid.")


class InsufficientFunds(DomainError):
    code = "insufficient_funds"
    message = _("Insufficient funds.")


class BalanceLimitExceeded(DomainError):
    code = "balance_limit_exceeded"
    message = _("The wallet's balance would exceed its limit.")


class WalletBlocked(DomainError):
    status_code = status.HTTP_409_CONFLICT
    code = "wallet_blocked"
    message = _("The wallet is blocked and cannot send money.")


class WalletNotFound(DomainError):
    status_code = status.HTTP_404_NOT_FOUND
    code = "wallet_not_found"
    message = _("Wallet not found.")


class WalletExists(DomainError):
    status_code = status.HTTP_409_CONFLICT
    code = "wallet_exists"
    message = _("You already have a wallet in this currency.")


class SameWallet(DomainError):
    code = "same_wallet"
    message = _("The source and destination wallets are the same.")


class UnsupportedCurrency(DomainError):
    code = "unsupported_currency"
    message = _("Unsupported currency.")


class RateUnavailable(DomainError):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    code = "rate_unavailable"
    message = _("No current exchange rate is available for this conversion.")


class IdempotencyConflict(DomainError):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    code = "idempotency_key_reused"
    message = _("This Idempotency-Key was already used with a different request.")


class InvalidInput(DomainError):
    """A value the database refused (django.db.DataError: out of range, not of
    its type) that validation let through: still the client's input, so a 400."""

    code = "invalid_input"
    message = _("A value in the request is out of range or not valid.")


class NotFound(DomainError):
    status_code = status.HTTP_404_NOT_FOUND
    code = "not_found"
    message = _("Not found.")


class Conflict(DomainError):
    status_code = status.HTTP_409_CONFLICT
    code = "conflict"
    message = _("The request conflicts with the current state.")


# --- Top-ups --------------------------------------------------------------------------


class TopupNotFound(DomainError):
    status_code = status.HTTP_404_NOT_FOUND
    code = "topup_not_found"
    message = _("Top-up not found.")


class TopupAlreadyDecided(DomainError):
    status_code = status.HTTP_409_CONFLICT
    code = "topup_already_decided"
    message = _("This top-up has already been decided: %(status)s.")


class TopupExpired(TopupAlreadyDecided):
    code = "topup_expired"
    message = _("This top-up has expired and can no longer be decided.")


class InvalidCommission(DomainError):
    code = "invalid_commission"
    message = _("The commission must be between zero and the top-up amount.")


# --- Accounts: verification codes and login ----------------------------------------------


class VerificationSessionNotFound(DomainError):
    code = "session_not_found"
    message = _("Unknown verification session.")


class CodeInvalid(DomainError):
    code = "code_invalid"
    message = _("The code is wrong. Attempts left: %(attempts_left)s.")


class CodeExpired(DomainError):
    code = "code_expired"
    message = _("The code has expired. Request a new one.")


class CodeUsed(DomainError):
    code = "code_used"
    message = _("This code has already been used.")


class VerificationSessionDead(DomainError):
    code = "session_dead"
    message = _("Too many wrong codes: this session is closed. Start again.")


class RetryLater(DomainError):
    """A 429 carrying `retry_after` (whole seconds), which the API sends as a
    Retry-After header."""

    status_code = status.HTTP_429_TOO_MANY_REQUESTS
    code = "retry_later"
    message = _("Too many requests. Retry in %(retry_after)s seconds.")

    def __init__(self, message=None, *, retry_after: int, **params):
        self.retry_after = retry_after
        super().__init__(message, retry_after=retry_after, **params)


class ResendTooSoon(RetryLater):
    code = "resend_too_soon"
    message = _("A new code can be requested in %(retry_after)s seconds.")


class AccountLocked(RetryLater):
    code = "account_locked"
    message = _("Too many failed logins. Try again in %(retry_after)s seconds.")


class InvalidCredentials(DomainError):
    status_code = status.HTTP_401_UNAUTHORIZED
    code = "invalid_credentials"
    message = _("No active account found with the given credentials.")


class RefreshTokenRevoked(DomainError):
    status_code = status.HTTP_401_UNAUTHORIZED
    code = "token_not_valid"
    message = _("Token is blacklisted")


class RefreshTokenNotYours(DomainError):
    code = "token_not_yours"
    message = _("This refresh token belongs to another account.")


class AccountInactive(DomainError):
    status_code = status.HTTP_401_UNAUTHORIZED
    code = "no_active_account"
    message = _("No active account found for the given token.")


class EmailTaken(DomainError):
    code = "email_taken"
    message = _("A user with this email already exists.")


class PhoneNumberTaken(DomainError):
    code = "phone_taken"
    message = _("A user with this phone number already exists.")


# --- Fees ---------------------------------------------------------------------------------


class FeeChargeNotWaivable(DomainError):
    status_code = status.HTTP_409_CONFLICT
    code = "fee_charge_not_waivable"
    message = _("Only an outstanding fee debt can be waived.")


DATABASE_UNAVAILABLE = _("The service is temporarily unavailable. Please retry.")


def _unavailable_body() -> dict:
    return {"detail": str(DATABASE_UNAVAILABLE), "code": "service_unavailable"}


def exception_handler(exc, context):
    if isinstance(exc, DomainError):
        return Response(
            {"detail": exc.detail, "code": exc.code}, status=exc.status_code
        )
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(
            exc.message_dict if hasattr(exc, "error_dict") else exc.messages
        )
    elif isinstance(exc, (OperationalError, InterfaceError)):
        logger.warning("database unavailable: %s", exc)
        return Response(
            _unavailable_body(),
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": "1"},
        )
    elif isinstance(exc, DataError):
        # Validation should have caught it: one line to find that gap by, no
        # traceback, and the client's 400.
        logger.warning("the database refused a value: %s", str(exc).splitlines()[0])
        refused = InvalidInput()
        return Response(
            {"detail": refused.detail, "code": refused.code},
            status=refused.status_code,
        )
    elif isinstance(exc, DatabaseError):
        return None  # a bug: let Django log it and answer 500 (JSON, below)
    response = drf_exception_handler(exc, context)
    if response is not None and isinstance(response.data, dict):
        detail = response.data.get("detail")
        if detail is not None and "code" not in response.data:
            response.data["code"] = getattr(detail, "code", None) or _default_code(exc)
    return response


def _default_code(exc) -> str:
    if isinstance(exc, (Http404, exceptions.NotFound)):
        return "not_found"
    if isinstance(exc, (PermissionDenied, exceptions.PermissionDenied)):
        return "permission_denied"
    return getattr(exc, "default_code", "error")


# Django-level handlers (wired in urls.py): JSON for everything outside DRF views.
def json_404(request, exception=None):
    return JsonResponse(
        {"detail": str(_("Not found.")), "code": "not_found"}, status=404
    )


def json_400(request, exception=None):
    return JsonResponse(
        {"detail": str(_("Bad request.")), "code": "bad_request"}, status=400
    )


def json_403(request, exception=None):
    return JsonResponse(
        {"detail": str(_("Permission denied.")), "code": "permission_denied"},
        status=403,
    )


def json_500(request):
    # Django calls this while still handling the exception, so we can tell an
    # unreachable database (503, retry) from a bug (500).
    exc = sys.exc_info()[1]
    if isinstance(exc, (OperationalError, InterfaceError)):
        response = JsonResponse(_unavailable_body(), status=503)
        response["Retry-After"] = "1"
        return response
    return JsonResponse(
        {"detail": str(_("Internal server error.")), "code": "server_error"}, status=500
    )
