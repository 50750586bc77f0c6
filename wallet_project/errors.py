"""Error codes, the domain errors every app builds on, and the one place that
turns exceptions into API responses.

Services raise `DomainError` subclasses (never DRF exceptions). Each carries a
stable machine `code` and an HTTP status; `exception_handler` renders them in
DRF's shape: `{"detail": "...", "code": "..."}`.

Every code is a member of one app's `ErrorCode` enum (an `ErrorCodes`), next to
that app's errors: accounts.errors, wallets.errors, transactions.ledger.errors,
fees.errors, and the project's own and the framework's below. A DomainError
whose code is not in an enum does not import. The API schema publishes them all
as one `ErrorCode` (wallet_project.api.ERROR_CODES).
"""

import logging
import sys
from enum import StrEnum

from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DatabaseError, DataError, InterfaceError, OperationalError
from django.http import Http404, JsonResponse
from django.utils.translation import gettext_lazy as _
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

logger = logging.getLogger(__name__)


class ErrorCodes(StrEnum):
    """The base of every app's `ErrorCode` enum."""


class ErrorCode(ErrorCodes):
    """The project's own codes, and those DRF answers with (its exceptions'
    default codes, which exception_handler adds to every error body)."""

    ERROR = "error"
    INVALID_INPUT = "invalid_input"
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    RETRY_LATER = "retry_later"
    BAD_REQUEST = "bad_request"
    PERMISSION_DENIED = "permission_denied"
    SERVICE_UNAVAILABLE = "service_unavailable"
    SERVER_ERROR = "server_error"
    PARSE_ERROR = "parse_error"
    AUTHENTICATION_FAILED = "authentication_failed"
    NOT_AUTHENTICATED = "not_authenticated"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    NOT_ACCEPTABLE = "not_acceptable"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    THROTTLED = "throttled"


class DomainError(Exception):
    status_code = status.HTTP_400_BAD_REQUEST
    code: ErrorCodes = ErrorCode.ERROR
    message = _("The request could not be completed.")

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if not isinstance(cls.code, ErrorCodes):
            raise TypeError(
                f"{cls.__qualname__}.code must be a member of an ErrorCode enum, "
                f"not {cls.code!r}"
            )

    def __init__(self, message=None, **params):
        self.params = params
        if message is not None:
            self.message = message
        super().__init__(str(self.detail))

    @property
    def detail(self) -> str:
        return str(self.message) % self.params if self.params else str(self.message)


class InvalidInput(DomainError):
    """A value the database refused (django.db.DataError: out of range, not of
    its type) that validation let through: still the client's input, so a 400."""

    code: ErrorCodes = ErrorCode.INVALID_INPUT
    message = _("A value in the request is out of range or not valid.")


class NotFound(DomainError):
    status_code = status.HTTP_404_NOT_FOUND
    code: ErrorCodes = ErrorCode.NOT_FOUND
    message = _("Not found.")


class Conflict(DomainError):
    status_code = status.HTTP_409_CONFLICT
    code: ErrorCodes = ErrorCode.CONFLICT
    message = _("The request conflicts with the current state.")


class RetryLater(DomainError):
    """A 429 carrying `retry_after` (whole seconds), which the API sends as a
    Retry-After header."""

    status_code = status.HTTP_429_TOO_MANY_REQUESTS
    code: ErrorCodes = ErrorCode.RETRY_LATER
    message = _("Too many requests. Retry in %(retry_after)s seconds.")

    def __init__(self, message=None, *, retry_after: int, **params):
        self.retry_after = retry_after
        super().__init__(message, retry_after=retry_after, **params)


DATABASE_UNAVAILABLE = _("The service is temporarily unavailable. Please retry.")


def _unavailable_body() -> dict:
    return {"detail": str(DATABASE_UNAVAILABLE), "code": ErrorCode.SERVICE_UNAVAILABLE}


# Every 429 and 503 says when to come back (the schema documents the header):
# the error's own `retry_after` (seconds), else this.
RETRY_AFTER_SECONDS = 1
_RETRY_STATUSES = {
    status.HTTP_429_TOO_MANY_REQUESTS,
    status.HTTP_503_SERVICE_UNAVAILABLE,
}


def exception_handler(exc, context):
    response = _error_response(exc, context)
    if (
        response is not None
        and response.status_code in _RETRY_STATUSES
        and "Retry-After" not in response
    ):
        retry_after = getattr(exc, "retry_after", None) or RETRY_AFTER_SECONDS
        response["Retry-After"] = str(retry_after)
    return response


def _error_response(exc, context):
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
        return Response(_unavailable_body(), status=status.HTTP_503_SERVICE_UNAVAILABLE)
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
        return ErrorCode.NOT_FOUND
    if isinstance(exc, (PermissionDenied, exceptions.PermissionDenied)):
        return ErrorCode.PERMISSION_DENIED
    return getattr(exc, "default_code", ErrorCode.ERROR)


# Django-level handlers (wired in urls.py): JSON for everything outside DRF views.
def json_404(request, exception=None):
    return JsonResponse(
        {"detail": str(_("Not found.")), "code": ErrorCode.NOT_FOUND}, status=404
    )


def json_400(request, exception=None):
    return JsonResponse(
        {"detail": str(_("Bad request.")), "code": ErrorCode.BAD_REQUEST}, status=400
    )


def json_403(request, exception=None):
    return JsonResponse(
        {"detail": str(_("Permission denied.")), "code": ErrorCode.PERMISSION_DENIED},
        status=403,
    )


def json_500(request):
    # Django calls this while still handling the exception, so we can tell an
    # unreachable database (503, retry) from a bug (500).
    exc = sys.exc_info()[1]
    if isinstance(exc, (OperationalError, InterfaceError)):
        response = JsonResponse(_unavailable_body(), status=503)
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
    return JsonResponse(
        {"detail": str(_("Internal server error.")), "code": ErrorCode.SERVER_ERROR},
        status=500,
    )
