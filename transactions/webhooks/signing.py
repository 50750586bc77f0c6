"""What a delivery sends: the event's JSON (the events list's representation,
rendered once to bytes) and its signature over exactly those bytes.

`Wallet-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`,
with one more `v1` signed by the previous secret for 24 hours after a rotation
(Stripe's scheme). The key is the secret string as shown to its owner
("whsec_..."), UTF-8 encoded.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from transactions.models import Event
from wallet_project.rendering import json_bytes

SECRET_PREFIX = "whsec_"  # noqa: S105 - a prefix, not a secret
SIGNATURE_HEADER = "Wallet-Signature"


def secret_new() -> str:
    """A new endpoint secret: "whsec_" and 32 random bytes, URL-safe base64."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def _time(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def event_payload(event: Event) -> dict[str, Any]:
    """An event as the API and webhooks show it."""
    return {
        "id": event.id,
        "type": event.type,
        "created_at": _time(event.created_at),
        "wallet_id": str(event.wallet_id),
        "sequence": event.sequence,
        "data": event.data,
    }


def event_body(event: Event) -> bytes:
    return json_bytes(event_payload(event))


def signature(secret: str, timestamp: int, body: bytes) -> str:
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature_header(secrets_: Iterable[str], timestamp: int, body: bytes) -> str:
    """The header's value: the timestamp, then one `v1` per secret."""
    parts = [f"t={timestamp}"]
    parts += [f"v1={signature(secret, timestamp, body)}" for secret in secrets_]
    return ",".join(parts)
