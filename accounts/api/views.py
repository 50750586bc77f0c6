from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.parsers import MultiPartParser
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import services
from accounts.api.serializers import (
    CodeConfirmSerializer,
    PasswordChangeSerializer,
    PasswordResetConfirmSerializer,
    PasswordResetSerializer,
    ProfileUpdateSerializer,
    ProfileUploadSerializer,
    RefreshTokenSerializer,
    SessionIdSerializer,
    SignupResultSerializer,
    SignupSerializer,
    TokenObtainSerializer,
    TokenPairSerializer,
    UserSerializer,
    VerificationSessionSerializer,
)
from accounts.api.throttles import throttles
from accounts.authentication import OptionalJWTAuthentication
from fees.selectors import wallet_list_for_user
from wallet_project.api import VALIDATION_ERROR, error_response
from wallet_project.parsers import StrictJSONParser

THROTTLED = OpenApiResponse(
    description=(
        "Too many requests from this IP or for this account (`throttled`); "
        "see the Retry-After header."
    )
)
CODE_ERRORS = error_response(
    'Invalid input ({"field": ["message"]}), or the code was not accepted: '
    "`code_invalid` (wrong; the message says how many tries are left), "
    "`code_expired`, `code_used`, `session_dead` (too many wrong codes: start "
    "again), `session_not_found`."
)
BAD_TOKEN = error_response(
    "The refresh token is malformed, expired or blacklisted (`token_not_valid`)."
)
UNAUTHENTICATED = error_response(
    "Missing, malformed, tampered or expired access token (`not_authenticated`, "
    "`token_not_valid`)."
)


class AccountsAPIView(APIView):
    def get_authenticate_header(self, request: Request) -> str:
        # A bad token or bad credentials are a 401 with a challenge, never a 403.
        return 'Bearer realm="api"'

    def handle_exception(self, exc: Exception) -> Response:
        response = super().handle_exception(exc)
        if response.status_code == 401 and "WWW-Authenticate" not in response:
            response["WWW-Authenticate"] = self.get_authenticate_header(self.request)
        return response


class PublicAPIView(AccountsAPIView):
    """No authentication: a stale Authorization header must not get in the way."""

    permission_classes = [AllowAny]
    authentication_classes: list = []


def _language(request: Request) -> str:
    return getattr(request, "LANGUAGE_CODE", None) or "en"


# --- Sign-up -----------------------------------------------------------------------------


class SignupView(PublicAPIView):
    throttle_classes = throttles("signup_ip", "signup_account")

    @extend_schema(
        summary="Sign up: validate everything and email a 6-digit code",
        description=(
            "Nothing but a pending sign-up is stored until the code is confirmed. "
            "The code is valid 10 minutes, single-use, 5 tries. The email is in "
            "the request's language (Accept-Language: en or ru)."
        ),
        request=SignupSerializer,
        responses={
            201: VerificationSessionSerializer,
            400: VALIDATION_ERROR,
            429: THROTTLED,
        },
        auth=[],
    )
    def post(self, request: Request) -> Response:
        data = SignupSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        session = services.signup_start(
            **data.validated_data, language=_language(request)
        )
        return Response(
            VerificationSessionSerializer(session).data, status=status.HTTP_201_CREATED
        )


class SignupConfirmView(PublicAPIView):
    throttle_classes = throttles("verify_ip")

    @extend_schema(
        summary="Confirm a sign-up: creates the user and a KZT wallet, logs in",
        request=CodeConfirmSerializer,
        responses={
            201: SignupResultSerializer,
            400: error_response(
                CODE_ERRORS.description
                + " `email_taken`/`phone_taken` if someone signed up first."
            ),
            429: THROTTLED,
        },
        auth=[],
    )
    def post(self, request: Request) -> Response:
        data = CodeConfirmSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        result = services.signup_confirm(**data.validated_data)
        # The wallets the sign-up opened (the wallets app's hook), as the wallet
        # list shows them.
        body = {
            "user": result.user,
            "wallets": wallet_list_for_user(user=result.user),
            "tokens": result.tokens,
        }
        return Response(
            SignupResultSerializer(body, context={"request": request}).data,
            status=status.HTTP_201_CREATED,
        )


class SignupResendView(PublicAPIView):
    throttle_classes = throttles("resend_ip", "resend_account")

    @extend_schema(
        summary="Email a new sign-up code (the previous one stops working)",
        description=(
            "At most once a minute per session; wrong tries are not forgiven "
            "by a new code."
        ),
        request=SessionIdSerializer,
        responses={
            200: VerificationSessionSerializer,
            400: error_response(
                "Invalid input, or `code_used`, `session_dead`, `session_not_found`."
            ),
            429: error_response(
                "Too soon after the last code (`resend_too_soon`) or throttled "
                "(`throttled`); see the Retry-After header."
            ),
        },
        auth=[],
    )
    def post(self, request: Request) -> Response:
        data = SessionIdSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        session = services.signup_code_resend(
            session_id=data.validated_data["session_id"], language=_language(request)
        )
        return Response(VerificationSessionSerializer(session).data)


# --- Tokens ------------------------------------------------------------------------------


class TokenObtainView(PublicAPIView):
    throttle_classes = throttles("token_ip", "token_account")

    @extend_schema(
        summary="Log in: a JWT pair for email or phone number and password",
        description=(
            "5 failed logins for one account lock it for 15 minutes (429 "
            "`account_locked` with Retry-After), even for the right password."
        ),
        request=TokenObtainSerializer,
        responses={
            200: TokenPairSerializer,
            400: VALIDATION_ERROR,
            401: error_response("Wrong credentials (`invalid_credentials`)."),
            429: error_response(
                "Account locked after failed logins (`account_locked`) or throttled "
                "(`throttled`); see the Retry-After header."
            ),
        },
        auth=[],
    )
    def post(self, request: Request) -> Response:
        data = TokenObtainSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        tokens = services.token_obtain(**data.validated_data)
        return Response(TokenPairSerializer(tokens).data)


class TokenRefreshView(PublicAPIView):
    @extend_schema(
        summary="Rotate a refresh token: a new pair; the old refresh token is dead",
        request=RefreshTokenSerializer,
        responses={200: TokenPairSerializer, 400: VALIDATION_ERROR, 401: BAD_TOKEN},
        auth=[],
    )
    def post(self, request: Request) -> Response:
        data = RefreshTokenSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        tokens = services.refresh_token_rotate(token=data.validated_data["refresh"])
        return Response(TokenPairSerializer(tokens).data)


class LogoutView(PublicAPIView):
    # The refresh token is the credential; an access token, when valid, says who
    # is asking, and then only that account's refresh tokens can be ended.
    authentication_classes = [OptionalJWTAuthentication]

    @extend_schema(
        summary="Log out: blacklist a refresh token",
        description=(
            "No access token is needed (it may have expired): the refresh token "
            "is the credential. With a valid access token, the refresh token "
            "must be that account's own (else 400 `token_not_yours`)."
        ),
        request=RefreshTokenSerializer,
        responses={
            204: None,
            400: error_response(
                'Invalid input ({"field": ["message"]}), or the refresh token is '
                "another account's than the access token's (`token_not_yours`)."
            ),
            401: BAD_TOKEN,
        },
        auth=[],
    )
    def post(self, request: Request) -> Response:
        data = RefreshTokenSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        caller = (
            request.user if request.user and request.user.is_authenticated else None
        )
        services.refresh_token_revoke(token=data.validated_data["refresh"], user=caller)
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- Profile -----------------------------------------------------------------------------


class MeView(AccountsAPIView):
    # The one body that is not JSON only: a file is uploaded as multipart.
    parser_classes = [StrictJSONParser, MultiPartParser]

    @extend_schema(
        summary="Your profile",
        responses={200: UserSerializer, 401: UNAUTHENTICATED},
    )
    def get(self, request: Request) -> Response:
        return Response(UserSerializer(request.user, context={"request": request}).data)

    @extend_schema(
        summary="Update your profile (JSON, or multipart with profile_image)",
        description=(
            "phone_number is re-validated and stored in E.164 (empty or null "
            "removes it); profile_image must be a JPEG/PNG/GIF/WebP image within "
            "PROFILE_IMAGE_MAX_BYTES and PROFILE_IMAGE_MAX_SIDE (null removes it). "
            "The email cannot be changed here."
        ),
        request={
            "application/json": ProfileUpdateSerializer,
            "multipart/form-data": ProfileUploadSerializer,
        },
        responses={200: UserSerializer, 400: VALIDATION_ERROR, 401: UNAUTHENTICATED},
    )
    def patch(self, request: Request) -> Response:
        data = ProfileUpdateSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        user = services.user_profile_update(user=request.user, **data.validated_data)
        return Response(UserSerializer(user, context={"request": request}).data)


# --- Passwords ---------------------------------------------------------------------------


class PasswordChangeView(AccountsAPIView):
    throttle_classes = throttles("password_change_user")

    @extend_schema(
        summary="Change your password: check it and email a code",
        request=PasswordChangeSerializer,
        responses={
            202: VerificationSessionSerializer,
            400: error_response(
                'Invalid input: {"password": [wrong]} or {"new_password": [...]}.'
            ),
            401: UNAUTHENTICATED,
            429: THROTTLED,
        },
    )
    def post(self, request: Request) -> Response:
        data = PasswordChangeSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        session = services.password_change_start(
            user=request.user, **data.validated_data, language=_language(request)
        )
        return Response(
            VerificationSessionSerializer(session).data, status=status.HTTP_202_ACCEPTED
        )


class PasswordChangeConfirmView(AccountsAPIView):
    throttle_classes = throttles("verify_ip")

    @extend_schema(
        summary="Confirm a password change: sets it, revokes all refresh tokens",
        description=(
            "Every refresh token you hold is blacklisted (log in again on every "
            "device); access tokens already issued live out their short lifetime."
        ),
        request=CodeConfirmSerializer,
        responses={
            204: None,
            400: CODE_ERRORS,
            401: UNAUTHENTICATED,
            429: THROTTLED,
        },
    )
    def post(self, request: Request) -> Response:
        data = CodeConfirmSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.password_change_confirm(user=request.user, **data.validated_data)
        return Response(status=status.HTTP_204_NO_CONTENT)


class PasswordResetView(PublicAPIView):
    throttle_classes = throttles("password_reset_ip", "password_reset_account")

    @extend_schema(
        summary="Forgotten password: email a code",
        description=(
            "Always 202 with a session, whether or not the address has an account "
            "(no account enumeration); only an account's address gets an email."
        ),
        request=PasswordResetSerializer,
        responses={
            202: VerificationSessionSerializer,
            400: VALIDATION_ERROR,
            429: THROTTLED,
        },
        auth=[],
    )
    def post(self, request: Request) -> Response:
        data = PasswordResetSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        session = services.password_reset_start(
            email=data.validated_data["email"], language=_language(request)
        )
        return Response(
            VerificationSessionSerializer(session).data, status=status.HTTP_202_ACCEPTED
        )


class PasswordResetConfirmView(PublicAPIView):
    throttle_classes = throttles("verify_ip")

    @extend_schema(
        summary="Reset a forgotten password with the emailed code",
        description="All refresh tokens are revoked and a login lock is lifted.",
        request=PasswordResetConfirmSerializer,
        responses={204: None, 400: CODE_ERRORS, 429: THROTTLED},
        auth=[],
    )
    def post(self, request: Request) -> Response:
        data = PasswordResetConfirmSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.password_reset_confirm(**data.validated_data)
        return Response(status=status.HTTP_204_NO_CONTENT)
