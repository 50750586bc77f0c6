"""Fixtures of the end-to-end tests: a fresh database on the machine's PostgreSQL
(the server of DATABASE_URL), the machine's Redis (REDIS_URL), an SMTP sink, and
the real processes (tests/stack.py)."""

import os
from collections.abc import Iterator

import pytest

from tests.stack import SmtpSink, Stack, fresh_database, running_stack, smtp_sink


@pytest.fixture(scope="session")
def e2e_database_url() -> Iterator[str]:
    with fresh_database(os.environ["DATABASE_URL"]) as url:
        yield url


@pytest.fixture(scope="session")
def redis_url() -> str:
    return os.environ["REDIS_URL"]


@pytest.fixture(scope="module")
def smtp() -> Iterator[SmtpSink]:
    with smtp_sink() as sink:
        yield sink


@pytest.fixture(scope="module")
def stack(e2e_database_url, redis_url, smtp) -> Iterator[Stack]:
    """Nginx + Gunicorn (2 gevent workers, a pool of 8 connections each) + a Celery
    worker + beat: what docker-compose.yml runs."""
    with running_stack(
        database_url=e2e_database_url,
        redis_url=redis_url,
        email_url=smtp.url,
        web_workers=2,
        env={"DATABASE_POOL_MAX": "8"},
    ) as running:
        yield running


@pytest.fixture(autouse=True)
def _clean_cache():
    """Overrides the root conftest's: its cache.clear() is a FLUSHDB of the Redis
    database the stack's Celery broker lives in (queues and their bindings)."""
    yield
