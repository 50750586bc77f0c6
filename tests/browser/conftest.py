"""Headless Chromium (Debian's /usr/bin/chromium, driven by Playwright for Python)
against pytest-django's live server. Screenshots go to var/screenshots/."""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connections
from playwright.sync_api import sync_playwright

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = Path(settings.BASE_DIR) / "var" / "screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@contextmanager
def _browser_page(live_server, **context_options) -> Iterator:
    """A fresh browser page. Playwright's sync API keeps an asyncio loop running
    in this thread, which makes Django refuse ORM calls made here ("async
    context") unless told they are safe: they are, nothing else runs on it."""
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"Chromium is not installed at {CHROMIUM}: apt-get install chromium"
        )
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
            )
            context = browser.new_context(
                viewport={"width": 1366, "height": 900},
                base_url=live_server.url,
                **context_options,
            )
            context.set_default_timeout(15_000)
            try:
                yield context.new_page()
            finally:
                context.close()
                browser.close()
                # While Playwright's loop runs, Django's context-local connection
                # registry hands this thread a separate connection: close it, or
                # it outlives the test database.
                connections.close_all()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def page(live_server) -> Iterator:
    with _browser_page(live_server) as page:
        yield page


@pytest.fixture
def browser_page_ru(live_server) -> Iterator:
    """A page whose browser asks for Russian (Accept-Language: ru-RU)."""
    with _browser_page(live_server, locale="ru-RU") as page:
        yield page


@pytest.fixture
def shot(request):
    """shot("name") saves a full-page screenshot of the test's page (`page` or
    `browser_page_ru`)."""
    name = "browser_page_ru" if "browser_page_ru" in request.fixturenames else "page"
    page = request.getfixturevalue(name)

    def take(name: str) -> Path:
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take
