import uuid
from typing import ClassVar

from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.contrib.auth.models import PermissionsMixin
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def _create_user(self, email: str, password: str | None, **extra) -> "User":
        if not email:
            raise ValueError("An email address is required.")
        user = self.model(email=normalize_email(email), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_user(self, email: str, password: str | None = None, **extra) -> "User":
        extra.setdefault("is_staff", False)
        extra.setdefault("is_superuser", False)
        return self._create_user(email, password, **extra)

    def create_superuser(
        self, email: str, password: str | None = None, **extra
    ) -> "User":
        extra.setdefault("is_staff", True)
        extra.setdefault("is_superuser", True)
        return self._create_user(email, password, **extra)

    def get_by_natural_key(self, username: str | None) -> "User":
        return self.get(email=normalize_email(username or ""))


def normalize_email(email: str) -> str:
    """Emails are unique case-insensitively: we store them lower-cased."""
    return email.strip().lower()


class User(AbstractBaseUser, PermissionsMixin):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    email = models.EmailField(_("email"), unique=True)
    phone_number = models.CharField(
        _("phone number"),
        max_length=16,
        unique=True,
        null=True,
        blank=True,
        help_text=_("E.164, e.g. +77011234567."),
    )
    first_name = models.CharField(_("first name"), max_length=150, blank=True)
    last_name = models.CharField(_("last name"), max_length=150, blank=True)
    profile_image = models.ImageField(
        _("profile image"), upload_to="profiles/", blank=True
    )
    is_active = models.BooleanField(_("active"), default=True)
    is_staff = models.BooleanField(_("staff"), default=False)
    is_service = models.BooleanField(
        _("service account"),
        default=False,
        help_text=_("A payment provider's account: may decide top-ups."),
    )
    date_joined = models.DateTimeField(_("date joined"), default=timezone.now)

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: ClassVar[list[str]] = []

    class Meta:
        verbose_name = _("user")
        verbose_name_plural = _("users")

    def __str__(self) -> str:
        return self.email

    def get_full_name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()

    def get_short_name(self) -> str:
        return self.first_name


class VerificationSession(models.Model):
    """One emailed 6-digit code and what confirming it does.

    Every flow that proves control of an email address (sign-up, password change,
    password reset) goes through this one mechanism: the code is stored only as an
    HMAC, is valid for a limited time, can be used once, and the session dies
    after a fixed number of wrong tries. `payload` carries what the flow applies
    on success (a hashed password, profile fields), never a plain secret.
    """

    class Purpose(models.TextChoices):
        SIGNUP = "signup", _("sign-up")
        PASSWORD_CHANGE = "password_change", _("password change")
        PASSWORD_RESET = "password_reset", _("password reset")

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    purpose = models.CharField(_("purpose"), max_length=20, choices=Purpose.choices)
    email = models.EmailField(_("email"))
    user = models.ForeignKey(
        "accounts.User",
        verbose_name=_("user"),
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="verification_sessions",
    )
    payload = models.JSONField(_("payload"), default=dict, blank=True)
    code_hash = models.CharField(_("code hash"), max_length=64)
    attempts = models.PositiveSmallIntegerField(_("wrong attempts"), default=0)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    expires_at = models.DateTimeField(_("expires at"))
    resend_available_at = models.DateTimeField(_("resend available at"))
    used_at = models.DateTimeField(_("used at"), null=True, blank=True)
    # The email's outbox (accounts.emails): the current code's nonce (its code is
    # derived from it, never stored; "" = nothing to send), the language it is
    # mailed in, when it was issued, and when its email went out (null: not yet,
    # so the beat sweep sends it again if its broker message was lost).
    code_nonce = models.CharField(_("code nonce"), max_length=32, blank=True)
    code_language = models.CharField(_("code language"), max_length=16, blank=True)
    code_issued_at = models.DateTimeField(_("code issued at"), null=True, blank=True)
    code_emailed_at = models.DateTimeField(_("code emailed at"), null=True, blank=True)

    class Meta:
        verbose_name = _("verification session")
        verbose_name_plural = _("verification sessions")
        indexes = [
            models.Index(fields=["email", "purpose"]),
            models.Index(
                fields=["code_issued_at"],
                name="verification_email_unsent",
                condition=models.Q(code_emailed_at__isnull=True, code_nonce__gt=""),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_purpose_display()} {self.email}"


class SecondFactorThrottle(models.Model):
    """An operator's wrong second-factor codes in a row (accounts/second_factor.py).

    One row per operator, locked (SELECT ... FOR UPDATE) while a code is checked, so
    guesses sent in parallel are counted one by one. SECOND_FACTOR_FAILURE_LIMIT
    wrong codes set `locked_until`; until then no code is accepted, the right one
    included. A right code, a device reset and the end of a lock start it at 0.
    """

    user = models.OneToOneField(
        "accounts.User",
        verbose_name=_("user"),
        on_delete=models.CASCADE,
        primary_key=True,
        related_name="second_factor_throttle",
    )
    failures = models.PositiveSmallIntegerField(_("wrong codes in a row"), default=0)
    locked_until = models.DateTimeField(_("locked until"), null=True, blank=True)

    class Meta:
        verbose_name = _("second-factor throttle")
        verbose_name_plural = _("second-factor throttles")

    def __str__(self) -> str:
        return f"{self.user_id}: {self.failures}"
