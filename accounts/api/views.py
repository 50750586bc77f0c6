from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.api.serializers import TokenObtainSerializer, UserSerializer
from wallet_project.api import VALIDATION_ERROR, error_response

TOKEN_PAIR = inline_serializer(
    "TokenPair", {"access": serializers.CharField(), "refresh": serializers.CharField()}
)


class TokenObtainView(APIView):
    permission_classes = [AllowAny]
    authentication_classes: list = []

    def get_authenticate_header(self, request: Request) -> str:
        # Wrong credentials are a 401 (with a challenge), not a 403.
        return 'Bearer realm="api"'

    @extend_schema(
        summary="Log in: a JWT pair for email or phone number and password",
        request=TokenObtainSerializer,
        responses={
            200: TOKEN_PAIR,
            400: VALIDATION_ERROR,
            401: error_response("Wrong credentials (`invalid_credentials`)."),
        },
        auth=[],
    )
    def post(self, request: Request) -> Response:
        serializer = TokenObtainSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        tokens = serializer.validated_data
        return Response({"access": tokens["access"], "refresh": tokens["refresh"]})


class MeView(APIView):
    @extend_schema(summary="Your profile", responses={200: UserSerializer})
    def get(self, request: Request) -> Response:
        return Response(UserSerializer(request.user, context={"request": request}).data)
