"""Idempotency keys: a money-moving request runs once per (user, key); its
answer's exact bytes are stored in the same DB transaction as the movement."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from uuid import UUID

from django.db import connection, transaction
from django.utils import timezone

from transactions.ledger.errors import IdempotencyConflict
from transactions.models import IdempotencyKey
from wallet_project import metrics
from wallet_project.rendering import json_bytes
from wallets.models import Wallet

T = TypeVar("T")


def _db_uuid(value: UUID) -> Any:
    return Wallet._meta.pk.get_db_prep_value(value, connection)


@dataclass(frozen=True)
class IdempotencyRequest:
    """Who sent which key with which request (method, path and body hashed)."""

    user_id: UUID
    key: str
    fingerprint: str

    @staticmethod
    def fingerprint_of(method: str, path: str, body: Any) -> str:
        canonical = json.dumps(body, sort_keys=True, default=str, separators=(",", ":"))
        return hashlib.sha256(f"{method} {path}\n{canonical}".encode()).hexdigest()


@dataclass(frozen=True)
class IdempotentResponse:
    """A money-moving request's answer: its status and the exact JSON bytes sent,
    which a replay sends again byte for byte."""

    status: int
    content: bytes
    replayed: bool = False

    @property
    def body(self) -> Any:
        return json.loads(self.content)


class _AlreadyDone(Exception):
    """Another request with the same key committed first: roll ours back."""


def _stored(request: IdempotencyRequest) -> IdempotentResponse | None:
    record = (
        IdempotencyKey.objects.filter(user_id=request.user_id, key=request.key)
        .only("fingerprint", "response_status", "response_body")
        .first()
    )
    if record is None:
        return None
    if record.fingerprint != request.fingerprint:
        metrics.idempotency_count("conflict")
        raise IdempotencyConflict()
    metrics.idempotency_count("replayed")
    return IdempotentResponse(
        record.response_status, record.response_body.encode(), replayed=True
    )


def idempotency_execute(
    *,
    request: IdempotencyRequest | None,
    action: Callable[[], T],
    render: Callable[[T], Any],
    status: int = 201,
) -> IdempotentResponse:
    """Run a money-moving `action` once per Idempotency-Key.

    The key and the rendered response are stored in the same DB transaction as
    the movement. A replay returns the stored response; the same key with another
    request is a 422. Two identical requests in flight at once: the second one's
    INSERT waits on the first's unique-index entry; when the first commits, the
    second rolls its own work back and returns the first's response, also when
    its own attempt failed because the first one had already moved the money. A
    request that fails leaves no key behind, so it may be retried.
    """
    if request is None:
        with transaction.atomic(durable=True):
            return IdempotentResponse(status, json_bytes(render(action())))
    if (done := _stored(request)) is not None:
        return done
    try:
        with transaction.atomic(durable=True):
            content = json_bytes(render(action()))
            if not _claim(request, status, content):
                raise _AlreadyDone
            return IdempotentResponse(status, content)
    except Exception:
        # A twin request with this key may have committed while ours ran: then
        # its answer is ours, whatever our attempt ran into (its withdrawal can
        # leave ours "insufficient funds", its key makes our claim fail).
        done = _stored(request)
        if done is None:
            raise
        return done


_CLAIM_SQL = """
INSERT INTO transactions_idempotencykey
       (user_id, key, fingerprint, response_status, response_body, created_at)
VALUES (%s, %s, %s, %s, %s, %s)
ON CONFLICT (user_id, key) DO NOTHING
RETURNING id
"""


def _claim(request: IdempotencyRequest, status: int, content: bytes) -> bool:
    """Store the key with its response; False when another request holds it."""
    user_id = _db_uuid(request.user_id)
    with connection.cursor() as cursor:
        cursor.execute(
            _CLAIM_SQL,
            [
                user_id,
                request.key,
                request.fingerprint,
                status,
                content.decode(),
                timezone.now(),
            ],
        )
        return cursor.fetchone() is not None
