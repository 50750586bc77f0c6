"""Balances in the past and statements (`wallets/{id}/balance/`,
`wallets/{id}/statement/`): the owner's reads of a wallet's entries by time.

A statement comes as JSON (the default), CSV or PDF, chosen by `?format=` or the
Accept header through DRF's own content negotiation (the view's renderers say
which formats exist; another `format` is a 400). Errors are JSON whatever the
format asked.
"""

import csv
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta
from typing import Any, cast
from uuid import UUID

from django import forms
from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from transactions import statements
from transactions.api.serializers import EntrySerializer, entry_page_data
from transactions.statement_pdf import statement_pdf
from wallet_project.api import VALIDATION_ERROR, error_response
from wallet_project.db_router import read_alias, reading_from
from wallet_project.filters import DatabaseDateTimeField
from wallet_project.lean import LeanMixin, drf_datetime, json_response
from wallet_project.replica import replica_reads
from wallets.errors import WalletNotFound
from wallets.money import money_str

# A statement without `from` covers this much time before its `to`.
DEFAULT_PERIOD = timedelta(days=30)

INVALID_TIME = _("Enter a date and time in ISO 8601, e.g. 2026-05-01T00:00:00Z.")


# --- Query parameters -----------------------------------------------------------------


class _TimeField(DatabaseDateTimeField):
    """ISO 8601 that PostgreSQL can compare (wallet_project.filters); a time
    without an offset is in the current time zone (UTC)."""

    default_error_messages = {"invalid": INVALID_TIME}


_AS_OF = _TimeField(required=False)


def _as_of(params: Mapping[str, Any]) -> datetime | None:
    """The request's `as_of` (aware, UTC), None without one; a ValidationError
    saying what to send. One field, not a whole Form: the lean path parses it
    on every request."""
    value = params.get("as_of")
    if value in (None, ""):
        return None
    try:
        return _AS_OF.clean(value)
    except forms.ValidationError as exc:
        raise ValidationError({"as_of": exc.messages}) from None


class StatementQuery(forms.Form):
    # `from` is a Python keyword: the form's fields are named by the query's
    # parameters in __init__.
    def __init__(self, data: Mapping[str, Any]) -> None:
        super().__init__(data)
        self.fields["from"] = _TimeField(required=False)
        self.fields["to"] = _TimeField(required=False)

    def clean(self) -> dict[str, Any]:
        data = cast(dict[str, Any], super().clean())  # Form.clean: cleaned_data
        until = data.get("to")
        since = data.get("from")
        if "to" in self.errors or "from" in self.errors:
            return data
        until = data["to"] = until or timezone.now()
        if since is None:
            try:
                since = until - DEFAULT_PERIOD
            except OverflowError:
                raise forms.ValidationError(
                    {"from": _("Give `from` with a `to` this early.")}
                ) from None
            data["from"] = since
        if since >= until:
            raise forms.ValidationError({"from": _("`from` must be before `to`.")})
        return data


def _parsed(form: forms.Form) -> dict[str, Any]:
    if not form.is_valid():
        raise ValidationError({k: list(v) for k, v in form.errors.items()})
    return form.cleaned_data


def _wallet_uuid(wallet_id: str) -> UUID:
    try:
        return UUID(wallet_id)
    except ValueError:
        raise WalletNotFound() from None


# --- Balance as of --------------------------------------------------------------------


class BalanceSerializer(serializers.Serializer):
    wallet_id = serializers.UUIDField()
    currency = serializers.CharField()
    as_of = serializers.DateTimeField()
    balance = serializers.CharField(help_text='The balance then, e.g. "100.00".')


def _balance_body(
    user_id: UUID, wallet_id: UUID, as_of: datetime | None
) -> dict | None:
    """The balance-as-of body (None: not the user's wallet): one query
    (statements.balance_as_of_for_user). Without `as_of`, now: the wallet's
    balance."""
    found = statements.balance_as_of_for_user(
        user_id=user_id, wallet_id=wallet_id, as_of=as_of or timezone.now()
    )
    if found is None:
        return None
    balance = found.balance if as_of is None else found.balance_as_of
    return {
        "wallet_id": str(wallet_id),
        "currency": found.currency,
        "as_of": drf_datetime(as_of or timezone.now(), timezone.get_current_timezone()),
        "balance": money_str(balance, found.currency),
    }


@extend_schema(
    summary="A wallet's balance at a moment in the past",
    description=(
        "The balance right after the wallet's last entry at or before `as_of` "
        '("0.00" before its first entry); without `as_of`, its balance now. One '
        "index lookup, whatever the wallet's size."
    ),
    parameters=[
        OpenApiParameter(
            "as_of",
            OpenApiTypes.DATETIME,
            description="ISO 8601 (URL-encode a `+` offset, or use `Z`); default now.",
        )
    ],
    responses={
        200: BalanceSerializer,
        400: VALIDATION_ERROR,
        404: error_response("No such wallet."),
    },
)
class WalletBalanceView(LeanMixin, APIView):
    @replica_reads
    def lean_get(
        self, request: HttpRequest, user_id: UUID, **kwargs: Any
    ) -> HttpResponse | None:
        """The plain case off DRF's envelope, by the same code as `get`;
        a bad id or `as_of`, or a wallet that is not the caller's, take DRF's
        path (which words the error)."""
        try:
            wallet_id = UUID(kwargs["wallet_id"])
        except ValueError:
            return None
        try:
            as_of = _as_of(request.GET)
        except ValidationError:
            return None
        body = _balance_body(user_id, wallet_id, as_of)
        return None if body is None else json_response(body)

    @replica_reads
    def get(self, request: Request, wallet_id: str) -> Response:
        wallet_uuid = _wallet_uuid(wallet_id)
        body = _balance_body(request.user.pk, wallet_uuid, _as_of(request.query_params))
        if body is None:
            raise WalletNotFound()
        return Response(body)


# --- Statements -----------------------------------------------------------------------


class CSVRenderer(BaseRenderer):
    """`format=csv`: the view streams the CSV itself (a StreamingHttpResponse);
    the renderer only makes the format negotiable."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(
        self,
        data: Any,
        accepted_media_type: str | None = None,
        renderer_context: dict[str, Any] | None = None,
    ) -> bytes:
        raise NotImplementedError("statements stream their CSV")


class PDFRenderer(BaseRenderer):
    """`format=pdf`: the view answers with the document's bytes."""

    media_type = "application/pdf"
    format = "pdf"
    charset = None
    render_style = "binary"

    def render(
        self,
        data: Any,
        accepted_media_type: str | None = None,
        renderer_context: dict[str, Any] | None = None,
    ) -> bytes:
        raise NotImplementedError("statements answer with the PDF's bytes")


class StatementSerializer(serializers.Serializer):
    wallet_id = serializers.UUIDField()
    currency = serializers.CharField()
    # `from` is a Python keyword: the field is renamed in __init__.
    from_ = serializers.DateTimeField(help_text="Inclusive.")
    to = serializers.DateTimeField(help_text="Exclusive.")
    opening_balance = serializers.CharField(help_text="The balance just before from.")
    closing_balance = serializers.CharField(help_text="The balance just before to.")
    total_in = serializers.CharField(help_text="The sum of the credits.")
    total_out = serializers.CharField(help_text="The sum of the debits, positive.")
    entries = EntrySerializer(many=True, help_text="Oldest first.")

    def get_fields(self) -> dict[str, Any]:
        fields = super().get_fields()
        return {("from" if k == "from_" else k): v for k, v in fields.items()}


# CSV columns, after the header row (one line per entry, oldest first).
CSV_HEADER = (
    "created_at",
    "entry_id",
    "transaction_id",
    "kind",
    "description",
    "counterparty",
    "amount",
    "currency",
    "balance_after",
)

# A spreadsheet runs a cell starting with one of these as a formula: free text
# (a description) gets a leading apostrophe (OWASP's CSV injection advice).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _text_cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


class _Line:
    """csv.writer's file: each row comes back as its text."""

    def write(self, value: str) -> str:
        return value


def _chunks_from(
    alias: str, wallet_id: UUID, since: datetime, until: datetime
) -> Iterator[list]:
    with reading_from(alias):
        yield from statements.statement_entries_iter(
            wallet_id=wallet_id, since=since, until=until
        )


def _csv_chunks(
    wallet_id: UUID, since: datetime, until: datetime, alias: str
) -> Iterator[str]:
    """The header row, then every entry in [since, until) oldest first, one
    keyset chunk (statements.STATEMENT_CHUNK rows) per piece sent, read from
    `alias` (where the handler read the head: the body streams after it)."""
    writer = csv.writer(_Line(), lineterminator="\r\n")
    yield writer.writerow(CSV_HEADER)
    tz = timezone.get_current_timezone()
    for rows in _chunks_from(alias, wallet_id, since, until):
        page = entry_page_data(rows, wallet_id=str(wallet_id), tz=tz)
        yield "".join(
            writer.writerow(
                (
                    entry["created_at"],
                    entry["id"],
                    entry["transaction_id"],
                    entry["kind"],
                    _text_cell(entry["description"]),
                    _text_cell(entry["counterparty"]),
                    entry["amount"],
                    entry["currency"],
                    entry["balance_after"] or "",
                )
            )
            for entry in page
        )


def _filename(number: str, since: datetime, until: datetime, extension: str) -> str:
    return (
        f'attachment; filename="statement-{number}-'
        f'{since:%Y%m%dT%H%M%S}-{until:%Y%m%dT%H%M%S}.{extension}"'
    )


@extend_schema(
    summary="A wallet's statement for a period (JSON, CSV or PDF)",
    description=(
        "Entries with `from` <= created_at < `to`, oldest first, with the balance "
        "just before each end (the closing balance of one period is the opening "
        "balance of the next). Defaults: `to` now, `from` 30 days before `to`.\n\n"
        "`format=json` (the default): at most STATEMENT_JSON_MAX_ENTRIES entries. "
        "`format=csv`: streamed, any period: a header row, then one row per "
        "entry (no balance lines: each row has its balance_after). "
        "`format=pdf`: the printable statement in the language of Accept-Language "
        "(en, ru), at most STATEMENT_PDF_MAX_ENTRIES entries. A longer period is "
        "a 400 `statement_too_large`: ask for CSV. Errors are JSON in every format."
    ),
    parameters=[
        OpenApiParameter(
            "from", OpenApiTypes.DATETIME, description="Inclusive (ISO 8601)."
        ),
        OpenApiParameter(
            "to", OpenApiTypes.DATETIME, description="Exclusive (ISO 8601)."
        ),
    ],
    responses={
        (200, "application/json"): StatementSerializer,
        (200, "text/csv"): OpenApiResponse(
            OpenApiTypes.STR, description="CSV: a header row, then the entries."
        ),
        (200, "application/pdf"): OpenApiResponse(
            OpenApiTypes.BINARY, description="The statement as a PDF document."
        ),
        (400, "application/json"): error_response(
            "A bad `from`/`to`/`format` ({field: [message]}), or too many "
            "entries for JSON/PDF (`statement_too_large`)."
        ),
        (404, "application/json"): error_response("No such wallet."),
    },
)
class WalletStatementView(APIView):
    renderer_classes = [JSONRenderer, CSVRenderer, PDFRenderer]

    def perform_content_negotiation(
        self, request: Request, force: bool = False
    ) -> tuple[Any, str]:
        try:
            return super().perform_content_negotiation(request, force=force)
        except Http404:  # DRF's answer to an unknown ?format=
            raise ValidationError(
                {"format": [_("Choose one of: json, csv, pdf.")]}
            ) from None

    def finalize_response(
        self, request: Request, response: HttpResponseBase, *args: Any, **kwargs: Any
    ) -> HttpResponseBase:
        # CSV and PDF leave as Django responses of their own; whatever DRF
        # renders (an error, OPTIONS) is JSON, whatever format was asked for.
        if isinstance(response, Response):
            request.accepted_renderer = JSONRenderer()
            request.accepted_media_type = JSONRenderer.media_type
        return super().finalize_response(request, response, *args, **kwargs)

    @replica_reads
    def get(
        self, request: Request, wallet_id: str
    ) -> HttpResponse | StreamingHttpResponse:
        wallet_uuid = _wallet_uuid(wallet_id)
        query = _parsed(StatementQuery(request.query_params))
        since, until = query["from"], query["to"]
        format_name = request.accepted_renderer.format
        if format_name == "csv":
            return self._csv(request.user.pk, wallet_uuid, since, until)
        limit = (
            settings.STATEMENT_PDF_MAX_ENTRIES
            if format_name == "pdf"
            else settings.STATEMENT_JSON_MAX_ENTRIES
        )
        statement = statements.statement_for_user(
            user_id=request.user.pk,
            wallet_id=wallet_uuid,
            since=since,
            until=until,
            max_entries=limit,
            format_name=format_name.upper(),
        )
        if statement is None:
            raise WalletNotFound()
        if format_name == "pdf":
            response = HttpResponse(
                statement_pdf(statement), content_type="application/pdf"
            )
            response["Content-Disposition"] = _filename(
                statement.head.number, since, until, "pdf"
            )
            return response
        return Response(_statement_body(statement))

    def _csv(
        self, user_id: UUID, wallet_id: UUID, since: datetime, until: datetime
    ) -> StreamingHttpResponse:
        head = statements.statement_head_for_user(
            user_id=user_id, wallet_id=wallet_id, since=since, until=until
        )
        if head is None:
            raise WalletNotFound()
        response = StreamingHttpResponse(
            _csv_chunks(wallet_id, since, until, read_alias()),
            content_type="text/csv; charset=utf-8",
        )
        response["Content-Disposition"] = _filename(head.number, since, until, "csv")
        # The period's two balances, known before the first row: a client can
        # check its sum of the rows against them.
        response["X-Opening-Balance"] = money_str(head.opening_balance, head.currency)
        response["X-Closing-Balance"] = money_str(head.closing_balance, head.currency)
        # Nginx sends the rows on as they come instead of buffering the export.
        response["X-Accel-Buffering"] = "no"
        return response


def _statement_body(statement: statements.Statement) -> dict:
    head, currency = statement.head, statement.head.currency
    tz = timezone.get_current_timezone()
    return {
        "wallet_id": str(head.wallet_id),
        "currency": currency,
        "from": drf_datetime(statement.since, tz),
        "to": drf_datetime(statement.until, tz),
        "opening_balance": money_str(head.opening_balance, currency),
        "closing_balance": money_str(head.closing_balance, currency),
        "total_in": money_str(statement.total_in, currency),
        "total_out": money_str(statement.total_out, currency),
        "entries": entry_page_data(
            statement.entries, wallet_id=str(head.wallet_id), tz=tz
        ),
    }
