"""Split pages of text into token-bounded, overlapping windows that keep page and character offsets."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence

from engine.types import Chunk, Page

# Offsets of each token in a text, as (start, end) character pairs, from the model's tokenizer.
TokenOffsets = Callable[[str], Sequence[tuple[int, int]]]

# Tokenize long pages in blocks of about this many characters, cut at paragraph breaks, so one
# huge text file never becomes one giant tokenizer call.
BLOCK_CHARS = 20_000

_PARAGRAPH = re.compile(r"\n\s*\n")
_SENTENCE_END = re.compile(r"[.!?…:;]['\")\]]*\s+|\n")


def _blocks(text: str) -> Iterable[tuple[int, int]]:
    """(start, end) spans of at most ~BLOCK_CHARS, ending at paragraph breaks where possible."""
    start, n = 0, len(text)
    while start < n:
        end = min(start + BLOCK_CHARS, n)
        if end < n:
            cut = max((m.end() for m in _PARAGRAPH.finditer(text, start + BLOCK_CHARS // 2, end)), default=-1)
            if cut == -1:
                cut = text.rfind(" ", start + BLOCK_CHARS // 2, end) + 1
            end = cut if cut > start else end
        yield start, end
        start = end


def _boundary_strength(text: str, prev_end: int, next_start: int) -> int:
    """How good a place to cut the gap between two tokens is: 2 paragraph, 1 sentence, 0 none."""
    gap = text[max(prev_end - 3, 0):next_start + 1]
    if "\n\n" in text[prev_end:next_start] or _PARAGRAPH.search(text[prev_end:next_start]):
        return 2
    if _SENTENCE_END.search(gap):
        return 1
    return 0


def chunk_pages(pages: Sequence[Page], *, token_offsets: TokenOffsets, max_tokens: int,
                overlap: int) -> list[Chunk]:
    """Windows of at most `max_tokens` tokens, overlapping by about `overlap` tokens.

    A window ends at a paragraph break, else at a sentence end, if one lies in its last half;
    otherwise it is cut between tokens. Windows never cross pages, so every chunk has one page.
    """
    return list(iter_chunks(pages, token_offsets=token_offsets, max_tokens=max_tokens, overlap=overlap))


def iter_chunks(pages: Sequence[Page], *, token_offsets: TokenOffsets, max_tokens: int,
                overlap: int) -> Iterator[Chunk]:
    """chunk_pages one chunk at a time, tokenizing a block only when it is reached: a caller
    that stops early (a cap on passages per file) never tokenizes the rest of a huge text."""
    if max_tokens < 2 or not 0 <= overlap < max_tokens // 2:
        raise ValueError("need max_tokens ≥ 2 and 0 ≤ overlap < max_tokens / 2")
    ordinal = 0
    for page in pages:
        for block_start, block_end in _blocks(page.text):
            block = page.text[block_start:block_end]
            offsets = [(s, e) for s, e in token_offsets(block) if e > s]
            for s, e in _windows(block, offsets, max_tokens, overlap):
                start, end = offsets[s][0], offsets[e - 1][1]
                yield Chunk(ordinal=ordinal, text=block[start:end], page=page.number,
                            start=block_start + start, end=block_start + end, token_count=e - s)
                ordinal += 1


def _windows(text: str, offsets: Sequence[tuple[int, int]], max_tokens: int,
             overlap: int) -> Iterable[tuple[int, int]]:
    """Token index ranges [s, e) of the windows over one block."""
    n = len(offsets)
    if n <= max_tokens:  # one window (most notes, mails and abstracts): no cut to look for
        if n:
            yield 0, n
        return
    known: dict[int, int] = {n: 3}

    def strength(i: int) -> int:
        """How good a cut before token i is; only the tokens near a cut are ever asked."""
        if i not in known:
            known[i] = _boundary_strength(text, offsets[i - 1][1], offsets[i][0]) if i > 0 else 0
        return known[i]

    s = 0
    while s < n:
        e = min(s + max_tokens, n)
        if e < n:
            lo = s + max_tokens // 2
            best = max(range(lo, e + 1), key=lambda i: (strength(i), i))
            if strength(best) > 0:
                e = best
        yield s, e
        if e >= n:
            return
        # Start the next window about `overlap` tokens back, at the sentence start nearest that
        # point if one is within reach, so a passage never begins mid-sentence when avoidable.
        target = e - overlap
        lo = max(e - 2 * overlap, s + 1)
        starts = [i for i in range(lo, e) if strength(i) > 0]
        s = min(starts, key=lambda i: (abs(i - target), -i)) if starts else max(target, s + 1)
