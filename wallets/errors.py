"""Wallets' error codes and domain errors: which wallet, which currency, which
rate."""

from django.utils.translation import gettext_lazy as _
from rest_framework import status

from wallet_project.errors import DomainError, ErrorCodes


class ErrorCode(ErrorCodes):
    WALLET_NOT_FOUND = "wallet_not_found"
    WALLET_EXISTS = "wallet_exists"
    UNSUPPORTED_CURRENCY = "unsupported_currency"
    RATE_UNAVAILABLE = "rate_unavailable"


class WalletNotFound(DomainError):
    status_code = status.HTTP_404_NOT_FOUND
    code = ErrorCode.WALLET_NOT_FOUND
    message = _("Wallet not found.")


class WalletExists(DomainError):
    status_code = status.HTTP_409_CONFLICT
    code = ErrorCode.WALLET_EXISTS
    message = _("You already have a wallet in this currency.")


class UnsupportedCurrency(DomainError):
    code = ErrorCode.UNSUPPORTED_CURRENCY
    message = _("Unsupported currency.")


class RateUnavailable(DomainError):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    code = ErrorCode.RATE_UNAVAILABLE
    message = _("No current exchange rate is available for this conversion.")
    # Retry-After: rates are refreshed hourly (and retried sooner after a failure).
    retry_after = 60
