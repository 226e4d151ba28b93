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
    """Bytes of a text file as str: BOM, UTF-16 without one, UTF-8 (a few bad bytes allowed), then
    charset_normalizer's best guess."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return data[len(bom):].decode(encoding, errors="replace")
    if b"\x00" in data[:_SNIFF_BYTES]:
        if (text := _utf16_without_bom(data)) is not None:
            return text
        raise ParseError(FileStatus.UNSUPPORTED, "binary data, not text")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start >= len(data) - 3:  # UTF-8 cut mid-character, as in a log being written
            return data.decode("utf-8", errors="replace")
    text = data.decode("utf-8", errors="replace")
    bad = text.count("\ufffd") - data.count("\ufffd".encode())
    if sum(1 for ch in text if ord(ch) > 127) - text.count("\ufffd") > bad:
        # Mostly valid UTF-8 with a few stray bytes: a replacement mark for each beats reading
        # every accented letter of the file in a legacy code page.
        return text
    matches = charset_normalizer.from_bytes(data)
    best = matches.best()
    if best is None:
        raise ParseError(FileStatus.UNSUPPORTED, "binary data, not text")
    if not _ascii_compatible(best.encoding) and _mostly_ascii(data):
        return data.decode("cp1252", errors="replace")  # never EBCDIC or UTF-16 for a mostly-ASCII file
    # Western European text often scores a tie between cp1250 and cp1252; the tie goes to
    # cp1252, by far the commonest legacy encoding of desktop files.
    score = (best.chaos, best.coherence)
    for match in matches:
        if match.encoding == "cp1252" and (match.chaos, match.coherence) == score:
            return str(match)
    return str(best)


def _utf16_without_bom(data: bytes) -> str | None:
    """UTF-16 text with no BOM (Windows tools write it): mostly ASCII-range characters put a zero
    in every other byte, the odd ones in little-endian, the even ones in big-endian."""
    sample = data[:_SNIFF_BYTES]
    if len(sample) < 4:
        return None
    even, odd = sample[0::2], sample[1::2]
    zeros_even, zeros_odd = even.count(0) / len(even), odd.count(0) / len(odd)
    if zeros_odd > 0.4 and zeros_even < 0.05:
        encoding = "utf-16-le"
    elif zeros_even > 0.4 and zeros_odd < 0.05:
        encoding = "utf-16-be"
    else:
        return None
    text = data[: len(data) // 2 * 2].decode(encoding, errors="replace")
    readable = sum(1 for ch in text if ch.isprintable() or ch in "\n\r\t")
    return text if readable >= 0.95 * len(text) else None


_PROBE = "Sift reads text: 0-9, a-z.\n"


def _ascii_compatible(encoding: str) -> bool:
    try:
        return _PROBE.encode(encoding) == _PROBE.encode("ascii")
    except (LookupError, UnicodeError):
        return False


def _mostly_ascii(data: bytes) -> bool:
    sample = data[:_SNIFF_BYTES]
    return sum(1 for b in sample if b < 0x80) >= 0.9 * len(sample)


def normalize_newlines(s: str) -> str:
    return s.replace("\r\n", "\n").replace("\r", "\n")


def read(f: BinaryIO) -> tuple[Page, ...]:
    return (Page(None, normalize_newlines(decode(f.read()))),)
