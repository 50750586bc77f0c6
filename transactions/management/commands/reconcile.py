import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from transactions.selectors import ledger_reconcile
from wallet_project.db import long_running_timeouts


class Command(BaseCommand):
    help = (
        "Check the ledger: wallet balances equal the sum of their entries, every "
        "transaction balances per currency, no negative user balance, the money "
        "held equals the sum of active holds. "
        "Exit code 0 when clean, 1 otherwise."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--batch-size", type=int, default=2000)
        parser.add_argument("--quiet", action="store_true", help="No progress line.")

    def handle(self, *args: Any, batch_size: int, quiet: bool, **options: Any) -> None:
        def progress(checked: int) -> None:
            if not quiet:
                self.stderr.write(f"\rchecked {checked} wallets", ending="")
                self.stderr.flush()

        with long_running_timeouts():
            report = ledger_reconcile(batch_size=batch_size, progress=progress)
        if not quiet:
            self.stderr.write("")
        for problem in report.problems:
            self.stdout.write(f"  {problem}")
        if report.clean:
            self.stdout.write(self.style.SUCCESS(report.summary))
            return
        self.stdout.write(self.style.ERROR(report.summary))
        sys.exit(1)
