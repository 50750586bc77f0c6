"""Create (or re-key) a payment provider's service account.

Service accounts log in through the ordinary token endpoint and may use the
provider API (`/api/v1/service/...`). No public endpoint creates one.
"""

import getpass
import os

from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.core.validators import validate_email
from django.db import transaction

from accounts.models import User, normalize_email

ENV_VARIABLE = "SERVICE_ACCOUNT_PASSWORD"


class Command(BaseCommand):
    help = (
        "Create a payment provider's service account. Running it again for the same "
        "service account sets its password; an existing ordinary user is an error. "
        f"Without --password the password is read from ${ENV_VARIABLE} or prompted."
    )

    def add_arguments(self, parser):
        parser.add_argument("--email", required=True)
        parser.add_argument("--password")

    def handle(self, *args, email: str, password: str | None, **options):
        email = normalize_email(email)
        try:
            validate_email(email)
        except ValidationError as exc:
            raise CommandError(f"Invalid email: {email}") from exc
        password = password or os.environ.get(ENV_VARIABLE) or self._prompt()
        try:
            validate_password(password, User(email=email))
        except ValidationError as exc:
            raise CommandError("Password rejected: " + " ".join(exc.messages)) from exc

        with transaction.atomic():
            user = User.objects.select_for_update().filter(email=email).first()
            if user is None:
                user = User.objects.create_user(email=email, password=password)
                user.is_service = True
                user.save(update_fields=["is_service"])
                verb = "Created"
            elif user.is_service:
                user.set_password(password)
                user.save(update_fields=["password"])
                verb = "Updated"
            else:
                raise CommandError(
                    f"{email} belongs to an ordinary user; refusing to make it a "
                    "service account. Use another email."
                )
        self.stdout.write(self.style.SUCCESS(f"{verb} service account {email}."))

    def _prompt(self) -> str:
        if not os.isatty(0):
            raise CommandError(f"Give --password or set ${ENV_VARIABLE}.")
        password = getpass.getpass("Password: ")
        if password != getpass.getpass("Password (again): "):
            raise CommandError("The passwords do not match.")
        return password
