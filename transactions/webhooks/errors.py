"""The error codes of events and webhooks, and their domain errors."""

from django.utils.translation import gettext_lazy as _
from rest_framework import status

from wallet_project.errors import Conflict, DomainError, ErrorCodes


class ErrorCode(ErrorCodes):
    URL_NOT_ALLOWED = "url_not_allowed"
    WEBHOOK_ENDPOINT_NOT_FOUND = "webhook_endpoint_not_found"
    WEBHOOK_ENDPOINT_LIMIT_REACHED = "webhook_endpoint_limit_reached"
    WEBHOOK_DELIVERY_PENDING = "webhook_delivery_pending"


class UrlNotAllowed(DomainError):
    """A webhook URL that is malformed, not http(s), carries credentials, or
    whose host is (or resolves to) an address the service must not call."""

    code = ErrorCode.URL_NOT_ALLOWED
    message = _("This URL is not allowed for webhooks: %(reason)s")


class WebhookEndpointNotFound(DomainError):
    status_code = status.HTTP_404_NOT_FOUND
    code = ErrorCode.WEBHOOK_ENDPOINT_NOT_FOUND
    message = _("Webhook endpoint not found.")


class WebhookEndpointLimitReached(Conflict):
    code = ErrorCode.WEBHOOK_ENDPOINT_LIMIT_REACHED
    message = _(
        "You already have %(limit)s webhook endpoints: delete one to add another."
    )


class WebhookDeliveryPending(Conflict):
    code = ErrorCode.WEBHOOK_DELIVERY_PENDING
    message = _("This delivery is still pending: it will be retried on its own.")
