"""The `sift` command line, in-process with the fake embedder."""

from __future__ import annotations

import io
import json
import os
import sys

import pytest

from tests.helpers import write


@pytest.fixture
def run(run_cli):
    return run_cli


def test_add_index_search_status(run, docs):
    write(docs / "coffee.txt", "Descaling the espresso machine removes mineral deposits.")
    write(docs / "bike.txt", "Road bike tyre pressure is printed on the sidewall.")
    (docs / "broken.pdf").write_bytes(b"not a pdf at all")
    code, out, _ = run("add-folder", str(docs))
    assert code == 0 and str(docs) in out
    code, out, _ = run("index")
    assert code == 0 and "2 added" in out and "1 could not be indexed" in out
    code, out, _ = run("search", "espresso", "descaling", "--json")
    [line] = out.splitlines()
    answer = json.loads(line)
    hits = answer["hits"]
    assert code == 0 and answer["query"] == "espresso descaling" and hits[0]["path"] == str(docs / "coffee.txt")
    assert {"path", "page", "score", "snippet", "match"} <= set(hits[0])
    assert answer["good_matches"] == sum(h["match"] == "good" for h in hits) >= 1
    code, out, _ = run("search", "tyre pressure")
    assert "bike.txt" in out.splitlines()[0]
    code, out, _ = run("status", "--json")
    status = json.loads(out)
    assert status["files_by_status"] == {"indexed": 2, "corrupt": 1}
    assert status["problems"] == [{"path": str(docs / "broken.pdf"), "status": "corrupt",
                                   "reason": "Damaged, or in a form Sift cannot read",
                                   "detail": status["problems"][0]["detail"]}]
    assert status["problems"][0]["detail"]
    code, out, _ = run("status")
    assert "Could not index 1 file:" in out and "broken.pdf" in out


def test_remove_folder_and_folders(run, docs):
    write(docs / "a.txt", "alpha")
    run("add-folder", str(docs))
    run("index")
    code, out, _ = run("folders")
    assert out.strip() == str(docs)
    code, out, _ = run("remove-folder", str(docs))
    assert code == 0 and "forgot 1" in out
    code, out, _ = run("folders")
    assert "bundled samples" in out


def test_errors_are_clear_and_exit_1(run, tmp_path):
    code, _, err = run("add-folder", str(tmp_path / "missing"))
    assert code == 1 and "is not a folder" in err
    code, _, err = run("remove-folder", str(tmp_path))
    assert code == 1 and "not one of Sift's folders" in err


def test_usage_errors_exit_2(run):
    with pytest.raises(SystemExit) as exc:
        run("frobnicate")
    assert exc.value.code == 2


def test_empty_search_prints_no_results(run):
    code, out, _ = run("search", " ")
    assert code == 0 and "No results" in out


def test_search_words_starting_with_a_dash_are_exclusions(run, docs):
    write(docs / "a.txt", "descaling the espresso boiler")
    write(docs / "b.txt", "descaling with vinegar")
    run("add-folder", str(docs))
    run("index")
    code, out, err = run("search", "descaling", "-vinegar", "--why")
    assert code == 0 and "a.txt" in out and "b.txt" not in out
    assert "why: dense rank" in out and "mode hybrid" in err


def test_similar_and_reranker_import_errors(run, docs, tmp_path):
    write(docs / "a.txt", "descaling the espresso boiler")
    write(docs / "b.txt", "descaling the coffee machine boiler")
    run("add-folder", str(docs))
    run("index")
    code, out, _ = run("similar", str(docs / "a.txt"))
    assert code == 0 and "b.txt" in out and "a.txt" not in out
    code, _, err = run("reranker", "import", str(tmp_path))
    assert code == 1 and "not a model folder" in err


def test_reranker_download_shows_the_size_and_needs_consent(run, monkeypatch, tmp_path):
    import huggingface_hub

    class Sibling:
        def __init__(self, name, size):
            self.rfilename, self.size = name, size

    class FakeApi:
        def model_info(self, name, files_metadata):
            assert files_metadata
            return type("Info", (), {"siblings": [Sibling("model.safetensors", 90 * 1024**2),
                                                  Sibling("config.json", 1024), Sibling("pytorch_model.bin", 10**9)]})

    fetched = []

    def fake_snapshot(repo_id, local_dir, allow_patterns):
        assert "*.safetensors" in allow_patterns and "*.bin" not in allow_patterns
        fetched.append(repo_id)
        os.makedirs(local_dir, exist_ok=True)
        open(os.path.join(local_dir, "config.json"), "w").write("{}")
        open(os.path.join(local_dir, "model.safetensors"), "wb").write(b"\0" * 16)

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot)
    code, out, err = run("reranker", "download")
    assert code == 1 and "90.0 MB" in out and "--yes" in err and fetched == []
    code, out, _ = run("reranker", "download", "--yes")
    assert code == 0 and fetched == ["cross-encoder/ms-marco-MiniLM-L6-v2"]
    code, out, _ = run("status")
    assert "Reranker: cross-encoder--ms-marco-MiniLM-L6-v2" in out


def test_reranker_download_without_network_says_what_to_do(run, monkeypatch):
    import huggingface_hub

    class DeadApi:
        def model_info(self, name, files_metadata):
            raise OSError("Network is unreachable")

    monkeypatch.setattr(huggingface_hub, "HfApi", DeadApi)
    code, _, err = run("reranker", "download", "--yes")
    assert code == 1 and "Could not reach the model hub" in err and "reranker import" in err


@pytest.fixture
def three(run, docs):
    write(docs / "coffee.txt", "Descaling the espresso machine every month removes mineral deposits from the boiler.")
    write(docs / "bike.txt", "Road bike tyres should be inflated to the pressure printed on the sidewall.")
    write(docs / "birds.txt", "Migrating birds navigate using the magnetic field of the earth.")
    run("add-folder", str(docs))
    run("index")


def test_search_prints_good_matches_then_the_divider(run, three):
    code, out, _ = run("search", "espresso machine descaling")
    lines = out.splitlines()
    divider = lines.index("── Loosely related ──")
    assert code == 0 and "coffee.txt" in lines[0] and divider > 0
    assert all("coffee.txt" not in line for line in lines[divider:])
    assert "(1 good match)" in out


def test_search_without_a_good_match_says_so_first(run, three):
    code, out, _ = run("search", "xyzzyqqq flurbgast")
    lines = out.splitlines()
    assert lines[0] == "No good matches for \u201cxyzzyqqq flurbgast\u201d; the closest:"
    assert "Loosely related" not in out and "good match" not in out.replace(lines[0], "")


def test_search_that_filters_or_a_phrase_leave_empty_says_which(run, three):
    code, out, _ = run("search", "espresso type:pdf")
    assert code == 0 and out.strip() == "No documents match these filters."
    code, out, _ = run("search", '"espresso bike"')
    assert code == 0 and out.strip() == "No document contains \u201cespresso bike\u201d."
    code, out, _ = run("search", '"espresso machine"')
    assert "coffee.txt" in out.splitlines()[0]


def test_batch_queries_answer_one_json_line_each(run, three, tmp_path, monkeypatch):
    queries = tmp_path / "queries.txt"
    queries.write_text("espresso descaling\n\nxyzzyqqq flurbgast\nbike tyres\n", encoding="utf-8")
    code, out, _ = run("search", "--queries", str(queries), "--json", "-n", "2")
    answers = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [a["query"] for a in answers] == ["espresso descaling", "xyzzyqqq flurbgast", "bike tyres"]
    assert [a["good_matches"] for a in answers] == [1, 0, 1]
    assert all(len(a["hits"]) == 2 and {h["match"] for h in a["hits"]} <= {"good", "weak"} for a in answers)
    import io
    monkeypatch.setattr("sys.stdin", io.StringIO("bike tyres\n"))
    code, out, _ = run("search", "--queries", "-", "--json")
    assert [json.loads(line)["query"] for line in out.splitlines()] == ["bike tyres"]
    code, out, _ = run("search", "--queries", str(queries))
    assert out.count("$ sift search ") == 3 and "No good matches for \u201cxyzzyqqq flurbgast\u201d" in out
    code, _, err = run("search", "--queries", str(tmp_path / "missing.txt"))
    assert code == 1 and "Cannot read the queries" in err
    code, _, err = run("search", "x", "--queries", str(queries))
    assert code == 1 and "not both" in err


def test_search_brackets_the_score_the_list_is_sorted_by(capsys):
    """Issue 19 item 13: the bracketed number is the fused score the list is sorted by, not the cosine
    similarity shown beside it (rank 2 showed 0.053 and rank 3 0.104)."""
    import re

    from engine.cli import _print_hits
    from engine.types import Hit, Why

    def hit(name, similarity, fused):
        return Hit(path=f"/d/{name}", score=similarity, page=None, snippet="", chunk_id=1, start=0, end=0,
                   kind="text", mtime=0, why=Why(dense_rank=1, keyword_rank=1, fused_score=fused))

    _print_hits([hit("a", 0.30, 0.0328), hit("b", 0.053, 0.0320), hit("c", 0.104, 0.0310)])
    scores = [float(x) for x in re.findall(r"\[(\d+\.\d+)\]", capsys.readouterr().out)]
    assert scores == [0.0328, 0.032, 0.031]


def test_a_query_with_control_characters_is_printed_escaped(run, three, tmp_path):
    queries = tmp_path / "queries.txt"
    queries.write_text("xyzzy\x1b[31mqqq \u202eflurbgast\n", encoding="utf-8")
    code, out, _ = run("search", "--queries", str(queries))
    assert code == 0 and "\x1b" not in out and "\u202e" not in out
    assert "No good matches for \u201cxyzzy\\x1b[31mqqq \\u202eflurbgast\u201d" in out


def test_index_progress_goes_to_stderr_as_whole_lines_off_a_terminal(run, docs):
    for i in range(3):
        write(docs / f"note{i}.txt", f"Note number {i} about green tea.")
    run("add-folder", str(docs))
    code, out, err = run("index")
    assert code == 0 and "3 added" in out and "Indexing" not in out
    lines = err.splitlines()
    assert lines and "\r" not in err  # a log or CI gets whole lines, not one line drawn over
    assert lines[-1].startswith("Indexing: 100%") and "3/3" in lines[-1]  # the last step, always
    assert run("index", "--quiet")[2] == ""


def test_index_progress_on_a_terminal_is_one_line_drawn_over_then_cleared(run, docs, monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    for i in range(3):
        write(docs / f"note{i}.txt", f"Note number {i} about green tea.")
    run("add-folder", str(docs))
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    code, out, _ = run("index")
    drawn = terminal.getvalue()
    assert code == 0 and "3 added" in out
    assert "\n" not in drawn and drawn.count("\r") >= 2 and "3/3" in drawn
    assert drawn.rstrip(" ").endswith("\r")  # cleared for the report that follows


def test_status_tells_problems_in_plain_words_and_keeps_the_detail_in_json(run, docs):
    """No parser library's words where a person reads (`sift status`); files with no text are skipped."""
    import zipfile

    from tests.filemaker import make_pdf

    with zipfile.ZipFile(docs / "deep.docx", "w") as z:   # XML nested past lxml's limit
        z.writestr("word/document.xml", "<a>" * 300_000 + "</a>" * 300_000)
    (docs / "junk.pdf").write_bytes(b"%PDF-1.7\n1 0 obj << /Filter /A85 /Length 99 >> stream\nxx")
    make_pdf(docs / "empty.pdf", [""])
    write(docs / "ok.txt", "A note that reads fine.")
    run("add-folder", str(docs))
    run("index")
    code, out, _ = run("status")
    failed = out.split("Could not index 2 files:\n")[1].split("Skipped, no text in 1 file:\n")
    assert "deep.docx: Damaged, or in a form Sift cannot read" in failed[0]
    assert "junk.pdf: Damaged, or in a form Sift cannot read" in failed[0]
    assert "empty.pdf: Skipped" in failed[1]
    for word in ("XML", "lxml", "pypdf", "/A85", "Error", "parser", "Traceback"):
        assert word not in out.split("Could not index")[1], word
    code, out, _ = run("status", "--json")
    problems = {os.path.basename(p["path"]): p for p in json.loads(out)["problems"]}
    assert problems["deep.docx"]["reason"] == "Damaged, or in a form Sift cannot read"
    assert problems["deep.docx"]["detail"] != problems["deep.docx"]["reason"]


def test_index_bar_counts_files_read_and_gives_the_indexers_time_left(capsys):
    """The bar counts files as they are read (not per committed batch) and shows the indexer's
    time left only once it gives one, not tqdm's guess from the first files."""
    from engine.cli import _IndexProgress
    from engine.types import Progress

    show = _IndexProgress()
    show.bar.every_s = 0.0  # every update drawn
    show(Progress(phase="indexing", files_total=100, files_done=0, files_read=12, chunks_embedded=40))
    show(Progress(phase="indexing", files_total=100, files_done=64, files_read=70, chunks_embedded=150, eta_s=90.0))
    show.done()
    first, *_, last = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert "12/100" in first and "40 chunks embedded" in first and "left" not in first
    assert "70/100" in last and "150 chunks embedded" in last and "about 1 min 30 s left" in last
