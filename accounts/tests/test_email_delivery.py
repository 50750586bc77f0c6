"""A sign-up code travels for real: the API commits, `on_commit` publishes the
Celery task to Redis, a real worker process picks it up, reads the session from
PostgreSQL and sends the email over SMTP to a server listening on loopback."""

import email
import email.policy
import os
import queue
import re
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from django.conf import settings
from django.db import connection
from rest_framework.test import APIClient

from accounts.models import User
from wallet_project.celery import app as celery_app
from wallets.models import Wallet

BASE_DIR = Path(settings.BASE_DIR)
DELIVERY_DEADLINE = 90  # seconds: a slow, shared machine starting a worker


class Mailbox:
    """An aiosmtpd handler that keeps what it receives."""

    def __init__(self) -> None:
        self.received: queue.Queue = queue.Queue()

    async def handle_DATA(self, server, session, envelope):
        self.received.put(envelope)
        return "250 Message accepted for delivery"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def smtp_server() -> Iterator[tuple[Mailbox, int]]:
    mailbox, port = Mailbox(), free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield mailbox, port
    controller.stop()


@pytest.fixture
def celery_worker(transactional_db, smtp_server) -> Iterator[Path]:
    """`celery -A wallet_project worker` on the test database and Redis, mailing
    through the loopback SMTP server. Yields the path of its log."""
    db = connection.settings_dict
    _, port = smtp_server
    env = {
        **os.environ,
        "DATABASE_URL": (
            f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:"
            f"{db['PORT'] or 5432}/{db['NAME']}"
        ),
        "REDIS_URL": settings.REDIS_URL,
        "SECRET_KEY": settings.SECRET_KEY,
        "DEBUG": "false",
        "EMAIL_URL": f"smtp://127.0.0.1:{port}",
        "CELERY_TASK_ALWAYS_EAGER": "false",
    }
    if db["PASSWORD"]:
        env["DATABASE_URL"] = env["DATABASE_URL"].replace(
            f"{db['USER']}@", f"{db['USER']}:{db['PASSWORD']}@"
        )
    log = Path(tempfile.mkstemp(prefix="celery-worker-", suffix=".log")[1])
    with log.open("w") as output:
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "wallet_project",
                "worker",
                "--pool=solo",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "--loglevel=INFO",
                f"--hostname=accounts-test-{os.getpid()}@localhost",
            ],
            cwd=BASE_DIR,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        yield log
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
        log.unlink(missing_ok=True)


def test_a_signup_code_travels_through_celery_and_smtp(smtp_server, celery_worker):
    mailbox, _ = smtp_server
    assert not celery_app.conf.task_always_eager  # the real broker, a real worker
    api = APIClient()

    started = api.post(
        "/api/v1/auth/signup/",
        {"email": "Traveller@Example.com", "password": "sturdy-kettle-4821"},
        format="json",
    )
    assert started.status_code == 201, started.json()

    try:
        envelope = mailbox.received.get(timeout=DELIVERY_DEADLINE)
    except queue.Empty:
        pytest.fail(f"no email arrived; worker log:\n{celery_worker.read_text()}")
    assert envelope.rcpt_tos == ["traveller@example.com"]
    message = email.message_from_bytes(envelope.content, policy=email.policy.default)
    assert message["Subject"] == "Confirm your Wallet sign-up"
    text = message.get_body(preferencelist=("plain",)).get_content()
    html = message.get_body(preferencelist=("html",)).get_content()
    code = re.search(r"\b(\d{6})\b", text).group(1)
    assert code in html
    assert code not in message["Subject"]

    confirmed = api.post(
        "/api/v1/auth/signup/confirm/",
        {"session_id": started.json()["session_id"], "code": code},
        format="json",
    )

    assert confirmed.status_code == 201, confirmed.json()
    user = User.objects.get(email="traveller@example.com")
    assert Wallet.objects.filter(owner=user, currency="KZT").count() == 1
    assert mailbox.received.empty()  # exactly one email
