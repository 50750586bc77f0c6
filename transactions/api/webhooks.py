"""Webhook endpoints of the caller (any user, service accounts too):
`webhook-endpoints/` (list, create), `webhook-endpoints/{id}/` (get, delete),
`webhook-endpoints/{id}/rotate-secret/`. Another user's endpoint is a 404."""

from django.core.exceptions import ValidationError as DjangoValidationError
from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from transactions import webhooks
from transactions.models import Event, WebhookEndpoint
from wallet_project.api import error_response
from wallet_project.fields import StrictCharField

EVENT_TYPE_CHOICES = [(webhooks.ALL_EVENTS, _("every event")), *Event.Type.choices]


class WebhookEndpointSerializer(serializers.ModelSerializer):
    event_types = serializers.ListField(
        child=serializers.ChoiceField(choices=EVENT_TYPE_CHOICES), read_only=True
    )

    class Meta:
        model = WebhookEndpoint
        fields = [
            "id",
            "url",
            "event_types",
            "status",
            "failing_since",
            "disabled_at",
            "created_at",
        ]
        read_only_fields = fields


class WebhookEndpointCreatedSerializer(WebhookEndpointSerializer):
    secret = serializers.CharField(
        read_only=True,
        help_text=(
            "Signs every delivery (Wallet-Signature). Shown only now: keep it; "
            "rotate-secret makes a new one."
        ),
    )

    class Meta(WebhookEndpointSerializer.Meta):
        fields = [*WebhookEndpointSerializer.Meta.fields, "secret"]
        read_only_fields = fields


class WebhookEndpointCreateSerializer(serializers.Serializer):
    url = StrictCharField(
        max_length=2048,
        trim_whitespace=False,
        help_text=(
            "http or https, no user name or password; its host must resolve to "
            "public addresses only (else 400 `url_not_allowed`)."
        ),
    )
    event_types = serializers.ListField(
        child=serializers.ChoiceField(choices=EVENT_TYPE_CHOICES),
        allow_empty=False,
        help_text='["*"] for every event, or a list of event types.',
    )

    def validate_event_types(self, value: list[str]) -> list[str]:
        try:
            return webhooks.event_types_clean(value)
        except DjangoValidationError as error:
            raise serializers.ValidationError(error.messages) from None


class WebhookSecretSerializer(serializers.Serializer):
    secret = serializers.CharField(
        read_only=True,
        help_text=(
            "The new secret. The previous one keeps signing too (a second `v1` "
            "in Wallet-Signature) for 24 hours."
        ),
    )


ENDPOINT_NOT_FOUND = error_response(
    "No such endpoint among yours (`webhook_endpoint_not_found`)."
)


class WebhookEndpointListView(APIView):
    @extend_schema(
        summary="Your webhook endpoints (secrets are not shown)",
        responses={200: WebhookEndpointSerializer(many=True)},
        tags=["webhooks"],
    )
    def get(self, request: Request) -> Response:
        endpoints = webhooks.endpoint_list_for_user(user=request.user)
        return Response(WebhookEndpointSerializer(endpoints, many=True).data)

    @extend_schema(
        summary="Add a webhook endpoint",
        description=(
            "Your events of the chosen types are POSTed to `url` as JSON, signed "
            "with the `secret` returned here (and only here): "
            "`Wallet-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "
            '"<t>.<raw body>")>`, with `Wallet-Event-Id` and `Wallet-Event-Type`. '
            "A 2xx within 10 s is delivered; anything else (redirects included) is "
            "retried with backoff for 3 days. At most WEBHOOKS_MAX_ENDPOINTS (5) "
            "per user."
        ),
        request=WebhookEndpointCreateSerializer,
        responses={
            201: WebhookEndpointCreatedSerializer,
            400: error_response(
                "Invalid input, or a URL that may not be called (`url_not_allowed`)."
            ),
            409: error_response(
                "You have the most endpoints allowed "
                "(`webhook_endpoint_limit_reached`)."
            ),
        },
        tags=["webhooks"],
    )
    def post(self, request: Request) -> Response:
        data = WebhookEndpointCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        endpoint = webhooks.endpoint_create(
            user=request.user,
            url=data.validated_data["url"],
            event_types=data.validated_data["event_types"],
        )
        return Response(
            WebhookEndpointCreatedSerializer(endpoint).data,
            status=status.HTTP_201_CREATED,
        )


class WebhookEndpointDetailView(APIView):
    @extend_schema(
        summary="One of your webhook endpoints",
        responses={200: WebhookEndpointSerializer, 404: ENDPOINT_NOT_FOUND},
        tags=["webhooks"],
    )
    def get(self, request: Request, endpoint_id: str) -> Response:
        endpoint = webhooks.endpoint_get_for_user(
            user=request.user, endpoint_id=endpoint_id
        )
        return Response(WebhookEndpointSerializer(endpoint).data)

    @extend_schema(
        summary="Delete one of your webhook endpoints",
        description="Nothing more is sent to it, retries included.",
        responses={204: None, 404: ENDPOINT_NOT_FOUND},
        tags=["webhooks"],
    )
    def delete(self, request: Request, endpoint_id: str) -> Response:
        endpoint = webhooks.endpoint_get_for_user(
            user=request.user, endpoint_id=endpoint_id
        )
        webhooks.endpoint_delete(endpoint=endpoint)
        return Response(status=status.HTTP_204_NO_CONTENT)


class WebhookEndpointRotateSecretView(APIView):
    @extend_schema(
        summary="Rotate an endpoint's secret",
        description=(
            "Returns a new secret. For 24 hours every delivery is signed with both "
            "(two `v1` in Wallet-Signature), so your receiver can switch to the new "
            "one without missing a delivery; then only the new one signs."
        ),
        request=None,
        responses={200: WebhookSecretSerializer, 404: ENDPOINT_NOT_FOUND},
        tags=["webhooks"],
    )
    def post(self, request: Request, endpoint_id: str) -> Response:
        endpoint = webhooks.endpoint_get_for_user(
            user=request.user, endpoint_id=endpoint_id
        )
        endpoint = webhooks.endpoint_rotate_secret(endpoint=endpoint)
        return Response(WebhookSecretSerializer(endpoint).data)
