"""Events and signed webhooks (Stripe-style), on top of the ledger's outbox.

The ledger writes every event (transactions.Event) in the same DB transaction
as its change; this package reads them and delivers them:

- selectors.py: the caller's events in commit order (the events list) and
  their webhook endpoints.
- services.py: endpoints (create with the URL check, delete, rotate the
  secret, enable), a delivery resent, endpoints failing too long disabled.
- addresses.py: where a webhook may go (SSRF): checked at creation and before
  every delivery, and the delivery connects to the address checked.
- signing.py: the body (bytes rendered once) and its Wallet-Signature.
- dispatch.py: the outbox -> delivery rows (cursor in commit order), and the
  sweep that re-enqueues what is due.
- delivery.py: one send: claim (SKIP LOCKED + lease), POST with no
  transaction open, record the attempt, retry with backoff or give up.
- queue.py: the Celery tasks (transactions.tasks), registered by
  transactions.apps so this package need not import them.
- verify_example.py: the receiver's check, quoted by the README.
"""

from transactions.webhooks.addresses import Target, address_is_public, url_target
from transactions.webhooks.delivery import deliveries_send, delivery_send, retry_delay
from transactions.webhooks.dispatch import webhooks_dispatch, webhooks_sweep
from transactions.webhooks.emails import endpoint_disabled_email_send
from transactions.webhooks.errors import (
    ErrorCode,
    UrlNotAllowed,
    WebhookDeliveryPending,
    WebhookEndpointLimitReached,
    WebhookEndpointNotFound,
)
from transactions.webhooks.queue import webhook_tasks_register
from transactions.webhooks.selectors import (
    endpoint_get_for_user,
    endpoint_list_for_user,
    event_list_for_user,
    event_position_for_user,
)
from transactions.webhooks.services import (
    ALL_EVENTS,
    delivery_resend,
    endpoint_create,
    endpoint_delete,
    endpoint_enable,
    endpoint_rotate_secret,
    endpoint_signing_secrets,
    endpoints_disable_failing,
    event_types_clean,
)
from transactions.webhooks.signing import (
    SIGNATURE_HEADER,
    event_body,
    event_payload,
    signature_header,
)

__all__ = [
    "ALL_EVENTS",
    "SIGNATURE_HEADER",
    "ErrorCode",
    "Target",
    "UrlNotAllowed",
    "WebhookDeliveryPending",
    "WebhookEndpointLimitReached",
    "WebhookEndpointNotFound",
    "address_is_public",
    "deliveries_send",
    "delivery_resend",
    "delivery_send",
    "endpoint_create",
    "endpoint_delete",
    "endpoint_disabled_email_send",
    "endpoint_enable",
    "endpoint_get_for_user",
    "endpoint_list_for_user",
    "endpoint_rotate_secret",
    "endpoint_signing_secrets",
    "endpoints_disable_failing",
    "event_body",
    "event_list_for_user",
    "event_payload",
    "event_position_for_user",
    "event_types_clean",
    "retry_delay",
    "signature_header",
    "url_target",
    "webhook_tasks_register",
    "webhooks_dispatch",
    "webhooks_sweep",
]
