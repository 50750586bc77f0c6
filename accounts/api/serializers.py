from django.contrib.auth.hashers import make_password
from django.utils.translation import gettext_lazy as _
from rest_framework import serializers
from rest_framework.exceptions import AuthenticationFailed
from rest_framework_simplejwt.tokens import RefreshToken

from accounts.models import User
from accounts.selectors import user_find_for_login

# Compared against when no user matches, so a wrong email costs as much time as
# a wrong password (no account enumeration by timing).
_DUMMY_PASSWORD_HASH = make_password("not-a-real-password")


class TokenObtainSerializer(serializers.Serializer):
    """Log in with {email, password} or {phone_number, password}."""

    email = serializers.EmailField(required=False)
    phone_number = serializers.CharField(required=False, max_length=32)
    password = serializers.CharField(
        write_only=True, trim_whitespace=False, max_length=4096
    )
    access = serializers.CharField(read_only=True)
    refresh = serializers.CharField(read_only=True)

    def validate(self, attrs):
        email, phone = attrs.get("email"), attrs.get("phone_number")
        if bool(email) == bool(phone):
            raise serializers.ValidationError(
                {"non_field_errors": [_("Give either email or phone_number.")]}
            )
        user = user_find_for_login(email=email, phone_number=phone)
        if user is None:
            User(password=_DUMMY_PASSWORD_HASH).check_password(attrs["password"])
            raise AuthenticationFailed(
                _("No active account found with the given credentials."),
                code="invalid_credentials",
            )
        if not user.check_password(attrs["password"]):
            raise AuthenticationFailed(
                _("No active account found with the given credentials."),
                code="invalid_credentials",
            )
        refresh = RefreshToken.for_user(user)
        return {
            "refresh": str(refresh),
            "access": str(refresh.access_token),
            "user": user,
        }


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
