"""The web process's own database timeouts (gunicorn.conf.py: lock 3 s), through
Nginx, Gunicorn's gevent workers, the psycopg pool and the group commit: a
deposit on a wallet another connection holds locked is a 503 with Retry-After
once the lock timeout strikes, and goes through once the lock is gone."""

import os
from decimal import Decimal

import psycopg
import pytest

from tests.stack import fresh_database, running_stack

pytestmark = pytest.mark.e2e

EMAIL = "locked-out@example.com"
PASSWORD = "e2e-Correct-Horse-9"

_OWNER = """
from accounts.models import User
from wallets.services import wallet_create
owner = User.objects.create_user(email={email!r}, password={password!r})
print(wallet_create(owner=owner, currency="KZT").pk)
"""


def test_a_request_past_the_web_lock_timeout_is_a_503_and_moves_nothing():
    with fresh_database(os.environ["DATABASE_URL"], prefix="wallet_timeouts") as url:
        with running_stack(
            database_url=url,
            redis_url=os.environ["REDIS_URL"],
            web_workers=1,
            celery=False,
            env={"DATABASE_POOL_MAX": "4"},
        ) as stack:
            wallet_id = stack.manage(
                "shell", "-c", _OWNER.format(email=EMAIL, password=PASSWORD)
            ).split()[-1]
            token = stack.request(
                "POST",
                "/api/v1/auth/token/",
                json_body={"email": EMAIL, "password": PASSWORD},
            ).json()["access"]

            def deposit():
                return stack.request(
                    "POST",
                    f"/api/v1/wallets/{wallet_id}/operation",
                    json_body={"operation_type": "DEPOSIT", "amount": "10.00"},
                    token=token,
                )

            with psycopg.connect(url) as holder:
                holder.execute(
                    "SELECT 1 FROM wallets_wallet WHERE id = %s FOR UPDATE", [wallet_id]
                )
                refused = deposit()
                holder.rollback()
            assert refused.status == 503, refused.body
            assert refused.headers["retry-after"] == "1"
            assert refused.json()["code"] == "service_unavailable"
            assert "lock timeout" in stack.log("web")

            accepted = deposit()
            assert accepted.status == 201, accepted.body
            assert Decimal(accepted.json()["new_balance"]) == Decimal("10.00")
