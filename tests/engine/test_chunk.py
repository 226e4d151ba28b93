"""The chunker: token bounds, overlap, boundaries, pages and offsets."""

from __future__ import annotations

import pytest

from engine.chunk import BLOCK_CHARS, chunk_pages
from engine.embed import FakeEmbedder
from engine.types import Page

tok = FakeEmbedder().token_offsets


def sentences(n: int, words: int = 9) -> str:
    return " ".join(f"Sentence {i} " + " ".join(f"w{i}x{j}" for j in range(words - 2)) + "." for i in range(n))


def test_every_chunk_fits_and_offsets_point_at_its_text():
    text = sentences(60)
    chunks = chunk_pages([Page(None, text)], token_offsets=tok, max_tokens=40, overlap=8)
    assert len(chunks) > 5
    for c in chunks:
        assert c.token_count <= 40
        assert len(tok(c.text)) == c.token_count
        assert text[c.start:c.end] == c.text
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))


def test_windows_cover_all_text_and_overlap():
    text = sentences(40)
    chunks = chunk_pages([Page(None, text)], token_offsets=tok, max_tokens=40, overlap=8)
    assert chunks[0].start == 0 and chunks[-1].end == len(text.rstrip())
    for a, b in zip(chunks, chunks[1:]):
        assert b.start < a.end, "consecutive chunks overlap"
        assert b.start > a.start, "always progress"


def test_cuts_prefer_sentence_ends():
    text = sentences(30)
    chunks = chunk_pages([Page(None, text)], token_offsets=tok, max_tokens=40, overlap=8)
    for c in chunks[:-1]:
        assert c.text.endswith("."), c.text[-30:]
    for c in chunks[1:]:
        assert c.text.startswith("Sentence"), c.text[:30]


def test_paragraph_breaks_beat_sentence_ends():
    para = sentences(2, words=6)
    text = "\n\n".join([para] * 6)
    chunks = chunk_pages([Page(None, text)], token_offsets=tok, max_tokens=30, overlap=0)
    assert len(chunks) == 3
    for c in chunks[:-1]:
        assert text[c.end:c.end + 2] == "\n\n", "cut at a paragraph break, not a sentence end"


def test_a_sentence_longer_than_a_window_is_cut_between_tokens():
    text = " ".join(f"word{i}" for i in range(500))
    chunks = chunk_pages([Page(None, text)], token_offsets=tok, max_tokens=50, overlap=10)
    assert all(c.token_count <= 50 for c in chunks)
    assert chunks[-1].text.endswith("word499")


def test_pages_are_kept_and_offsets_are_per_page():
    pages = [Page(1, sentences(3)), Page(2, "   "), Page(3, "The descaling procedure. " + sentences(3))]
    chunks = chunk_pages(pages, token_offsets=tok, max_tokens=200, overlap=0)
    assert [c.page for c in chunks] == [1, 3]
    assert chunks[1].start == 0 and chunks[1].text.startswith("The descaling")


def test_huge_page_is_tokenized_in_blocks_with_exact_offsets():
    text = ("Paragraph words here. " * 30 + "\n\n") * (3 * BLOCK_CHARS // 700)
    chunks = chunk_pages([Page(None, text)], token_offsets=tok, max_tokens=64, overlap=8)
    for c in chunks:
        assert text[c.start:c.end] == c.text


def test_empty_and_bad_arguments():
    assert chunk_pages([Page(None, "")], token_offsets=tok, max_tokens=10, overlap=0) == []
    with pytest.raises(ValueError):
        chunk_pages([Page(None, "x")], token_offsets=tok, max_tokens=10, overlap=5)
