"""Plain text and source code: detect the encoding, return the whole file as one page."""

from __future__ import annotations

import codecs
from typing import BinaryIO

import charset_normalizer

from engine.errors import ParseError
from engine.types import FileStatus, Page

SUFFIXES = frozenset(
    # prose, data and configuration
    ".txt .text .md .markdown .rst .org .adoc .csv .tsv .log .json .jsonl .yaml .yml .toml "
    ".ini .cfg .conf .properties .xml .tex .bib .srt .vtt "
    # source code
    ".py .pyi .ipynb .js .mjs .cjs .ts .tsx .jsx .java .c .h .cpp .hpp .cc .hh .cxx .cs .go "
    ".rs .rb .php .swift .kt .kts .scala .sh .bash .zsh .fish .ps1 .bat .sql .r .m .lua .pl "
    ".pm .css .scss .sass .less .vue .svelte .dart .ex .exs .erl .hs .ml .clj .jl .groovy "
    ".gradle .cmake .mk .proto .graphql .tf".split()
)

# Checked longest first: the UTF-32-LE BOM starts with the UTF-16-LE one.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_SNIFF_BYTES = 8192


def decode(data: bytes) -> str:
    """Bytes of a text file as str: BOM, then UTF-8, then charset_normalizer's best guess."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return data[len(bom):].decode(encoding, errors="replace")
    if b"\x00" in data[:_SNIFF_BYTES]:
        raise ParseError(FileStatus.UNSUPPORTED, "binary data, not text")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start >= len(data) - 3:  # UTF-8 cut mid-character, as in a log being written
            return data.decode("utf-8", errors="replace")
    matches = charset_normalizer.from_bytes(data)
    best = matches.best()
    if best is None:
        raise ParseError(FileStatus.UNSUPPORTED, "binary data, not text")
    # Western European text often scores a tie between cp1250 and cp1252; the tie goes to
    # cp1252, by far the commonest legacy encoding of desktop files.
    score = (best.chaos, best.coherence)
    for match in matches:
        if match.encoding == "cp1252" and (match.chaos, match.coherence) == score:
            return str(match)
    return str(best)


def normalize_newlines(s: str) -> str:
    return s.replace("\r\n", "\n").replace("\r", "\n")


def read(f: BinaryIO) -> tuple[Page, ...]:
    return (Page(None, normalize_newlines(decode(f.read()))),)
