"""PDF: one page of text per PDF page; a bad page loses its text, not the file.

PDFium (pypdfium2) reads first: on the 350 real PDFs of ../shared/data/pdfs it extracted 15×
pypdf's pages a second and text from more files (bench/pdf_extractors.py). pypdf reads what
PDFium cannot open (it opens AES revision 5/6 files with the empty password, and its messages
say which kind of damage or protection it met: the statuses come from it) and files in which
PDFium finds no text at all, so a file is called a scan only when both agree.
"""

from __future__ import annotations

import errno
import logging
import re
import traceback
from typing import BinaryIO

from engine.errors import ParseError
from engine.types import FileStatus, Page

# pypdf logs a warning for every quirk of a malformed file; the status says what matters.
logging.getLogger("pypdf").setLevel(logging.ERROR)

# PDFium marks a hyphen it took for a line-end break with U+FFFE: the word is joined again.
_BROKEN_WORD = re.compile(r"(\w)\ufffe[ \t]*\r?\n[ \t]*(\w)")


def read(f: BinaryIO) -> tuple[Page, ...]:
    start = f.tell()
    try:
        pages = _read_pdfium(f)
    except MemoryError:  # over the worker's memory cap: a second reader would only hit it again
        raise
    except Exception:  # noqa: BLE001 - anything PDFium cannot open, pypdf tries and names
        pages = None
    if pages is not None and any(p.text.strip() for p in pages):
        return pages
    f.seek(start)
    try:
        return _read_pypdf(f)
    except MemoryError:
        raise
    except Exception:
        if pages is None:
            raise
        return pages  # PDFium opened it and found no text; pypdf cannot read it: a file without text


def _read_pdfium(f: BinaryIO) -> tuple[Page, ...]:
    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument(f)  # reads through f: the descriptor the worker opened
    try:
        pages = []
        for number in range(1, len(pdf) + 1):
            try:
                page = pdf[number - 1]
                try:
                    textpage = page.get_textpage()
                    text = textpage.get_text_range()
                    textpage.close()
                finally:
                    page.close()
            except pdfium.PdfiumError:  # one damaged page must not cost the other pages
                text = ""
            pages.append(Page(number, _clean(text)))
        return tuple(pages)
    finally:
        pdf.close()


def _clean(text: str) -> str:
    text = _BROKEN_WORD.sub(r"\1\2", text).replace("\ufffe", "-")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _read_pypdf(f: BinaryIO) -> tuple[Page, ...]:
    from pypdf import PasswordType, PdfReader  # only for what PDFium cannot read: a worker seldom loads it

    try:
        reader = PdfReader(f)
    except NotImplementedError as exc:
        # Raised while setting up decryption, it means a security handler pypdf lacks
        # (certificates, for one): the file is protected, not damaged.
        if any(f.name == "_handle_encryption" for f in traceback.extract_tb(exc.__traceback__)):
            raise ParseError(
                FileStatus.ENCRYPTED, "this PDF uses a kind of protection Sift cannot open"
            ) from exc
        raise
    except OSError as exc:
        # pypdf seeks to the offsets the file states; read from a real descriptor (not bytes in
        # memory), one before the start of the file is EINVAL: the file is damaged, the disk is fine.
        if exc.errno != errno.EINVAL:
            raise
        raise ParseError(FileStatus.CORRUPT, "this PDF could not be read: it points outside itself "
                         "(a damaged cross-reference table)") from None
    # Many protected PDFs only restrict printing or copying and open with an empty password.
    if reader.is_encrypted and reader.decrypt("") == PasswordType.NOT_DECRYPTED:
        raise ParseError(
            FileStatus.ENCRYPTED,
            "this PDF is password-protected; Sift cannot read it without the password",
        )
    pages = []
    failure: Exception | None = None
    for number, page in enumerate(reader.pages, start=1):
        try:
            page_text = page.extract_text()
        except MemoryError:
            raise
        except Exception as exc:  # one damaged page must not cost the other pages
            failure = failure or exc
            continue
        pages.append(Page(number, page_text))
    if failure is not None and not any(p.text.strip() for p in pages):
        raise failure
    return tuple(pages)
