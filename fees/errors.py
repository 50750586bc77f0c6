"""The fee app's error codes and domain errors."""

from django.utils.translation import gettext_lazy as _
from rest_framework import status

from wallet_project.errors import DomainError, ErrorCodes


class ErrorCode(ErrorCodes):
    FEE_CHARGE_NOT_WAIVABLE = "fee_charge_not_waivable"


class FeeChargeNotWaivable(DomainError):
    status_code = status.HTTP_409_CONFLICT
    code = ErrorCode.FEE_CHARGE_NOT_WAIVABLE
    message = _("Only an outstanding fee debt can be waived.")
