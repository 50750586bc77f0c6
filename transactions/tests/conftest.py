"""Fixtures of the transactions tests: the webhook tests' loopback receiver,
eager Celery tasks and private networks allowed (webhooks_support)."""

from transactions.tests.webhooks_support import (  # noqa: F401 - fixtures
    allow_private,
    celery_eager,
    receiver,
)
