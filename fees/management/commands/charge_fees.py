from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from fees.selectors import fee_due_count
from fees.services import FeeRunSummary, fee_charge_due
from wallet_project.db import long_running_timeouts

_BAR_WIDTH = 30


def _parse_as_of(value: str) -> datetime:
    parsed = parse_datetime(value)
    if parsed is None:
        raise CommandError(f"--as-of: not an ISO 8601 date-time: {value!r}")
    if timezone.is_naive(parsed):
        parsed = timezone.make_aware(parsed, timezone.get_default_timezone())
    return parsed


class Command(BaseCommand):
    help = (
        "Charge the monthly fee of every wallet due by --as-of (default: now), the "
        "same service the daily beat task runs. Prints a progress bar on stderr and "
        "a summary: charged, debts, blocked, skipped (no rate), totals per currency."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--as-of",
            type=_parse_as_of,
            default=None,
            help="ISO 8601 date-time (naive = UTC), e.g. 2026-05-01T00:00:00Z.",
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Work out every charge, then roll it back: nothing changes.",
        )
        parser.add_argument("--batch-size", type=int, default=settings.FEE_BATCH_SIZE)
        parser.add_argument("--quiet", action="store_true", help="No progress bar.")

    def handle(
        self,
        *args: Any,
        as_of: datetime | None,
        dry_run: bool,
        batch_size: int,
        quiet: bool,
        **options: Any,
    ) -> None:
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        as_of = as_of or timezone.now()
        total = fee_due_count(as_of=as_of)

        def progress(summary: FeeRunSummary) -> None:
            if quiet:
                return
            done = summary.wallets + summary.skipped
            filled = _BAR_WIDTH * min(done, total) // total if total else _BAR_WIDTH
            self.stderr.write(
                f"\r[{'#' * filled}{'.' * (_BAR_WIDTH - filled)}] {done}/{total} wallets",
                ending="",
            )
            self.stderr.flush()

        with long_running_timeouts():
            summary = fee_charge_due(
                as_of=as_of, batch_size=batch_size, dry_run=dry_run, progress=progress
            )
        if not quiet and total:
            self.stderr.write("")
        title = "Dry run (nothing changed)" if dry_run else "Fees charged"
        self.stdout.write(f"{title} as of {as_of.isoformat()}:")
        self.stdout.write(
            f"  wallets {summary.wallets}, charged {summary.charged}, "
            f"debts {summary.debts}, blocked {summary.blocked}, "
            f"collected {summary.collected}, skipped {summary.skipped}"
        )
        for currency, amount in sorted(summary.totals.items()):
            self.stdout.write(f"  paid {currency}: {amount}")
        for currency, amount in sorted(summary.debt_totals.items()):
            self.stdout.write(f"  new debt {currency}: {amount}")
        if summary.skipped:
            self.stdout.write(
                self.style.WARNING(
                    f"  {summary.skipped} wallets skipped (no fresh exchange rate): "
                    "they stay due and are retried next run."
                )
            )
