"""Small pure parts of the GUI: filter words, relevance bars, status lines, highlighting, reflow."""

from __future__ import annotations

from datetime import date

from desktop.highlight import term_spans, to_html
from desktop.indexing import IndexState
from desktop.mainwindow import filter_words
from desktop.preview import reflow
from desktop.results import friendly_date, relevance
from desktop.status import summary
from engine import Hit, Progress


def _hit(score: float) -> Hit:
    return Hit(path="/d/a.txt", score=score, page=None, snippet="", chunk_id=1, start=0, end=0, kind="text", mtime=0)


def test_filter_bar_choices_become_the_engines_filter_words():
    assert filter_words("", "", 0) == ""
    assert filter_words("pdf", "/home/me/My Papers", 7, today=date(2026, 3, 10)) == \
        'type:pdf in:"/home/me/My Papers" after:2026-03-03'


def test_relevance_bars_spread_rank_based_scores_and_keep_reranker_probabilities():
    bars = relevance([_hit(1.0), _hit(0.97), _hit(0.9)], "hybrid")
    assert bars[0] == 1.0 and bars[0] > bars[1] > bars[2] > 0
    assert relevance([_hit(0.8), _hit(0.2)], "rerank") == [0.8, 0.2]
    assert relevance([_hit(0.5)], "hybrid") == [1.0]


def test_status_line_reads_like_a_sentence():
    p = Progress(phase="indexing", files_total=1400, files_done=300, files_read=350, elapsed_s=35.0, eta_s=105.0)
    assert summary(IndexState(running=True, progress=p)) == "Indexing 350 of 1,400 files · 10.0 files/s · about 2 min left"
    # an estimate the engine does not trust yet is not shown; files read count before their batch commits
    early = Progress(phase="indexing", files_total=1400, files_done=0, files_read=12, elapsed_s=3.0)
    assert summary(IndexState(running=True, progress=early)) == "Indexing 12 of 1,400 files · 4.0 files/s"
    assert summary(IndexState(running=True, progress=Progress(phase="scanning"))) == "Looking for new and changed files…"
    assert summary(IndexState(paused=True)) == "Indexing paused"
    assert summary(IndexState(error="The disk is full.")) == "Indexing waits: The disk is full."


def test_highlighting_marks_query_words_as_prefixes_and_escapes_html():
    text = "Descaling <monthly> keeps the machine & boiler clean."
    spans = term_spans(text, "how to descale the machine type:pdf")
    assert [text[s:e] for s, e in spans] == ["Descaling", "machine"]
    html = to_html(text, spans, background="#ff0", color="#000")
    assert "&lt;monthly&gt;" in html and "&amp;" in html and html.count("<span") == 2


def test_reflow_joins_lines_a_pdf_broke_but_keeps_lists():
    text = "the minerals dissolved in tap\nwater slowly form.\n- Wipe the wand\n- Empty the tray"
    out = reflow(text)
    assert len(out) == len(text)
    assert out == "the minerals dissolved in tap water slowly form.\n- Wipe the wand\n- Empty the tray"


def test_dates_are_short():
    now = 1_770_000_000.0  # a fixed "now"
    assert friendly_date(now - 60, now=now).startswith("Today ")
    assert friendly_date(now - 86_400, now=now) == "Yesterday"
    assert friendly_date(0, now=now) == ""
