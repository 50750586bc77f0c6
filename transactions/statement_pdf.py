"""A wallet statement as a PDF, the way a bank sends one (fpdf2, DejaVu fonts).

One A4 document in the active language (English or Russian, from the request's
Accept-Language through LocaleMiddleware): who and which wallet, the period,
the opening balance, the totals in and out and the closing balance, then every
entry oldest first (date, description, kind, amount, balance after) with the
table's header on every page, and "page N of M" at the foot of each.

Cyrillic needs a Unicode TrueType font: DejaVu Sans (Debian's
fonts-dejavu-core) from STATEMENT_PDF_FONT_DIR. Without it nothing is drawn: an
ImproperlyConfigured names the missing file and the package.

The labels are here, by language, rather than in the project's catalogue: a
statement is a document of record whose wording changes with this layout.
"""

import logging
from datetime import datetime, tzinfo
from decimal import Decimal
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone, translation
from django.utils.text import capfirst
from fpdf import FPDF
from fpdf.enums import XPos, YPos

from transactions.models import Transaction
from transactions.selectors import EntryRow
from transactions.statements import Statement
from wallets.money import minor_digits

# fpdf2 subsets the fonts with fontTools, which logs some 70 INFO lines a document.
logging.getLogger("fontTools").setLevel(logging.WARNING)

FONT_FILES = {"": "DejaVuSans.ttf", "B": "DejaVuSans-Bold.ttf"}
FONT = "DejaVu"

LABELS = {
    "en": {
        "brand": "Wallet",
        "title": "Account statement",
        "holder": "Account holder",
        "email": "Email",
        "wallet": "Wallet number",
        "wallet_name": "Wallet name",
        "currency": "Currency",
        "period": "Period",
        "period_note": "the end of the period not included",
        "issued": "Issued",
        "opening": "Opening balance",
        "total_in": "Total in",
        "total_out": "Total out",
        "closing": "Closing balance",
        "date": "Date",
        "description": "Description",
        "kind": "Kind",
        "amount": "Amount",
        "balance_after": "Balance after",
        "to": "to",
        "from": "from",
        "no_entries": "No entries in this period.",
        "entries": "Entries",
        "page": "Page {page} of {pages}",
        "footer": "All times {tz}. Amounts in {currency}.",
    },
    "ru": {
        "brand": "Wallet",
        "title": "Выписка по счёту",
        "holder": "Владелец счёта",
        "email": "Эл. почта",
        "wallet": "Номер кошелька",
        "wallet_name": "Название кошелька",
        "currency": "Валюта",
        "period": "Период",
        "period_note": "конец периода не включается",
        "issued": "Дата выдачи",
        "opening": "Входящий остаток",
        "total_in": "Поступления",
        "total_out": "Списания",
        "closing": "Исходящий остаток",
        "date": "Дата",
        "description": "Описание",
        "kind": "Тип",
        "amount": "Сумма",
        "balance_after": "Остаток после",
        "to": "на",
        "from": "от",
        "no_entries": "За этот период операций нет.",
        "entries": "Операции",
        "page": "Страница {page} из {pages}",
        "footer": "Время указано в {tz}. Суммы в {currency}.",
    },
}

# Columns of the entries table: (label key, width in mm, alignment); 180 mm wide.
COLUMNS = (
    ("date", 29, "L"),
    ("description", 69, "L"),
    ("kind", 30, "L"),
    ("amount", 26, "R"),
    ("balance_after", 26, "R"),
)
ROW_HEIGHT = 6.0
# The columns whose text may not fit (dates and amounts always do).
_FREE_TEXT = ("description", "kind")
INK = (33, 37, 41)
MUTED = (108, 117, 125)
ACCENT = (17, 82, 147)
RULE = (206, 212, 218)
ZEBRA = (244, 246, 249)


def statement_language() -> str:
    """The statement's language: Russian when the request asked for it, else
    English."""
    return "ru" if (translation.get_language() or "").startswith("ru") else "en"


def _font_paths() -> dict[str, Path]:
    directory = Path(settings.STATEMENT_PDF_FONT_DIR)
    paths = {style: directory / name for style, name in FONT_FILES.items()}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise ImproperlyConfigured(
            f"Statement PDFs need the DejaVu Sans fonts, missing: {', '.join(missing)}."
            " Install Debian's fonts-dejavu-core or set STATEMENT_PDF_FONT_DIR."
        )
    return paths


def money(amount: Decimal, currency: str, language: str, *, sign: bool = False) -> str:
    """`amount` with its currency's decimals and the language's separators
    (1,234.56 / 1 234,56), a sign when asked (+100.00 / -50.00)."""
    text = f"{abs(amount):,.{minor_digits(currency)}f}"
    if language == "ru":
        text = text.replace(",", "\u00a0").replace(".", ",")
    if amount < 0:
        return "-" + text
    return ("+" + text) if sign and amount > 0 else text


def moment(value: datetime, language: str, tz: tzinfo) -> str:
    local = timezone.localtime(value, tz)
    return local.strftime("%d.%m.%Y %H:%M" if language == "ru" else "%Y-%m-%d %H:%M")


class _StatementPDF(FPDF):
    def __init__(self, *, labels: dict[str, str], number: str, footnote: str):
        super().__init__(orientation="P", unit="mm", format="A4")
        self.labels, self.number, self.footnote = labels, number, footnote
        self.set_margins(15, 15, 15)
        self.set_auto_page_break(auto=True, margin=18)
        for style, path in _font_paths().items():
            self.add_font(FONT, style, str(path))

    def footer(self) -> None:
        self.set_y(-13)
        self.set_draw_color(*RULE)
        self.line(15, self.get_y() - 1, 195, self.get_y() - 1)
        self.set_font(FONT, "", 7.5)
        self.set_text_color(*MUTED)
        self.cell(120, 5, f"{self.labels['brand']} · {self.number} · {self.footnote}")
        self.cell(
            60,
            5,
            self.labels["page"].format(page=self.page_no(), pages="{nb}"),
            align="R",
        )


def _description(row: EntryRow, labels: dict[str, str]) -> str:
    parts = [row.description.strip()] if row.description.strip() else []
    if row.counterparty:
        direction = labels["to"] if row.amount < 0 else labels["from"]
        parts.append(f"{direction} {row.counterparty}")
    return " · ".join(parts) or "—"


def _kind_label(kind: str) -> str:
    try:
        return capfirst(str(Transaction.Kind(kind).label))
    except ValueError:
        return kind


def _fit(pdf: FPDF, text: str, width: float) -> str:
    """`text` cut with an ellipsis to fit a cell `width` mm wide (one line a row:
    every row the same height, so a page holds a known number)."""
    room = width - 2 * pdf.c_margin
    if pdf.get_string_width(text) <= room:
        return text
    while text and pdf.get_string_width(text + "…") > room:
        text = text[:-1]
    return text.rstrip() + "…"


def statement_pdf(statement: Statement, *, issued_at: datetime | None = None) -> bytes:
    """The statement as PDF bytes, in the active language."""
    language = statement_language()
    labels = LABELS[language]
    head = statement.head
    currency = head.currency
    tz = timezone.get_current_timezone()
    tz_name = timezone.localtime(statement.since, tz).tzname() or str(tz)
    issued_at = issued_at or timezone.now()
    pdf = _StatementPDF(
        labels=labels,
        number=head.number,
        footnote=labels["footer"].format(tz=tz_name, currency=currency),
    )
    title = f"{labels['title']} {head.number}"
    pdf.set_title(title)
    pdf.set_author(labels["brand"])
    pdf.set_creator(labels["brand"])
    pdf.set_lang(language)
    pdf.add_page()

    # Letterhead: the brand and the document's title, the issue date.
    pdf.set_text_color(*ACCENT)
    pdf.set_font(FONT, "B", 18)
    pdf.cell(90, 9, labels["brand"])
    pdf.set_font(FONT, "", 9)
    pdf.set_text_color(*MUTED)
    pdf.cell(
        90,
        9,
        f"{labels['issued']}: {moment(issued_at, language, tz)} {tz_name}",
        align="R",
        new_x=XPos.LMARGIN,
        new_y=YPos.NEXT,
    )
    pdf.set_text_color(*INK)
    pdf.set_font(FONT, "B", 13)
    pdf.cell(180, 8, labels["title"], new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_draw_color(*ACCENT)
    pdf.set_line_width(0.6)
    pdf.line(15, pdf.get_y() + 1, 195, pdf.get_y() + 1)
    pdf.set_line_width(0.2)
    pdf.ln(4)

    # Who, which wallet, which period (left); the balances (right).
    period = (
        f"{moment(statement.since, language, tz)} – "
        f"{moment(statement.until, language, tz)}"
    )
    details = [
        ("holder", head.owner_name or head.owner_email),
        ("email", head.owner_email),
        ("wallet", head.number),
        *([("wallet_name", head.name)] if head.name else []),
        ("currency", currency),
        ("period", period),
    ]
    top = pdf.get_y()
    for key, value in details:
        pdf.set_font(FONT, "", 8.5)
        pdf.set_text_color(*MUTED)
        pdf.cell(34, 5.5, labels[key])
        pdf.set_font(FONT, "B" if key in ("holder", "wallet") else "", 8.5)
        pdf.set_text_color(*INK)
        pdf.cell(62, 5.5, _fit(pdf, value, 62), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font(FONT, "", 7)
    pdf.set_text_color(*MUTED)
    pdf.set_x(15 + 34)
    pdf.cell(62, 4, f"({labels['period_note']})", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    bottom = pdf.get_y()

    summary = [
        ("opening", money(head.opening_balance, currency, language)),
        ("total_in", money(statement.total_in, currency, language, sign=True)),
        ("total_out", money(-statement.total_out, currency, language)),
        ("closing", money(head.closing_balance, currency, language)),
    ]
    box_x, box_w = 112, 83
    pdf.set_fill_color(*ZEBRA)
    pdf.set_draw_color(*RULE)
    pdf.rect(box_x, top, box_w, 7.5 * len(summary) + 3, style="DF")
    pdf.set_y(top + 1.5)
    for key, value in summary:
        strong = key in ("opening", "closing")
        pdf.set_x(box_x + 3)
        pdf.set_font(FONT, "B" if strong else "", 9)
        pdf.set_text_color(*(INK if strong else MUTED))
        pdf.cell(40, 7.5, labels[key])
        pdf.set_text_color(*INK)
        pdf.set_font(FONT, "B" if strong else "", 10 if strong else 9)
        pdf.cell(
            37,
            7.5,
            f"{value} {currency}",
            align="R",
            new_x=XPos.LMARGIN,
            new_y=YPos.NEXT,
        )
    pdf.set_y(max(bottom, pdf.get_y() + 1.5) + 6)

    # The entries, oldest first, the header on every page.
    pdf.set_font(FONT, "B", 10)
    pdf.set_text_color(*INK)
    pdf.cell(
        180,
        7,
        f"{labels['entries']} ({len(statement.entries)})",
        new_x=XPos.LMARGIN,
        new_y=YPos.NEXT,
    )

    def table_header() -> None:
        pdf.set_font(FONT, "B", 8)
        pdf.set_fill_color(*ACCENT)
        pdf.set_text_color(255, 255, 255)
        for key, width, align in COLUMNS:
            pdf.cell(width, 7, labels[key], align=align, fill=True)
        pdf.ln(7)

    table_header()
    if not statement.entries:
        pdf.set_font(FONT, "", 9)
        pdf.set_text_color(*MUTED)
        pdf.cell(180, 10, labels["no_entries"], align="C")
    pdf.set_draw_color(*RULE)
    for n, row in enumerate(statement.entries):
        if pdf.will_page_break(ROW_HEIGHT):
            pdf.add_page()
            table_header()
        pdf.set_font(FONT, "", 8)
        pdf.set_text_color(*INK)
        pdf.set_fill_color(*(ZEBRA if n % 2 else (255, 255, 255)))
        after = row.balance_after
        cells = (
            moment(row.created_at, language, tz),
            _description(row, labels),
            _kind_label(row.kind),
            money(row.amount, currency, language, sign=True),
            "" if after is None else money(after, currency, language),
        )
        for (key, width, align), text in zip(COLUMNS, cells, strict=True):
            if key in _FREE_TEXT:
                text = _fit(pdf, text, width)
            pdf.cell(width, ROW_HEIGHT, text, align=align, fill=True)
        pdf.ln(ROW_HEIGHT)
    if statement.entries:
        pdf.line(15, pdf.get_y(), 195, pdf.get_y())
        pdf.ln(1.5)
        pdf.set_font(FONT, "B", 8.5)
        pdf.cell(122, 6, labels["closing"], align="R")
        pdf.cell(
            58,
            6,
            f"{money(head.closing_balance, currency, language)} {currency}",
            align="R",
        )
    return bytes(pdf.output())
