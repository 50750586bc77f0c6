"""Test-only settings for the end-to-end tests: the product's settings with a URLconf
that adds views no product URL has (tests/e2e/slow_urls.py)."""

from wallet_project.settings import *  # noqa: F403

ROOT_URLCONF = "tests.e2e.slow_urls"
