"""Optional error reporting to Sentry (SENTRY_DSN): exceptions of the web process
(Django) and of Celery tasks, without personal data.

send_default_pii=False keeps user emails, IP addresses and cookies out; request
bodies are never sent (they carry emails, phone numbers and passwords); and
`_scrub` drops what would still identify someone: the Authorization and Cookie
headers, the query string, everything about the user but the id.
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sentry_sdk.types import Event, Hint

_HEADERS_DROPPED = {"authorization", "cookie", "x-forwarded-for", "x-real-ip"}


def _scrub(event: "Event", hint: "Hint") -> "Event":
    request = event.get("request") or {}
    for key in ("data", "cookies", "query_string", "env"):
        request.pop(key, None)
    headers = request.get("headers")
    if isinstance(headers, dict):
        request["headers"] = {
            name: value
            for name, value in headers.items()
            if name.lower() not in _HEADERS_DROPPED
        }
    user = event.get("user")
    if isinstance(user, dict):
        event["user"] = {"id": user["id"]} if "id" in user else {}
    return event


def sentry_init(
    *, dsn: str, environment: str, release: str | None, traces_sample_rate: float
) -> None:
    import sentry_sdk
    from sentry_sdk.integrations.celery import CeleryIntegration
    from sentry_sdk.integrations.django import DjangoIntegration

    sentry_sdk.init(
        dsn=dsn,
        integrations=[DjangoIntegration(), CeleryIntegration()],
        send_default_pii=False,
        max_request_body_size="never",
        environment=environment,
        release=release,
        traces_sample_rate=traces_sample_rate,
        before_send=_scrub,
        before_send_transaction=_scrub,
    )
