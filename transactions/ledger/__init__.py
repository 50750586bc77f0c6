"""The ledger: the ONLY code that moves money. Its public API is this module;
everything else in the package is private.

- Rules (rules.py), stated once: what an amount may be (`amount_validate`) and
  when a leg on a user wallet is refused and why (`leg_refusal`; the same rule
  in SQL guards the writer's UPDATE).
- One writer (writer.py) of balances, transactions, entries and idempotency
  keys: lock the user wallets in id order, check every leg by the rule, write
  everything in one statement. A lone posting (`ledger_post`), a group-commit
  batch (group_commit.py) and the fee run's set-based debits
  (`ledger_debit_many`) all go through it.
- Its refusals and their codes (errors.py): one `ErrorCode` enum.
- The outbox (events.py): the events of every change, written with it (the
  writer's statement or `event_record_many`), numbered per wallet with no gaps,
  read in commit order (`EVENTS_VISIBLE_SQL`).
- Reversals (reversals.py): a posted transaction undone, fully or in part,
  by a new `reversal` mirroring its legs, never above the original.
- Holds (holds.py): money reserved now and captured, voided or expired later,
  through the same writer (the wallet's `held`, which every debit's rule
  subtracts); payouts (payouts.py) are built on them.
- One builder per kind of posting, used by every path: cash in/out
  (`cash_legs`), transfers and exchanges (`transfer_legs`), top-ups,
  adjustments; the fee's legs are built by the fees app from `Leg`s.

Every balance change has its entries in the same DB transaction; every posted
transaction sums to zero per currency (also checked by a deferred trigger at
commit); entries are never updated or deleted.
"""

from transactions.ledger.adjustments import (
    adjustment_approve,
    adjustment_reject,
    adjustment_request,
)
from transactions.ledger.cash import cash_legs, wallet_deposit, wallet_withdraw
from transactions.ledger.errors import (
    AdjustmentSameOperator,
    BalanceLimitExceeded,
    ErrorCode,
    HoldExpired,
    HoldNotActive,
    HoldNotFound,
    HoldOfPayout,
    IdempotencyConflict,
    InsufficientFunds,
    InvalidAmount,
    InvalidCommission,
    PayoutAlreadyDecided,
    PayoutExpired,
    PayoutNotFound,
    ReasonRequired,
    ReversalExceedsOriginal,
    ReversalInsufficientFunds,
    ReversalNotAllowed,
    SameWallet,
    StatementTooLarge,
    TopupAlreadyDecided,
    TopupExpired,
    TopupNotFound,
    TransactionNotPending,
    WalletBlocked,
)
from transactions.ledger.events import VISIBLE_SQL as EVENTS_VISIBLE_SQL
from transactions.ledger.events import (
    NewEvent,
    event_record_many,
    fee_event_data,
    wallet_event_data,
)
from transactions.ledger.group_commit import transfer_execute, wallet_operation
from transactions.ledger.holds import (
    hold_capture,
    hold_create,
    hold_expire_due,
    hold_void,
)
from transactions.ledger.idempotency import (
    IdempotencyRequest,
    IdempotentResponse,
    idempotency_execute,
)
from transactions.ledger.payouts import (
    PAYOUT_DECISIONS,
    payout_cancel,
    payout_create,
    payout_decide,
    payout_expire_stale,
    payout_is_stale,
)
from transactions.ledger.posting import (
    Debit,
    Debited,
    credit_to_blocked_hook_register,
    ledger_debit_many,
    ledger_post,
)
from transactions.ledger.reversals import (
    ReversalPlan,
    reversal_approve,
    reversal_plan,
    reversal_reject,
    reversal_request,
    topup_reverse,
)
from transactions.ledger.rules import amount_validate, leg_refusal
from transactions.ledger.status import wallet_block, wallet_unblock
from transactions.ledger.topups import (
    TOPUP_DECISIONS,
    topup_commission,
    topup_create,
    topup_decide,
    topup_expire_stale,
    topup_is_stale,
)
from transactions.ledger.transfers import transfer_create, transfer_legs
from transactions.ledger.writer import Leg, Posting

__all__ = [
    "EVENTS_VISIBLE_SQL",
    "PAYOUT_DECISIONS",
    "TOPUP_DECISIONS",
    "AdjustmentSameOperator",
    "BalanceLimitExceeded",
    "Debit",
    "Debited",
    "ErrorCode",
    "HoldExpired",
    "HoldNotActive",
    "HoldNotFound",
    "HoldOfPayout",
    "IdempotencyConflict",
    "IdempotencyRequest",
    "IdempotentResponse",
    "InsufficientFunds",
    "InvalidAmount",
    "InvalidCommission",
    "Leg",
    "NewEvent",
    "PayoutAlreadyDecided",
    "PayoutExpired",
    "PayoutNotFound",
    "Posting",
    "ReasonRequired",
    "ReversalExceedsOriginal",
    "ReversalInsufficientFunds",
    "ReversalNotAllowed",
    "ReversalPlan",
    "SameWallet",
    "StatementTooLarge",
    "TopupAlreadyDecided",
    "TopupExpired",
    "TopupNotFound",
    "TransactionNotPending",
    "WalletBlocked",
    "adjustment_approve",
    "adjustment_reject",
    "adjustment_request",
    "amount_validate",
    "cash_legs",
    "credit_to_blocked_hook_register",
    "event_record_many",
    "fee_event_data",
    "hold_capture",
    "hold_create",
    "hold_expire_due",
    "hold_void",
    "idempotency_execute",
    "ledger_debit_many",
    "ledger_post",
    "leg_refusal",
    "payout_cancel",
    "payout_create",
    "payout_decide",
    "payout_expire_stale",
    "payout_is_stale",
    "reversal_approve",
    "reversal_plan",
    "reversal_reject",
    "reversal_request",
    "topup_commission",
    "topup_create",
    "topup_decide",
    "topup_expire_stale",
    "topup_is_stale",
    "topup_reverse",
    "transfer_create",
    "transfer_execute",
    "transfer_legs",
    "wallet_block",
    "wallet_deposit",
    "wallet_event_data",
    "wallet_operation",
    "wallet_unblock",
    "wallet_withdraw",
]
