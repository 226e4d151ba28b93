"""Checks made before a parser library opens a file: zip bombs, password-protected Office files."""

from __future__ import annotations

import zipfile
from typing import BinaryIO

from engine.errors import ParseError
from engine.types import FileStatus, human_size

ZIP_EXPANSION_FACTOR = 20              # a zip may expand to 20× the size cap…
ZIP_EXPANSION_CEILING = 500 * 1024**2  # …but never past 500 MB

# Password-protected OOXML files are not zips but OLE2 compound files holding this stream.
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_ENCRYPTED_PACKAGE = "EncryptedPackage".encode("utf-16-le")



def check_zip(f: BinaryIO, *, label: str, max_bytes: int) -> None:
    """Refuse a zip container that is not a zip, is encrypted, or would expand too far.

    zipfile never yields more than a member's declared size, so summing the declared
    sizes bounds what any parser library can decompress from this file.
    """
    limit = min(ZIP_EXPANSION_FACTOR * max_bytes, ZIP_EXPANSION_CEILING)
    try:
        with zipfile.ZipFile(f) as zf:
            total = sum(info.file_size for info in zf.infolist())
    except zipfile.BadZipFile:
        if _is_encrypted_office_file(f):
            raise ParseError(
                FileStatus.ENCRYPTED,
                f"this {label} is password-protected; Sift cannot read it without the password",
            ) from None
        raise
    finally:
        f.seek(0)  # the parser reads the same descriptor next
    if total > limit:
        raise ParseError(
            FileStatus.CORRUPT,
            f"this {label} expands to more than {human_size(limit)}; it may be a zip bomb",
        )


def _is_encrypted_office_file(f: BinaryIO) -> bool:
    f.seek(0)
    if f.read(len(_OLE_MAGIC)) != _OLE_MAGIC:
        return False
    # The stream name sits in a directory sector that can be anywhere; the caller has
    # already capped the file size, so a chunked scan stays bounded.
    overlap = len(_ENCRYPTED_PACKAGE)
    tail = b""
    while chunk := f.read(1024 * 1024):
        if _ENCRYPTED_PACKAGE in tail + chunk:
            return True
        tail = chunk[-overlap:]
    return False
