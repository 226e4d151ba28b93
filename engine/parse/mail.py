"""Email .eml: the main headers, then the plain-text body, or the HTML body as text."""

from __future__ import annotations

import email
from email import policy
from email.message import MIMEPart
from typing import BinaryIO

from engine.parse import text
from engine.parse.htmltext import decode_html, html_to_text
from engine.types import Page

_HEADERS = ("Subject", "From", "To", "Cc", "Date")


def read(f: BinaryIO) -> tuple[Page, ...]:
    message = email.message_from_binary_file(f, policy=policy.default)
    lines = [f"{name}: {message[name]}" for name in _HEADERS if message[name]]
    body = message.get_body(preferencelist=("plain", "html"))
    if body is not None:
        lines += ["", _body_text(body)]
    return (Page(None, "\n".join(lines)),)


def _body_text(part: MIMEPart) -> str:
    payload = part.get_payload(decode=True)  # bytes, or None for a multipart part
    raw = payload if isinstance(payload, bytes) else b""
    charset = part.get_content_charset()
    try:
        content = raw.decode(charset, errors="replace") if charset else None
    except LookupError:  # a charset Python does not know: detect it instead
        content = None
    if part.get_content_subtype() == "html":
        return html_to_text(content if content is not None else decode_html(raw))
    return text.normalize_newlines(content if content is not None else text.decode(raw))
