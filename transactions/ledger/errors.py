"""The ledger's error codes and domain errors: why a posting is refused (the
rules in rules.py word them), top-ups, adjustments, holds, payouts,
idempotency keys."""

from django.utils.translation import gettext_lazy as _
from rest_framework import status

from wallet_project.errors import Conflict, DomainError, ErrorCodes


class ErrorCode(ErrorCodes):
    INVALID_AMOUNT = "invalid_amount"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    BALANCE_LIMIT_EXCEEDED = "balance_limit_exceeded"
    WALLET_BLOCKED = "wallet_blocked"
    SAME_WALLET = "same_wallet"
    IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused"
    TOPUP_NOT_FOUND = "topup_not_found"
    TOPUP_ALREADY_DECIDED = "topup_already_decided"
    TOPUP_EXPIRED = "topup_expired"
    INVALID_COMMISSION = "invalid_commission"
    ADJUSTMENT_SAME_OPERATOR = "adjustment_same_operator"
    REASON_REQUIRED = "reason_required"
    TRANSACTION_NOT_PENDING = "transaction_not_pending"
    HOLD_NOT_FOUND = "hold_not_found"
    HOLD_NOT_ACTIVE = "hold_not_active"
    HOLD_EXPIRED = "hold_expired"
    HOLD_OF_PAYOUT = "hold_of_payout"
    PAYOUT_NOT_FOUND = "payout_not_found"
    PAYOUT_ALREADY_DECIDED = "payout_already_decided"
    PAYOUT_EXPIRED = "payout_expired"
    STATEMENT_TOO_LARGE = "statement_too_large"
    REVERSAL_NOT_ALLOWED = "reversal_not_allowed"
    REVERSAL_EXCEEDS_ORIGINAL = "reversal_exceeds_original"


class InvalidAmount(DomainError):
    code = ErrorCode.INVALID_AMOUNT
    message = _("The amount is not valid.")


class InsufficientFunds(DomainError):
    code = ErrorCode.INSUFFICIENT_FUNDS
    message = _("Insufficient funds.")


class BalanceLimitExceeded(DomainError):
    code = ErrorCode.BALANCE_LIMIT_EXCEEDED
    message = _("The wallet's balance would exceed its limit.")


class WalletBlocked(DomainError):
    status_code = status.HTTP_409_CONFLICT
    code = ErrorCode.WALLET_BLOCKED
    message = _("The wallet is blocked and cannot send money.")


class SameWallet(DomainError):
    code = ErrorCode.SAME_WALLET
    message = _("The source and destination wallets are the same.")


class IdempotencyConflict(DomainError):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    code = ErrorCode.IDEMPOTENCY_KEY_REUSED
    message = _("This Idempotency-Key was already used with a different request.")


class TopupNotFound(DomainError):
    status_code = status.HTTP_404_NOT_FOUND
    code = ErrorCode.TOPUP_NOT_FOUND
    message = _("Top-up not found.")


class TopupAlreadyDecided(DomainError):
    status_code = status.HTTP_409_CONFLICT
    code = ErrorCode.TOPUP_ALREADY_DECIDED
    message = _("This top-up has already been decided: %(status)s.")


class TopupExpired(TopupAlreadyDecided):
    code = ErrorCode.TOPUP_EXPIRED
    message = _("This top-up has expired and can no longer be decided.")


class InvalidCommission(DomainError):
    code = ErrorCode.INVALID_COMMISSION
    message = _("The commission must be between zero and the top-up amount.")


class AdjustmentSameOperator(Conflict):
    code = ErrorCode.ADJUSTMENT_SAME_OPERATOR
    message = _("An adjustment must be confirmed by a different operator.")


class ReasonRequired(DomainError):
    code = ErrorCode.REASON_REQUIRED
    message = _("A reason is required.")


class TransactionNotPending(Conflict):
    code = ErrorCode.TRANSACTION_NOT_PENDING
    message = _("This transaction was already decided.")


class HoldNotFound(DomainError):
    status_code = status.HTTP_404_NOT_FOUND
    code = ErrorCode.HOLD_NOT_FOUND
    message = _("Hold not found.")


class HoldNotActive(Conflict):
    code = ErrorCode.HOLD_NOT_ACTIVE
    message = _("This hold is no longer active: %(status)s.")


class HoldExpired(HoldNotActive):
    code = ErrorCode.HOLD_EXPIRED
    message = _("This hold has expired and can no longer be captured.")


class HoldOfPayout(Conflict):
    code = ErrorCode.HOLD_OF_PAYOUT
    message = _("This hold belongs to a payout: fail or cancel the payout instead.")


class PayoutNotFound(DomainError):
    status_code = status.HTTP_404_NOT_FOUND
    code = ErrorCode.PAYOUT_NOT_FOUND
    message = _("Payout not found.")


class PayoutAlreadyDecided(Conflict):
    code = ErrorCode.PAYOUT_ALREADY_DECIDED
    message = _("This payout has already been decided: %(status)s.")


class PayoutExpired(PayoutAlreadyDecided):
    code = ErrorCode.PAYOUT_EXPIRED
    message = _("This payout has expired and can no longer be decided.")


class ReversalNotAllowed(DomainError):
    code = ErrorCode.REVERSAL_NOT_ALLOWED
    message = _(
        "Only a posted transaction that is not itself a reversal can be reversed."
    )


class ReversalExceedsOriginal(Conflict):
    code = ErrorCode.REVERSAL_EXCEEDS_ORIGINAL
    message = _(
        "That is more than is left to reverse of this transaction: %(remaining)s "
        "%(currency)s."
    )


class ReversalInsufficientFunds(InsufficientFunds):
    """A reversal the wallet giving the money back cannot pay: a conflict with
    the wallet's state (409), not a bad request."""

    status_code = status.HTTP_409_CONFLICT
    message = _("The wallet that must give the money back has insufficient funds.")


class StatementTooLarge(DomainError):
    """A statement period with more entries than its format takes (the JSON
    and PDF are built whole; CSV streams any period)."""

    code = ErrorCode.STATEMENT_TOO_LARGE
    message = _(
        "This period has more than %(limit)s entries, too many for a %(format)s "
        "statement: ask for format=csv (any period), or a shorter period."
    )
