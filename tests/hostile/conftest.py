"""The hostile suite: fuzzing, faults under load, attacks, bad input. Tests that
start real processes use their own fresh database (and, for faults, their own
PostgreSQL cluster and Redis: tests/hostile/services.py)."""

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.stack import REPO, Stack, fresh_database, running_stack

FIGURES_DIR = REPO / "var" / "hostile"


def figures_path(name: str) -> Path:
    FIGURES_DIR.mkdir(parents=True, exist_ok=True)
    return FIGURES_DIR / name


@pytest.fixture(scope="module")
def web_stack() -> Iterator[Stack]:
    """Nginx + Gunicorn (2 gevent workers), no Celery, on a fresh database of the
    machine's PostgreSQL and the suite's Redis database."""
    with fresh_database(os.environ["DATABASE_URL"], prefix="wallet_hostile") as url:
        with running_stack(
            database_url=url,
            redis_url=os.environ["REDIS_URL"],
            web_workers=2,
            celery=False,
            env={"DATABASE_POOL_MAX": "8"},
        ) as stack:
            yield stack
