"""Write small real documents of every supported format for tests, plus a hostile test parser."""

from __future__ import annotations

import os
import signal
import threading
import time
import zipfile
from email.message import EmailMessage
from pathlib import Path


def make_pdf(path: Path, pages: list[str]) -> Path:
    """A real PDF, one page per string, each line of a string on its own line of the page.

    Written by hand (Helvetica, one content stream per page) so tests depend on nothing but
    the PDF format itself. Text must be Latin-1.
    """
    n = len(pages)
    # Objects: 1 catalog, 2 page tree, 3 font, then each page followed by its content stream.
    page_ids = [4 + 2 * i for i in range(n)]
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [%s] /Count %d >>"
        % (b" ".join(b"%d 0 R" % i for i in page_ids), n),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    ]
    for page_id, page_text in zip(page_ids, pages):
        lines = [b"BT", b"/F1 12 Tf", b"72 720 Td", b"14 TL"]
        for line in page_text.split("\n"):
            escaped = line.encode("latin-1").replace(b"\\", b"\\\\")
            escaped = escaped.replace(b"(", b"\\(").replace(b")", b"\\)")
            lines.append(b"(%s) Tj T*" % escaped)
        lines.append(b"ET")
        stream = b"\n".join(lines)
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            b"/Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>" % (page_id + 1)
        )
        objects.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream))

    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref_at = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref_at,
    )
    Path(path).write_bytes(bytes(out))
    return Path(path)


def make_encrypted_pdf(path: Path, text: str, user_password: str = "secret") -> Path:
    """A one-page AES-encrypted PDF; user_password="" makes one that opens without asking."""
    from pypdf import PdfReader, PdfWriter

    make_pdf(path, [text])
    writer = PdfWriter(clone_from=PdfReader(path))  # reads the whole file before we overwrite it
    writer.encrypt(user_password=user_password, owner_password="owner", algorithm="AES-128")
    with open(path, "wb") as f:
        writer.write(f)
    return Path(path)


def make_docx(path: Path, paragraphs: list[str], table: list[list[str]] | None = None) -> Path:
    """A Word document: the paragraphs, then the table if given."""
    import docx

    document = docx.Document()
    for paragraph in paragraphs:
        document.add_paragraph(paragraph)
    if table:
        grid = document.add_table(rows=len(table), cols=len(table[0]))
        for row, values in zip(grid.rows, table):
            for cell, value in zip(row.cells, values):
                cell.text = value
    document.save(str(path))
    return Path(path)


def make_pptx(path: Path, slides: list[str], notes: list[str] | None = None) -> Path:
    """A presentation, one slide per string (as the title), with optional speaker notes."""
    import pptx

    presentation = pptx.Presentation()
    for i, title in enumerate(slides):
        slide = presentation.slides.add_slide(presentation.slide_layouts[5])  # title only
        slide.shapes.title.text = title
        if notes and i < len(notes):
            slide.notes_slide.notes_text_frame.text = notes[i]
    presentation.save(str(path))
    return Path(path)


def make_xlsx(path: Path, sheets: dict[str, list[list]]) -> Path:
    """A workbook with one sheet per entry, rows as given."""
    import openpyxl

    workbook = openpyxl.Workbook()
    workbook.remove(workbook.active)
    for name, rows in sheets.items():
        sheet = workbook.create_sheet(name)
        for row in rows:
            sheet.append(row)
    workbook.save(str(path))
    return Path(path)


def make_odf(path: Path, body_xml: str, mimetype: str = "application/vnd.oasis.opendocument.text",
             manifest_extra: str = "") -> Path:
    """An OpenDocument file whose office:body holds `body_xml` (text:, table:, draw: allowed)."""
    content = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<office:document-content'
        ' xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0"'
        ' xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0"'
        ' xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0"'
        ' xmlns:draw="urn:oasis:names:tc:opendocument:xmlns:drawing:1.0"'
        ' office:version="1.2">'
        f"<office:body>{body_xml}</office:body></office:document-content>"
    )
    manifest = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<manifest:manifest xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0">'
        f'<manifest:file-entry manifest:full-path="/" manifest:media-type="{mimetype}"/>'
        '<manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml">'
        f"{manifest_extra}</manifest:file-entry></manifest:manifest>"
    )
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("mimetype", mimetype, compress_type=zipfile.ZIP_STORED)
        zf.writestr("META-INF/manifest.xml", manifest, compress_type=zipfile.ZIP_DEFLATED)
        zf.writestr("content.xml", content, compress_type=zipfile.ZIP_DEFLATED)
    return Path(path)


def make_odt(path: Path, paragraphs: list[str]) -> Path:
    """A text document, one text:p per string (XML-escaped)."""
    from xml.sax.saxutils import escape

    body = "".join(f"<text:p>{escape(p)}</text:p>" for p in paragraphs)
    return make_odf(path, f"<office:text>{body}</office:text>")


def make_epub(path: Path, chapters: list[str]) -> Path:
    """An EPUB 3 book, one XHTML document per chapter; the manifest lists them in reverse so
    only the spine gives the reading order."""
    from xml.sax.saxutils import escape

    ids = [f"ch{i}" for i in range(1, len(chapters) + 1)]
    manifest = "".join(
        f'<item id="{i}" href="text/{i}.xhtml" media-type="application/xhtml+xml"/>'
        for i in reversed(ids)
    )
    spine = "".join(f'<itemref idref="{i}"/>' for i in ids)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("mimetype", "application/epub+zip", compress_type=zipfile.ZIP_STORED)
        zf.writestr(
            "META-INF/container.xml",
            '<?xml version="1.0"?>'
            '<container version="1.0" xmlns="urn:oasis:names:tc:opendocument:xmlns:container">'
            '<rootfiles><rootfile full-path="OEBPS/content.opf"'
            ' media-type="application/oebps-package+xml"/></rootfiles></container>',
        )
        zf.writestr(
            "OEBPS/content.opf",
            '<?xml version="1.0"?>'
            '<package xmlns="http://www.idpf.org/2007/opf" version="3.0" unique-identifier="id">'
            '<metadata xmlns:dc="http://purl.org/dc/elements/1.1/">'
            '<dc:identifier id="id">test</dc:identifier><dc:title>Test</dc:title></metadata>'
            f"<manifest>{manifest}</manifest><spine>{spine}</spine></package>",
        )
        for i, chapter in zip(ids, chapters):
            zf.writestr(
                f"OEBPS/text/{i}.xhtml",
                '<?xml version="1.0" encoding="utf-8"?>'
                '<html xmlns="http://www.w3.org/1999/xhtml"><head><title>Book</title>'
                "<style>p { color: red }</style></head>"
                f"<body><p>{escape(chapter)}</p></body></html>",
            )
    return Path(path)


def make_eml(path: Path, *, subject: str, body: str | None = None, html: str | None = None,
             sender: str = "Ada <ada@example.org>", to: str = "Bob <bob@example.org>") -> Path:
    """An email with a plain body, an HTML body, or both (as multipart/alternative)."""
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = sender
    message["To"] = to
    message["Date"] = "Mon, 01 Jan 2024 09:00:00 +0000"
    if body is not None:
        message.set_content(body)
        if html is not None:
            message.add_alternative(html, subtype="html")
    elif html is not None:
        message.set_content(html, subtype="html")
    Path(path).write_bytes(message.as_bytes())
    return Path(path)


def make_html(path: Path, body: str, *, title: str = "Test page", charset: str = "utf-8") -> Path:
    """An HTML page around `body` with a script and a style that must not be read as text."""
    page = (
        f'<!DOCTYPE html><html><head><meta charset="{charset}"><title>{title}</title>'
        "<style>body { font-family: sans-serif }</style>"
        "<script>var hidden = 'SCRIPT TEXT';</script></head>"
        f"<body>{body}<script>document.write('MORE SCRIPT')</script></body></html>"
    )
    Path(path).write_bytes(page.encode(charset))
    return Path(path)


def hostile_parse(job, *, max_bytes: int, **limits):
    """A parse function for runner tests: hangs on *.hang (blocked), spins on *.spin (busy), dies
    on *.crash, exhausts memory on *.oom, takes S seconds of processor time on burn-S.txt before
    parsing it, and parses anything else normally. Spawned workers import it by name."""
    path = getattr(job, "path", job)
    if path.endswith(".hang"):
        threading.Event().wait()
    if path.endswith(".spin"):
        while True:
            pass
    if os.path.basename(path).startswith("burn-"):
        seconds, start = float(os.path.basename(path)[5:-4]), time.process_time()
        while time.process_time() - start < seconds:
            pass
    if path.endswith(".crash"):
        # SIGKILL rather than os.abort(): same sudden death, but no core file left behind.
        os.kill(os.getpid(), signal.SIGKILL)
    if path.endswith(".oom"):
        bytearray(64 * 1024**3)
    from engine.parse import parse

    return parse(job, max_bytes=max_bytes, **limits)
