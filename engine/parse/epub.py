"""EPUB e-books: the spine's documents in reading order, one page per document."""

from __future__ import annotations

import posixpath
import zipfile
from typing import BinaryIO
from urllib.parse import unquote, urlsplit
from xml.etree import ElementTree

from engine.errors import ParseError
from engine.parse.htmltext import decode_html, html_to_text
from engine.types import FileStatus, Page

_CONTAINER = "{urn:oasis:names:tc:opendocument:xmlns:container}"
_OPF = "{http://www.idpf.org/2007/opf}"
_XMLENC = "{http://www.w3.org/2001/04/xmlenc#}"
_DOCUMENT_TYPES = frozenset({"application/xhtml+xml", "text/html"})


def read(f: BinaryIO) -> tuple[Page, ...]:
    with zipfile.ZipFile(f) as zf:
        opf_path = _package_path(zf)
        spine = _spine(zf, opf_path)
        if spine and _encrypted(zf) & set(spine):
            raise ParseError(
                FileStatus.ENCRYPTED, "this EPUB e-book is DRM-protected; Sift cannot read it"
            )
        members = set(zf.namelist())
        return tuple(
            Page(number, html_to_text(decode_html(zf.read(name))))
            for number, name in enumerate(spine, start=1)
            if name in members  # a broken link in the spine loses one chapter, not the book
        )


def _package_path(zf: zipfile.ZipFile) -> str:
    root = ElementTree.fromstring(zf.read("META-INF/container.xml"))
    rootfile = root.find(f"{_CONTAINER}rootfiles/{_CONTAINER}rootfile")
    path = rootfile.get("full-path") if rootfile is not None else None
    if not path:
        raise ValueError("META-INF/container.xml names no package document")
    return path


def _spine(zf: zipfile.ZipFile, opf_path: str) -> list[str]:
    """Member names of the spine's documents, in reading order."""
    package = ElementTree.fromstring(zf.read(opf_path))
    base = posixpath.dirname(opf_path)
    manifest = {
        item.get("id"): item
        for item in package.iterfind(f"{_OPF}manifest/{_OPF}item")
    }
    names = []
    for itemref in package.iterfind(f"{_OPF}spine/{_OPF}itemref"):
        item = manifest.get(itemref.get("idref"))
        href = item.get("href") if item is not None else None
        if item is None or item.get("media-type") not in _DOCUMENT_TYPES or not href:
            continue
        names.append(_resolve(base, href))
    return names


def _encrypted(zf: zipfile.ZipFile) -> set[str]:
    """Members listed in META-INF/encryption.xml (fonts are often obfuscated this way too)."""
    try:
        root = ElementTree.fromstring(zf.read("META-INF/encryption.xml"))
    except KeyError:
        return set()
    return {
        _resolve("", ref.get("URI", ""))
        for ref in root.iter(f"{_XMLENC}CipherReference")
    }


def _resolve(base: str, href: str) -> str:
    return posixpath.normpath(posixpath.join(base, unquote(urlsplit(href).path)))
