"""The PDF statement (`wallets/{id}/statement/?format=pdf`), read back as a
person would: rendered to an image by poppler's pdftoppm and its text taken by
pdftotext (Debian's poppler-utils; .ci/run installs it).

With STATEMENT_SHOTS_DIR set, the first page of each language is kept there as
a PNG, to look at."""

import os
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone, translation

from transactions import ledger, statements
from transactions.statement_pdf import statement_pdf
from wallets.models import Wallet

pytestmark = pytest.mark.django_db


def poppler(tool: str) -> str:
    path = shutil.which(tool)
    assert path, f"{tool} is missing: apt-get install poppler-utils"
    return path


def pdf_text(pdf: bytes, tmp_path: Path, *, page: int | None = None) -> str:
    source = tmp_path / "statement.pdf"
    source.write_bytes(pdf)
    pages = ["-f", str(page), "-l", str(page)] if page else []
    return subprocess.run(
        [poppler("pdftotext"), "-layout", *pages, str(source), "-"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def pdf_page_png(pdf: bytes, tmp_path: Path, name: str) -> Path:
    """Page 1 as a PNG (pdftoppm, 100 dpi); kept in STATEMENT_SHOTS_DIR if set."""
    source = tmp_path / f"{name}.pdf"
    source.write_bytes(pdf)
    subprocess.run(
        [
            poppler("pdftoppm"),
            "-png",
            "-r",
            "100",
            "-f",
            "1",
            "-l",
            "1",
            "-singlefile",
            str(source),
            str(tmp_path / name),
        ],
        check=True,
        capture_output=True,
    )
    png = tmp_path / f"{name}.png"
    if shots := os.environ.get("STATEMENT_SHOTS_DIR"):
        Path(shots).mkdir(parents=True, exist_ok=True)
        shutil.copy(png, Path(shots) / png.name)
    return png


@pytest.fixture
def owner(user):
    user.first_name, user.last_name = "Айгерим", "Садыкова"
    user.save(update_fields=["first_name", "last_name"])
    return user


@pytest.fixture
def history(owner, make_wallet):
    """A KZT wallet with a deposit, a withdrawal, a transfer out (with a
    description) and one in."""
    wallet = make_wallet(owner=owner, currency="KZT")
    friend = make_wallet(currency="KZT", balance="500.00")
    ledger.wallet_deposit(wallet=wallet, amount=Decimal("125000.00"))
    ledger.wallet_withdraw(wallet=wallet, amount=Decimal("2500.50"))
    ledger.transfer_create(
        source=wallet,
        destination_number=friend.number,
        amount=Decimal("10000.00"),
        description="Rent for May / аренда за май",
    )
    ledger.transfer_create(
        source=friend, destination_number=wallet.number, amount=Decimal("300.00")
    )
    wallet.refresh_from_db()
    return wallet, friend


def get_pdf(client, wallet, language: str, **params):
    query = "&".join(f"{k}={v}" for k, v in {"format": "pdf", **params}.items())
    return client.get(
        f"/api/v1/wallets/{wallet.id}/statement/?{query}",
        HTTP_ACCEPT_LANGUAGE=language,
    )


def test_an_english_pdf_statement_reads_like_a_bank_s(
    auth_api, owner, history, tmp_path
):
    wallet, friend = history
    response = get_pdf(auth_api, wallet, "en")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert response["Content-Disposition"].startswith(
        f'attachment; filename="statement-{wallet.number}-'
    )
    assert response.content.startswith(b"%PDF-")
    png = pdf_page_png(response.content, tmp_path, "statement-en")
    assert png.stat().st_size > 20_000  # a page with text on it, not a blank one
    text = pdf_text(response.content, tmp_path)
    for expected in (
        "Account statement",
        "Айгерим Садыкова",
        owner.email,
        wallet.number,
        "KZT",
        "Opening balance",
        "0.00 KZT",
        "Total in",
        "+125,300.00 KZT",
        "Total out",
        "-12,500.50 KZT",
        "Closing balance",
        "112,799.50 KZT",
        "Balance after",
        "Rent for May / аренда за май · to ",
        "from " + friend.number,
        "-2,500.50",
        "122,499.50",
        "Page 1 of 1",
    ):
        assert expected in text, expected
    # Oldest first.
    assert text.index("+125,000.00") < text.index("-2,500.50") < text.index("+300.00")


def test_a_russian_pdf_statement_by_accept_language(auth_api, history, tmp_path):
    wallet, _ = history
    response = get_pdf(auth_api, wallet, "ru-RU,ru;q=0.9,en;q=0.5")
    assert response.status_code == 200
    pdf_page_png(response.content, tmp_path, "statement-ru")
    text = pdf_text(response.content, tmp_path)
    for expected in (
        "Выписка по счёту",
        "Владелец счёта",
        "Айгерим Садыкова",
        wallet.number,
        "Входящий остаток",
        "Поступления",
        # Grouped by a no-break space (pdftotext reads it as a space).
        "+125 300,00 KZT",
        "Списания",
        "Исходящий остаток",
        "112 799,50 KZT",
        "Остаток после",
        "Пополнение",  # the deposit's kind, as the admin words it in Russian
        "Страница 1 из 1",
    ):
        assert expected in text, expected
    assert "Account statement" not in text


def test_a_long_pdf_statement_has_numbered_pages_with_the_table_header_on_each(
    auth_api, user, make_wallet, tmp_path
):
    wallet = make_wallet(owner=user, balance="1000.00")
    for _ in range(70):
        ledger.wallet_withdraw(wallet=wallet, amount=Decimal("1.00"))
        ledger.wallet_deposit(wallet=wallet, amount=Decimal("2.00"))
    response = get_pdf(auth_api, wallet, "en")
    assert response.status_code == 200
    text = pdf_text(response.content, tmp_path)
    pages = text.count("Page ")
    assert pages >= 3
    assert f"Page {pages} of {pages}" in text
    last = pdf_text(response.content, tmp_path, page=pages)
    assert "Balance after" in last
    assert "1,070.00" in last  # the last balance, on the last page
    assert "Entries (141)" in text


def test_a_pdf_over_its_limit_is_a_json_400_pointing_to_csv(
    auth_api, history, settings
):
    wallet, _ = history
    settings.STATEMENT_PDF_MAX_ENTRIES = 3
    response = get_pdf(auth_api, wallet, "en")
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["code"] == "statement_too_large"
    assert "format=csv" in body["detail"]
    assert "PDF" in body["detail"]


def test_an_empty_period_is_a_statement_saying_so(auth_api, history, tmp_path):
    wallet, _ = history
    response = get_pdf(
        auth_api,
        wallet,
        "en",
        **{"from": "2020-01-01T00:00:00Z", "to": "2020-02-01T00:00:00Z"},
    )
    assert response.status_code == 200
    text = pdf_text(response.content, tmp_path)
    assert "No entries in this period." in text
    assert "2020-01-01 00:00 – 2020-02-01 00:00" in text
    assert "All times UTC." in text


def test_without_the_fonts_the_pdf_fails_naming_the_package(
    history, settings, tmp_path
):
    wallet, _ = history
    settings.STATEMENT_PDF_FONT_DIR = str(tmp_path / "no-fonts")
    now = timezone.now()
    statement = statements.statement_for_user(
        user_id=wallet.owner_id,
        wallet_id=wallet.id,
        since=now - timedelta(days=1),
        until=now,
        max_entries=10,
        format_name="PDF",
    )
    with translation.override("en"):
        with pytest.raises(ImproperlyConfigured, match="fonts-dejavu-core"):
            statement_pdf(statement)


def test_the_pdf_shows_times_in_the_current_time_zone(history, settings, tmp_path):
    wallet, _ = history
    since = datetime(2020, 1, 1, tzinfo=UTC)
    statement = statements.statement_for_user(
        user_id=wallet.owner_id,
        wallet_id=wallet.id,
        since=since,
        until=since + timedelta(days=1),
        max_entries=10,
        format_name="PDF",
    )
    with (
        translation.override("ru"),
        timezone.override(timezone.get_fixed_timezone(5 * 60)),
    ):
        text = pdf_text(statement_pdf(statement), tmp_path)
    assert "01.01.2020 05:00 – 02.01.2020 05:00" in text
    assert "Время указано в +0500." in text
    assert Wallet.objects.get(pk=wallet.pk).number in text
