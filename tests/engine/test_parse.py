"""engine.parse: every format round-trips its text, and every failure gets the right status."""

from __future__ import annotations

import errno
import os
import random
import zipfile
from pathlib import Path

import pytest

from engine.errors import ParseError
from engine.parse import SUPPORTED_SUFFIXES, kind_for, parse
from engine.parse import text as text_module
from engine.parse.guard import human_size
from engine.types import FileStatus
from tests.filemaker import (
    make_docx,
    make_eml,
    make_encrypted_pdf,
    make_epub,
    make_html,
    make_odf,
    make_odt,
    make_pdf,
    make_pptx,
    make_xlsx,
)

MAX = 10 * 1024**2


def failure(path: Path, max_bytes: int = MAX) -> ParseError:
    with pytest.raises(ParseError) as info:
        parse(path, max_bytes=max_bytes)
    return info.value


def test_registry_by_suffix():
    assert kind_for("a/b/Report.PDF") == "pdf"
    assert kind_for(Path("notes.md")) == "text"
    assert kind_for("main.rs") == "text"
    assert kind_for("page.htm") == "html"
    assert kind_for("sheet.xlsm") == "xlsx"
    assert kind_for("slides.odp") == "odf"
    assert kind_for("program.exe") is None
    assert kind_for("Makefile") is None
    assert {".pdf", ".docx", ".pptx", ".xlsx", ".odt", ".epub", ".eml", ".html", ".txt"} <= (
        SUPPORTED_SUFFIXES
    )
    assert all(s == s.lower() and s.startswith(".") for s in SUPPORTED_SUFFIXES)


# ---------------------------------------------------------------- formats round-trip


def test_pdf_pages_keep_their_numbers(tmp_path):
    path = make_pdf(tmp_path / "a.pdf", ["First page\nhas two lines", "", "Third (page) café"])
    parsed = parse(path, max_bytes=MAX)
    assert parsed.kind == "pdf"
    assert [p.number for p in parsed.pages] == [1, 3]  # the blank page is dropped
    assert "First page" in parsed.pages[0].text and "has two lines" in parsed.pages[0].text
    assert "Third (page) café" in parsed.pages[1].text


def test_pdf_without_text_needs_ocr(tmp_path):
    error = failure(make_pdf(tmp_path / "scan.pdf", ["", ""]))
    assert error.status == FileStatus.NO_TEXT
    assert "OCR" in error.reason


def test_docx_paragraphs_and_tables_in_order(tmp_path):
    path = make_docx(tmp_path / "a.docx", ["Quarterly report", "Revenue grew"],
                     table=[["Region", "Sales"], ["North", "12"]])
    parsed = parse(path, max_bytes=MAX)
    assert parsed.kind == "docx"
    assert [p.number for p in parsed.pages] == [None]
    assert parsed.pages[0].text == "Quarterly report\nRevenue grew\nRegion\tSales\nNorth\t12"


def test_pptx_one_page_per_slide_with_notes(tmp_path):
    path = make_pptx(tmp_path / "a.pptx", ["Intro", "", "Results"], notes=["say hello"])
    parsed = parse(path, max_bytes=MAX)
    assert parsed.kind == "pptx"
    assert [(p.number, p.text) for p in parsed.pages] == [(1, "Intro\nsay hello"), (3, "Results")]


def test_xlsx_one_page_per_sheet(tmp_path):
    path = make_xlsx(tmp_path / "a.xlsx", {
        "Budget": [["Item", "Cost"], ["Paper", 12.0], [None, None], ["Ink", 3.5]],
        "Empty": [],
        "Notes": [["remember the milk"]],
    })
    parsed = parse(path, max_bytes=MAX)
    assert parsed.kind == "xlsx"
    assert [(p.number, p.text) for p in parsed.pages] == [
        (1, "Budget\nItem\tCost\nPaper\t12\nInk\t3.5"),
        (3, "Notes\nremember the milk"),
    ]


def test_odt_paragraphs(tmp_path):
    parsed = parse(make_odt(tmp_path / "a.odt", ["Hello <world> & co", "Second"]), max_bytes=MAX)
    assert parsed.kind == "odf"
    assert parsed.pages[0].text == "Hello <world> & co\nSecond"


def test_odf_spaces_tabs_breaks_notes_and_tables(tmp_path):
    body = (
        "<office:text>"
        "<text:h>Title</text:h>"
        '<text:p>a<text:s text:c="3"/>b<text:tab/>c<text:line-break/>'
        "<text:span>d</text:span> e<text:note><text:note-citation>1</text:note-citation>"
        "<text:note-body><text:p>the footnote</text:p></text:note-body></text:note> f</text:p>"
        "<table:table><table:table-row>"
        "<table:table-cell><text:p>x</text:p></table:table-cell>"
        "<table:table-cell><text:p>y</text:p></table:table-cell>"
        "</table:table-row></table:table>"
        "</office:text>"
    )
    parsed = parse(make_odf(tmp_path / "a.odt", body), max_bytes=MAX)
    assert parsed.pages[0].text == "Title\na   b\tc\nd e f\nthe footnote\nx\ty"


def test_ods_rows_are_tab_separated(tmp_path):
    body = (
        '<office:spreadsheet><table:table table:name="S">'
        "<table:table-row><table:table-cell><text:p>name</text:p></table:table-cell>"
        "<table:table-cell><text:p>age</text:p></table:table-cell>"
        "<table:table-cell/></table:table-row>"
        "</table:table></office:spreadsheet>"
    )
    path = make_odf(tmp_path / "a.ods", body, "application/vnd.oasis.opendocument.spreadsheet")
    assert parse(path, max_bytes=MAX).pages[0].text == "name\tage"


def test_epub_spine_order_and_page_numbers(tmp_path):
    path = make_epub(tmp_path / "a.epub", ["Call me Ishmael.", "It was the best of times."])
    parsed = parse(path, max_bytes=MAX)
    assert parsed.kind == "epub"
    assert [p.number for p in parsed.pages] == [1, 2]
    assert "Call me Ishmael." in parsed.pages[0].text
    assert "best of times" in parsed.pages[1].text
    assert "color" not in parsed.pages[0].text  # the chapter's <style>


def test_eml_headers_and_plain_body(tmp_path):
    path = make_eml(tmp_path / "a.eml", subject="Lunch?", body="Tacos at noon.",
                    html="<p>HTML version</p>")
    parsed = parse(path, max_bytes=MAX)
    assert parsed.kind == "email"
    page = parsed.pages[0].text
    assert "Subject: Lunch?" in page
    assert "From: Ada <ada@example.org>" in page
    assert "To: Bob <bob@example.org>" in page
    assert "Date: Mon, 01 Jan 2024" in page
    assert "Tacos at noon." in page
    assert "HTML version" not in page  # the plain alternative wins


def test_eml_html_only_body(tmp_path):
    path = make_eml(tmp_path / "a.eml", subject="News",
                    html="<p>Big &amp; bold</p><script>track()</script>")
    page = parse(path, max_bytes=MAX).pages[0].text
    assert "Big & bold" in page
    assert "track" not in page


def test_html_visible_text_only(tmp_path):
    path = make_html(tmp_path / "a.html",
                     "<h1>Heading</h1><p>One &amp; two&nbsp;three</p>"
                     "<noscript>enable js</noscript><template><p>later</p></template>"
                     "<ul><li>alpha</li><li>beta</li></ul>"
                     "<p>spread   over\n   lines</p>"
                     "<table><tr><td>a</td><td>b</td></tr></table>")
    parsed = parse(path, max_bytes=MAX)
    assert parsed.kind == "html"
    lines = [line for line in parsed.pages[0].text.split("\n") if line]
    assert lines == ["Test page", "Heading", "One & two three", "alpha", "beta",
                     "spread over lines", "a\tb"]


def test_html_meta_charset(tmp_path):
    path = make_html(tmp_path / "a.htm", "<p>Crème brûlée – 5€</p>", charset="windows-1252")
    assert "Crème brûlée – 5€" in parse(path, max_bytes=MAX).pages[0].text


# ---------------------------------------------------------------- text encodings


@pytest.mark.parametrize(
    ("encoding", "prefix"),
    [("utf-8", b""), ("utf-8", b"\xef\xbb\xbf"), ("cp1252", b""), ("utf-16-le", b"\xff\xfe"),
     ("utf-16-be", b"\xfe\xff")],
)
def test_text_encodings(tmp_path, encoding, prefix):
    content = ("Le cœur a ses raisons que la raison ne connaît point. Déjà vu, naïve café, "
               "résumé à la française, garçon.\r\nSecond line.")
    path = tmp_path / "a.txt"
    path.write_bytes(prefix + content.encode(encoding))
    parsed = parse(path, max_bytes=MAX)
    assert parsed.kind == "text"
    assert parsed.pages[0].number is None
    assert parsed.pages[0].text == content.replace("\r\n", "\n")


def test_utf8_cut_mid_character_stays_utf8(tmp_path):
    path = tmp_path / "app.log"
    path.write_bytes("Größe überall\nlast: €".encode()[:-1])
    assert parse(path, max_bytes=MAX).pages[0].text == "Größe überall\nlast: \ufffd"


def test_source_code_is_text(tmp_path):
    path = tmp_path / "main.py"
    path.write_text("def main():\n    return 42\n")
    assert parse(path, max_bytes=MAX).pages[0].text == "def main():\n    return 42\n"


def test_binary_junk_is_not_text(tmp_path):
    path = tmp_path / "junk.txt"
    path.write_bytes(bytes(range(256)) * 10)
    error = failure(path)
    assert (error.status, error.reason) == (FileStatus.UNSUPPORTED, "binary data, not text")


def test_zero_byte_file(tmp_path):
    for name in ("empty.txt", "empty.pdf", "empty.docx"):
        (tmp_path / name).touch()
        error = failure(tmp_path / name)
        assert (error.status, error.reason) == (FileStatus.NO_TEXT, "empty file")


def test_whitespace_only(tmp_path):
    path = tmp_path / "blank.md"
    path.write_text("  \n\t\n")
    assert failure(path).status == FileStatus.NO_TEXT


# ---------------------------------------------------------------- damaged and hostile files


def test_truncated_pdf(tmp_path):
    good = make_pdf(tmp_path / "good.pdf", ["some text"]).read_bytes()
    path = tmp_path / "truncated.pdf"
    path.write_bytes(good[:60])
    assert failure(path).status == FileStatus.CORRUPT


def test_random_bytes_named_pdf(tmp_path):
    path = tmp_path / "random.pdf"
    path.write_bytes(random.Random(0).randbytes(5000))
    error = failure(path)
    assert error.status == FileStatus.CORRUPT
    assert error.reason.startswith("this PDF could not be read")


@pytest.mark.parametrize("suffix", [".docx", ".pptx", ".xlsx", ".odt", ".epub"])
def test_random_bytes_named_as_zip_format(tmp_path, suffix):
    path = tmp_path / f"random{suffix}"
    path.write_bytes(random.Random(1).randbytes(5000))
    assert failure(path).status == FileStatus.CORRUPT


def test_garbled_files_only_ever_raise_parse_error(tmp_path):
    """Truncate and scribble over real files of every format: parse returns or raises
    ParseError, never anything else."""
    samples = [
        make_pdf(tmp_path / "s.pdf", ["alpha", "beta"]),
        make_docx(tmp_path / "s.docx", ["alpha"], table=[["a", "b"]]),
        make_pptx(tmp_path / "s.pptx", ["alpha"]),
        make_xlsx(tmp_path / "s.xlsx", {"S": [["alpha", 1]]}),
        make_odt(tmp_path / "s.odt", ["alpha"]),
        make_epub(tmp_path / "s.epub", ["alpha"]),
        make_eml(tmp_path / "s.eml", subject="alpha", body="beta"),
        make_html(tmp_path / "s.html", "<p>alpha</p>"),
    ]
    rng = random.Random(2)
    for sample in samples:
        data = sample.read_bytes()
        for i in range(12):
            garbled = bytearray(data[: rng.randrange(1, len(data))] if i % 2 else data)
            for _ in range(rng.randrange(1, 20)):
                garbled[rng.randrange(len(garbled))] = rng.randrange(256)
            path = tmp_path / f"garbled-{i}{sample.suffix}"
            path.write_bytes(bytes(garbled))
            try:
                parse(path, max_bytes=MAX)
            except ParseError as error:
                assert error.status in set(FileStatus) and error.reason


def test_encrypted_pdf(tmp_path):
    error = failure(make_encrypted_pdf(tmp_path / "locked.pdf", "top secret"))
    assert error.status == FileStatus.ENCRYPTED
    assert "password-protected" in error.reason


def test_pdf_with_empty_user_password_is_read(tmp_path):
    path = make_encrypted_pdf(tmp_path / "restricted.pdf", "open to all", user_password="")
    assert "open to all" in parse(path, max_bytes=MAX).pages[0].text


def test_password_protected_office_file(tmp_path):
    # Office saves a protected .docx as an OLE2 compound file holding an EncryptedPackage.
    path = tmp_path / "locked.docx"
    path.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(600)
                     + "EncryptedPackage".encode("utf-16-le") + bytes(600))
    error = failure(path)
    assert error.status == FileStatus.ENCRYPTED
    assert error.reason.startswith("this Word document is password-protected")


def test_password_protected_opendocument(tmp_path):
    path = make_odf(tmp_path / "locked.odt", "<office:text/>",
                    manifest_extra="<manifest:encryption-data/>")
    assert failure(path).status == FileStatus.ENCRYPTED


@pytest.mark.parametrize("suffix", [".docx", ".odt", ".epub"])
def test_zip_bomb_is_refused(tmp_path, suffix):
    path = tmp_path / f"bomb{suffix}"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("content.xml", bytes(3 * 1024**2))  # 3 MB of zeros, a few KB packed
    max_bytes = 100_000
    assert path.stat().st_size < max_bytes
    error = failure(path, max_bytes=max_bytes)
    assert error.status == FileStatus.CORRUPT
    assert "expands to more than 1.9 MB" in error.reason


def test_too_large(tmp_path):
    path = tmp_path / "big.txt"
    path.write_text("x" * 2048)
    error = failure(path, max_bytes=1024)
    assert error.status == FileStatus.TOO_LARGE
    assert error.reason == "2 KB is over the 1 KB limit set in settings"


def test_human_size():
    assert human_size(512) == "512 bytes"
    assert human_size(100 * 1024**2) == "100 MB"
    assert human_size(int(12.3 * 1024**3)) == "12.3 GB"


def test_unsupported_suffix(tmp_path):
    path = tmp_path / "tool.exe"
    path.write_bytes(b"MZ")
    error = failure(path)
    assert (error.status, error.reason) == (FileStatus.UNSUPPORTED, "Sift cannot read .exe files")


def test_vanished(tmp_path):
    assert failure(tmp_path / "gone.txt").status == FileStatus.VANISHED


def test_directory_with_a_document_suffix(tmp_path):
    (tmp_path / "folder.pdf").mkdir()
    assert failure(tmp_path / "folder.pdf").status == FileStatus.UNSUPPORTED


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="needs POSIX permissions, and root reads anything")
def test_unreadable_by_permissions(tmp_path):
    path = tmp_path / "private.txt"
    path.write_text("secret")
    path.chmod(0)
    try:
        assert failure(path).status == FileStatus.UNREADABLE
    finally:
        path.chmod(0o600)


@pytest.mark.parametrize(
    "exc",
    [PermissionError(errno.EACCES, "Permission denied"), OSError(errno.EIO, "Input/output error")],
)
@pytest.mark.parametrize("suffix", [".txt", ".pdf", ".eml"])
def test_unreadable_when_the_os_refuses(tmp_path, monkeypatch, exc, suffix):
    path = tmp_path / f"file{suffix}"
    path.write_text("hello")
    real_open = os.open

    def refusing_open(file, *args, **kwargs):  # every read of a file starts with this os.open
        if os.fspath(file) == str(path):
            raise exc
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(os, "open", refusing_open)
    assert failure(path).status == FileStatus.UNREADABLE


def test_library_exceptions_become_corrupt(tmp_path, monkeypatch):
    path = tmp_path / "a.txt"
    path.write_text("hello")

    def explode(data):
        raise ValueError("boom")

    monkeypatch.setattr(text_module, "decode", explode)
    error = failure(path)
    assert error.status == FileStatus.CORRUPT
    assert error.reason == "this text file could not be read: boom"


def test_memory_error_is_corrupt_and_keeps_its_cause(tmp_path, monkeypatch):
    path = tmp_path / "a.txt"
    path.write_text("hello")

    def exhaust(data):
        raise MemoryError

    monkeypatch.setattr(text_module, "decode", exhaust)
    error = failure(path)
    assert error.status == FileStatus.CORRUPT
    assert isinstance(error.__cause__, MemoryError)  # the parse runner relies on this


def test_pdf_is_read_by_pdfium_first_and_by_pypdf_when_pdfium_cannot(tmp_path, monkeypatch):
    """PDFium reads the pages (pypdf is not asked); where PDFium fails to open a file, or finds
    no text in it, pypdf reads it; a PDFium-opened file pypdf cannot read is a file without text."""
    from engine.parse import pdf

    path = make_pdf(tmp_path / "two.pdf", ["Descaling the espresso machine", "Road bike tyre pressure"])

    def refuse(_f):
        raise RuntimeError("this reader must not be used here")

    monkeypatch.setattr(pdf, "_read_pypdf", refuse)
    by_pdfium = parse(path, max_bytes=MAX).pages
    assert [(p.number, p.text.strip()) for p in by_pdfium] == [
        (1, "Descaling the espresso machine"), (2, "Road bike tyre pressure")]

    monkeypatch.undo()
    monkeypatch.setattr(pdf, "_read_pdfium", refuse)
    by_pypdf = parse(path, max_bytes=MAX).pages
    assert [(p.number, p.text.strip()) for p in by_pypdf] == [(p.number, p.text.strip()) for p in by_pdfium]

    monkeypatch.undo()
    blank = make_pdf(tmp_path / "blank.pdf", [""])
    monkeypatch.setattr(pdf, "_read_pypdf", refuse)
    assert failure(blank).status == FileStatus.NO_TEXT


def test_pdfium_text_is_cleaned_of_its_line_end_hyphen_marks():
    from engine.parse.pdf import _clean

    assert _clean("the results were ac\ufffe\r\ncessed by all\r\nreaders") == \
        "the results were accessed by all\nreaders"
    assert _clean("a \ufffe b") == "a - b"
