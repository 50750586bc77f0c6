"""GET /api/v1/rates/ and GET /api/v1/rates/quote/."""

from typing import Any

from django.conf import settings
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from wallet_project.api import VALIDATION_ERROR, AmountField, error_response
from wallets import selectors
from wallets.models import ExchangeRate
from wallets.money import money_str

RATE_UNAVAILABLE = error_response(
    "No rate for the pair, or it is older than RATE_MAX_AGE (`rate_unavailable`)."
)


class ExchangeRateSerializer(serializers.ModelSerializer):
    rate = serializers.DecimalField(max_digits=30, decimal_places=10)
    stale = serializers.SerializerMethodField(
        help_text=_("Older than RATE_MAX_AGE: not used for conversions.")
    )

    class Meta:
        model = ExchangeRate
        fields = ["base", "quote", "rate", "source", "fetched_at", "stale"]
        read_only_fields = fields

    def get_stale(self, rate: ExchangeRate) -> bool:
        return rate.fetched_at < self.context["now"] - settings.RATE_MAX_AGE


class QuoteQuerySerializer(serializers.Serializer):
    # `from` is a Python keyword, so both currencies are added by name below.
    amount = AmountField()

    def get_fields(self) -> dict[str, Any]:
        fields = super().get_fields()
        for name in ("from", "to"):
            fields[name] = serializers.ChoiceField(choices=settings.WALLET_CURRENCIES)
        return fields


class QuoteSerializer(serializers.Serializer):
    amount = serializers.CharField()
    rate = serializers.CharField(help_text=_("1 `from` = `rate` `to`."))
    spread_bps = serializers.IntegerField(
        help_text=_("The house's spread in basis points of the converted amount.")
    )
    spread = serializers.CharField(
        help_text=_(
            "What the house keeps, in `to`: amount x rate rounded toward zero, "
            "minus `amount_out`."
        )
    )
    amount_out = serializers.CharField(
        help_text=_(
            "What a transfer of `amount` credits: amount x rate less the spread, "
            "rounded toward zero to `to`'s minor unit."
        )
    )
    as_of = serializers.DateTimeField(help_text=_("When the rate was fetched."))

    def get_fields(self) -> dict[str, Any]:
        return {
            "from": serializers.CharField(),
            "to": serializers.CharField(),
            **super().get_fields(),
        }


class RateListView(APIView):
    @extend_schema(
        summary="Stored exchange rates (1 base = rate quote)",
        responses={200: ExchangeRateSerializer(many=True)},
    )
    def get(self, request: Request) -> Response:
        rates = selectors.rate_list()
        context = {"now": timezone.now()}
        return Response(ExchangeRateSerializer(rates, many=True, context=context).data)


class RateQuoteView(APIView):
    @extend_schema(
        summary="What an amount converts to at the current rate",
        parameters=[
            OpenApiParameter(
                "from", OpenApiTypes.STR, required=True, enum=settings.WALLET_CURRENCIES
            ),
            OpenApiParameter(
                "to", OpenApiTypes.STR, required=True, enum=settings.WALLET_CURRENCIES
            ),
            OpenApiParameter(
                "amount", OpenApiTypes.STR, required=True, description="e.g. 100.50"
            ),
        ],
        responses={200: QuoteSerializer, 400: VALIDATION_ERROR, 503: RATE_UNAVAILABLE},
    )
    def get(self, request: Request) -> Response:
        query = QuoteQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        conversion = selectors.conversion_quote(
            source_currency=query.validated_data["from"],
            target_currency=query.validated_data["to"],
            amount=query.validated_data["amount"],
        )
        return Response(
            {
                "from": conversion.source_currency,
                "to": conversion.target_currency,
                "amount": money_str(conversion.amount, conversion.source_currency),
                "rate": str(conversion.rate),
                "spread_bps": conversion.spread_bps,
                "spread": money_str(conversion.spread, conversion.target_currency),
                "amount_out": money_str(
                    conversion.amount_out, conversion.target_currency
                ),
                "as_of": conversion.as_of,
            }
        )
