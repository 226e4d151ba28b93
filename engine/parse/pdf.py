"""PDF via pypdf: one page of text per PDF page; a bad page loses its text, not the file."""

from __future__ import annotations

import errno
import logging
import traceback
from typing import BinaryIO

from pypdf import PasswordType, PdfReader

from engine.errors import ParseError
from engine.types import FileStatus, Page

# pypdf logs a warning for every quirk of a malformed file; the status says what matters.
logging.getLogger("pypdf").setLevel(logging.ERROR)


def read(f: BinaryIO) -> tuple[Page, ...]:
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
