from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError as DjangoValidationError
from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework_simplejwt.exceptions import InvalidToken, TokenError
from rest_framework_simplejwt.tokens import RefreshToken

from accounts.models import User
from accounts.phones import phone_number_normalize
from wallet_project.fields import StrictCharField, StrictEmailField, StrictRegexField
from wallets.api.serializers import WalletSerializer

PROFILE_IMAGE_FORMATS = {"JPEG", "PNG", "GIF", "WEBP"}
PASSWORD_MAX_LENGTH = 128


def _password_field() -> serializers.CharField:
    return StrictCharField(
        write_only=True, trim_whitespace=False, max_length=PASSWORD_MAX_LENGTH
    )


@extend_schema_field({"type": "string", "example": "+77011234567", "nullable": True})
class PhoneNumberField(StrictCharField):
    """A phone number in any format `phonenumbers` reads, returned in E.164;
    an empty value means none."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("max_length", 32)
        kwargs.setdefault("allow_blank", True)
        kwargs.setdefault("allow_null", True)
        kwargs.setdefault("required", False)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> str | None:
        value = super().to_internal_value(data)
        if not value:
            return None
        try:
            return phone_number_normalize(value)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.messages) from None


class CodeField(StrictRegexField):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(r"^\d{6}$", **kwargs)
        self.error_messages["invalid"] = _("The code is 6 digits.")


class TokenObtainSerializer(serializers.Serializer):
    """Log in with {email, password} or {phone_number, password}."""

    email = StrictEmailField(required=False)
    phone_number = StrictCharField(required=False, max_length=32)
    password = StrictCharField(write_only=True, trim_whitespace=False, max_length=4096)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if bool(attrs.get("email")) == bool(attrs.get("phone_number")):
            raise serializers.ValidationError(
                {"non_field_errors": [_("Give either email or phone_number.")]}
            )
        return attrs


class TokenPairSerializer(serializers.Serializer):
    access = serializers.CharField()
    refresh = serializers.CharField()


class RefreshTokenSerializer(serializers.Serializer):
    """A refresh token that is well-signed, unexpired and not blacklisted."""

    refresh = StrictCharField()

    def validate_refresh(self, value: str) -> RefreshToken:
        try:
            return RefreshToken(value)  # type: ignore[arg-type]  # stubs say Token
        except TokenError as exc:
            raise InvalidToken(exc.args[0]) from None


class UserSerializer(serializers.ModelSerializer):
    class Meta:
        model = User
        fields = [
            "id",
            "email",
            "phone_number",
            "first_name",
            "last_name",
            "profile_image",
            "date_joined",
        ]
        read_only_fields = fields


@extend_schema_field(
    {
        # OpenAPI 3.0 cannot say "only null" (and drf-spectacular drops a
        # null-only enum): a string here is refused with a 400.
        "type": "string",
        "nullable": True,
        "description": "Only null in JSON: it removes the image. Upload one as "
        "multipart/form-data.",
    }
)
class ProfileImageField(serializers.ImageField):
    """The profile image: a file in a multipart body; in a JSON body only null
    (remove it), which is all JSON can say about a file."""


class ProfileUpdateSerializer(serializers.Serializer):
    """PATCH users/me/ (JSON): any of these; the email cannot be changed."""

    first_name = StrictCharField(max_length=150, allow_blank=True, required=False)
    last_name = StrictCharField(max_length=150, allow_blank=True, required=False)
    phone_number = PhoneNumberField()
    profile_image = ProfileImageField(required=False, allow_null=True)

    def validate_profile_image(self, image: Any) -> Any:
        if image is None:
            return None
        if image.size > settings.PROFILE_IMAGE_MAX_BYTES:
            raise serializers.ValidationError(
                _("The image is larger than %(limit)s bytes.")
                % {"limit": settings.PROFILE_IMAGE_MAX_BYTES}
            )
        pillow_image = getattr(image, "image", None)
        if pillow_image is None or pillow_image.format not in PROFILE_IMAGE_FORMATS:
            raise serializers.ValidationError(
                _("Upload a JPEG, PNG, GIF or WebP image.")
            )
        if max(pillow_image.size) > settings.PROFILE_IMAGE_MAX_SIDE:
            raise serializers.ValidationError(
                _("The image is larger than %(side)s pixels on a side.")
                % {"side": settings.PROFILE_IMAGE_MAX_SIDE}
            )
        return image

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if isinstance(self.initial_data, Mapping) and "email" in self.initial_data:
            raise serializers.ValidationError(
                {"email": [_("The email cannot be changed.")]}
            )
        return attrs


class ProfileUploadSerializer(ProfileUpdateSerializer):
    """PATCH users/me/ (multipart/form-data): the same fields, with the image as a
    file. Only documents the multipart body: the view validates both bodies with
    ProfileUpdateSerializer."""

    profile_image = serializers.ImageField(required=False, allow_null=True)


class SignupSerializer(serializers.Serializer):
    email = StrictEmailField()
    password = _password_field()
    phone_number = PhoneNumberField()
    first_name = StrictCharField(max_length=150, allow_blank=True, required=False)
    last_name = StrictCharField(max_length=150, allow_blank=True, required=False)


class VerificationSessionSerializer(serializers.Serializer):
    session_id = serializers.UUIDField(source="id")
    expires_at = serializers.DateTimeField()


class SessionIdSerializer(serializers.Serializer):
    session_id = serializers.UUIDField()


class CodeConfirmSerializer(SessionIdSerializer):
    code = CodeField()


class SignupResultSerializer(serializers.Serializer):
    user = UserSerializer()
    wallets = WalletSerializer(many=True)
    access = serializers.CharField(source="tokens.access")
    refresh = serializers.CharField(source="tokens.refresh")


class PasswordChangeSerializer(serializers.Serializer):
    password = _password_field()
    new_password = _password_field()


class PasswordResetSerializer(serializers.Serializer):
    email = StrictEmailField()


class PasswordResetConfirmSerializer(CodeConfirmSerializer):
    new_password = _password_field()

    def validate_new_password(self, value: str) -> str:
        # The validators that need no user; the service runs them all again
        # with the account once the code is right.
        try:
            validate_password(value)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.messages) from None
        return value
