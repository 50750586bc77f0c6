"""The beat task on a real Celery worker consuming from Redis."""

import ast
import os
import re
import subprocess
import sys
import time
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from fees.models import FeeCharge
from fees.tasks import fees_charge_due
from transactions.selectors import ledger_reconcile
from wallet_project.celery import app as celery_app
from wallets.models import Wallet

pytestmark = pytest.mark.django_db(transaction=True)

WAIT_SECONDS = 120


def database_url() -> str:
    db = connection.settings_dict  # the test database (test_<name>)
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"


def test_a_real_worker_runs_the_beat_task_twice_at_once_and_charges_once(
    make_wallet, tmp_path: Path
):
    """Two copies of the daily task delivered together to a worker with two
    processes: every due wallet is charged exactly once, the poor one blocked."""
    payers = [make_wallet(balance="1000.00") for _ in range(20)]
    poor = make_wallet(balance="5.00")
    Wallet.objects.filter(pk__in=[w.pk for w in [*payers, poor]]).update(
        next_fee_at=timezone.now()
    )
    queue = f"fees-it-{uuid.uuid4().hex}"
    log = tmp_path / "worker.log"
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "CELERY_TASK_ALWAYS_EAGER": "false",
        "LOG_LEVEL": "INFO",
    }
    celery = Path(sys.executable).with_name("celery")
    with log.open("w") as out:
        worker = subprocess.Popen(
            [
                str(celery),
                "-A",
                "wallet_project",
                "worker",
                "--pool",
                "prefork",
                "--concurrency",
                "2",
                "--queues",
                queue,
                "--loglevel",
                "INFO",
                "--without-heartbeat",
                "--without-gossip",
                "--without-mingle",
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=settings.BASE_DIR,
        )
    try:
        task_ids = [
            celery_app.send_task(fees_charge_due.name, queue=queue).id for _ in range(2)
        ]
        deadline = time.monotonic() + WAIT_SECONDS
        while time.monotonic() < deadline and worker.poll() is None:
            output = log.read_text()
            if all(f"[{task_id}] succeeded" in output for task_id in task_ids):
                break
            time.sleep(0.5)
        output = log.read_text()
        done = [
            re.search(
                rf"\[{task_id}\] succeeded in [^:]+: "
                r"(\{'as_of'.*?'debt_totals': \{[^}]*\}\})",
                output,
            )
            for task_id in task_ids
        ]
        assert all(done), output[-3000:]
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(timeout=10)

    summaries = [ast.literal_eval(match.group(1)) for match in done]
    # Between them the two runs charged each wallet once, whichever got which.
    assert sum(s["wallets"] for s in summaries) == 21
    assert sum(s["charged"] for s in summaries) == 20
    assert sum(s["blocked"] for s in summaries) == 1
    for wallet in payers:
        wallet.refresh_from_db()
        assert wallet.balance.amount == Decimal("800.00")
        assert FeeCharge.objects.filter(wallet=wallet, status="paid").count() == 1
    poor.refresh_from_db()
    assert poor.status == Wallet.Status.BLOCKED
    assert FeeCharge.objects.get(wallet=poor).status == FeeCharge.Status.DEBT
    assert ledger_reconcile().clean
