"""The `sift` command line, in-process with the fake embedder."""

from __future__ import annotations

import json
import os

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
    hits = json.loads(out)
    assert code == 0 and hits[0]["path"] == str(docs / "coffee.txt")
    assert {"path", "page", "score", "snippet"} <= set(hits[0])
    code, out, _ = run("search", "tyre pressure")
    assert "bike.txt" in out.splitlines()[0]
    code, out, _ = run("status", "--json")
    status = json.loads(out)
    assert status["files_by_status"] == {"indexed": 2, "corrupt": 1}
    assert status["problems"] == [{"path": str(docs / "broken.pdf"), "status": "corrupt",
                                   "reason": status["problems"][0]["reason"]}]
    assert status["problems"][0]["reason"]
    code, out, _ = run("status")
    assert "Could not index 1 files" in out and "broken.pdf" in out


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
