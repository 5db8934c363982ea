"""The `rag` command, run as a user would: a subprocess on a fresh data dir."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import MODEL_DIR, REPO

RAG = [str(Path(sys.executable).with_name("rag"))]


def run(data_dir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RAG_DATA_DIR": str(data_dir), "RAG_MODEL_DIR": str(MODEL_DIR)}
    result = subprocess.run(RAG + list(args), cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def test_ingest_docs_ask_delete(tmp_path: Path, xquad) -> None:
    corpus, _ = xquad
    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True)
    socal = corpus["Southern_California#4"]
    (folder / "socal.md").write_text(f"# {socal['title']}\n\n{socal['text']}\n")
    (folder / "sub" / "bowl.txt").write_text(corpus["Super_Bowl_50#0"]["text"])
    (folder / "ignored.bin").write_bytes(b"\x00\x01")
    data_dir = tmp_path / "data"

    ingest = run(data_dir, "ingest", str(folder))
    assert ingest.stdout.count("indexed") == 2 and "ingest: 100%" in ingest.stderr

    documents = json.loads(run(data_dir, "docs", "--json").stdout)
    assert sorted(d["name"] for d in documents) == ["bowl.txt", "socal.md"]

    session = tmp_path / "chat.json"
    body = json.loads(run(data_dir, "ask", "Which team was suspended from the MLS?", "--json", "--session", str(session)).stdout)
    socal_id = next(d["id"] for d in documents if d["name"] == "socal.md")
    assert "chivas" in body["answer"].lower()
    assert body["citations"][0]["document_id"] == socal_id and body["usage"]["cost_usd"] > 0
    # A follow-up in the same session is searched as a standalone question; the session keeps both turns.
    follow_up = json.loads(run(data_dir, "ask", "Why was it suspended?", "--json", "--session", str(session)).stdout)
    assert follow_up["debug"]["conversation"]["asked"] == "Why was it suspended?"
    assert follow_up["searched_question"] != "Why was it suspended?"
    turns = json.loads(session.read_text())
    assert [t["question"] for t in turns] == ["Which team was suspended from the MLS?", "Why was it suspended?"]
    assert turns[0]["answer"] == body["answer"]

    assert "deleted" in run(data_dir, "delete", socal_id).stdout
    assert [d["name"] for d in json.loads(run(data_dir, "docs", "--json").stdout)] == ["bowl.txt"]
    missing = run(data_dir, "delete", socal_id, check=False)
    assert missing.returncode == 1 and "no document" in missing.stderr


def test_bad_input_exits_non_zero_with_a_message(tmp_path: Path) -> None:
    (tmp_path / "empty.txt").write_bytes(b"")
    result = run(tmp_path / "data", "ingest", str(tmp_path / "empty.txt"), check=False)
    assert result.returncode == 2 and "empty.txt" in result.stdout
    missing = run(tmp_path / "data", "ingest", str(tmp_path / "nope.pdf"), check=False)
    assert missing.returncode == 1 and "no such file" in missing.stderr
    bad_settings = subprocess.run(
        RAG + ["docs"], cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "RAG_DATA_DIR": str(tmp_path / "data"), "RAG_TOP_K": "many"},
    )
    assert bad_settings.returncode == 1 and "RAG_" in bad_settings.stderr and "top_k" in bad_settings.stderr
