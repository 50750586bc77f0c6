import hashlib
import hmac
import time

TOLERANCE_SECONDS = 300  # refuse signatures older (or newer) than 5 minutes


def verify_wallet_signature(
    secret: str, raw_body: bytes, header: str, now: float | None = None
) -> bool:
    """True if `header` (the Wallet-Signature header) signs `raw_body` (the
    request body exactly as received, before any JSON parsing) with `secret`."""
    timestamp, signatures = "", []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t":
            timestamp = value
        elif key == "v1":
            signatures.append(value)
    if not timestamp.isdigit() or not signatures:
        return False
    if abs((time.time() if now is None else now) - int(timestamp)) > TOLERANCE_SECONDS:
        return False
    expected = hmac.new(
        secret.encode(), timestamp.encode() + b"." + raw_body, hashlib.sha256
    ).hexdigest()
    # Any v1 may match: during a secret rotation there is one per secret.
    return any(hmac.compare_digest(expected, signature) for signature in signatures)
