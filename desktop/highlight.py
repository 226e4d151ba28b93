"""Matched words as HTML: the engine's highlight spans, or (for longer context) the query's words found again."""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Sequence

from engine import STOPWORDS

Span = tuple[int, int]

_FILTER = re.compile(r'(?<!\S)-?(type|in|after|before):("[^"]*"|\S+)', re.IGNORECASE)
_EXCLUDED = re.compile(r'(?<!\S)-("[^"]*"|\S+)')
_WORD = re.compile(r"\w+", re.UNICODE)
# The engine's own list (NLTK's English stop words): a word the search ignores is never marked.
_STOPWORDS = STOPWORDS


def query_words(query: str) -> list[str]:
    """The words of a query a person would expect to see marked: filters, exclusions and stopwords left out."""
    text = _EXCLUDED.sub(" ", _FILTER.sub(" ", query))
    return [w for w in dict.fromkeys(w.lower() for w in _WORD.findall(text)) if w not in _STOPWORDS and len(w) > 1]


def term_spans(text: str, query: str) -> list[Span]:
    """Where the query's words (as prefixes, so 'descale' marks 'descaling') occur in `text`."""
    stems = sorted({w[: max(4, len(w) - 3)] if len(w) > 5 else w for w in query_words(query)}, key=len, reverse=True)
    phrases = [p for p in re.findall(r'"([^"]+)"', _FILTER.sub(" ", query)) if p.strip()]
    alternatives = [re.escape(p) for p in phrases] + [r"\b" + re.escape(s) + r"\w*" for s in stems]
    if not alternatives:
        return []
    return [m.span() for m in re.finditer("|".join(alternatives), text, re.IGNORECASE)]


def merge(spans: Iterable[Span]) -> list[Span]:
    out: list[Span] = []
    for s, e in sorted(spans):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        elif e > s:
            out.append((s, e))
    return out


def to_html(text: str, spans: Sequence[Span], *, background: str, color: str, bold: bool = False,
            focus: Span | None = None, focus_style: str = "") -> str:
    """`text` escaped for Qt's rich text with each span marked, and `focus` (the passage) optionally styled."""
    spans = merge(spans)
    if focus is not None and focus_style:  # split marks at the focus edges so tags nest properly
        spans = [piece for s, e in spans for piece in _split(s, e, focus)]
    weight = "font-weight:600;" if bold else ""
    # At one offset: close a mark, close the focus, open the focus, open a mark.
    marks: list[tuple[int, int, str]] = []
    for s, e in spans:
        s, e = max(0, s), min(len(text), e)
        if e > s:
            marks.append((s, 3, f'<span style="background-color:{background};color:{color};{weight}">'))
            marks.append((e, 0, "</span>"))
    if focus is not None and focus_style:
        marks.append((focus[0], 2, f'<span style="{focus_style}">'))
        marks.append((focus[1], 1, "</span>"))
    marks.sort(key=lambda m: (m[0], m[1]))
    out, pos = [], 0
    for offset, _, tag in marks:
        out.append(html.escape(text[pos:offset], quote=False))
        out.append(tag)
        pos = offset
    out.append(html.escape(text[pos:], quote=False))
    return "".join(out).replace("\n", "<br>")


def _split(s: int, e: int, focus: Span) -> list[Span]:
    cuts = sorted({s, e, *(c for c in focus if s < c < e)})
    return list(zip(cuts, cuts[1:]))
