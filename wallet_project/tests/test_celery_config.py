"""Celery's configuration on the real broker: emails on a queue of their own,
the cache in another Redis database than the queues, time limits on every task."""

import json

import redis
from django.conf import settings
from django.core.cache import cache

from accounts.tasks import verification_code_send
from fees.tasks import fees_charge_due
from wallet_project.celery import app as celery_app


def _broker() -> redis.Redis:
    return redis.Redis.from_url(settings.CELERY_BROKER_URL)


def _queued_task_names(queue: str) -> list[str]:
    return [
        json.loads(message)["headers"]["task"]
        for message in _broker().lrange(queue, 0, -1)
    ]


def test_emails_go_to_their_own_queue_and_everything_else_to_the_default():
    verification_code_send.delay("00000000-0000-0000-0000-000000000000", "123456", "en")
    fees_charge_due.delay()
    assert _queued_task_names("email") == ["accounts.tasks.verification_code_send"]
    assert _queued_task_names("celery") == ["fees.tasks.fees_charge_due"]


def test_clearing_the_cache_leaves_queued_tasks_in_the_broker():
    """cache.clear() is a FLUSHDB of the cache's database: the broker's is the
    one before it (REDIS_URL), untouched."""
    assert settings.CACHES["default"]["LOCATION"] != settings.CELERY_BROKER_URL
    cache.set("a-key", "a value")
    verification_code_send.delay("00000000-0000-0000-0000-000000000000", "123456", "en")
    cache.clear()
    assert cache.get("a-key") is None
    assert _queued_task_names("email") == ["accounts.tasks.verification_code_send"]


def test_every_task_has_time_limits_and_the_fee_run_longer_ones():
    assert celery_app.conf.task_soft_time_limit == settings.CELERY_TASK_SOFT_TIME_LIMIT
    assert celery_app.conf.task_time_limit > celery_app.conf.task_soft_time_limit
    assert fees_charge_due.soft_time_limit > celery_app.conf.task_time_limit
    assert fees_charge_due.time_limit > fees_charge_due.soft_time_limit
    assert settings.EMAIL_TIMEOUT == 10
