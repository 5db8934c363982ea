"""Durability under SIGKILL: the real `rag serve` process is killed at random moments while a client
uploads, then restarted, again and again. After every restart each acknowledged document must be listed
with its chunks, the ones acknowledged since the last restart (and a few older ones) must be retrievable
by their codeword, and the stores must agree with the registry (nothing half-present); at the end every
acknowledged document is retrieved.

Slow by nature (a server start per round); bounded by KILL_ROUNDS (20 unless RAG_KILL_ROUNDS says).
"""

from __future__ import annotations

import io
import json
import os
import random
import string
import threading
import time
from collections.abc import Iterable
from pathlib import Path

import httpx

from rag.service import Service
from tests.conftest import RagServe, make_settings

KILL_ROUNDS = int(os.environ.get("RAG_KILL_ROUNDS", "20"))
KEY = "kill-test-key"
HEADERS = {"Authorization": f"Bearer {KEY}"}


def _codeword(rng: random.Random) -> str:
    return "".join(rng.choice(string.ascii_lowercase) for _ in range(12))


class Server(RagServe):
    """`rag serve` on a data dir with the test's key; no question is asked, so generation loads lazily."""

    def __init__(self, data_dir: Path) -> None:
        super().__init__(
            data_dir,
            {"RAG_API_KEYS": json.dumps({"default": KEY}), "RAG_WARM_GENERATION": "false"},
        )


class Uploader(threading.Thread):
    """Uploads new documents one request after another until told to stop or the server dies."""

    def __init__(self, url: str, corpus: list[dict], rng: random.Random, acknowledged: dict[str, str]) -> None:
        super().__init__(daemon=True)
        self._client = httpx.Client(base_url=url, timeout=60, headers=HEADERS)
        self._corpus, self._rng, self.acknowledged = corpus, rng, acknowledged
        self.stop = threading.Event()
        self.first_answer = threading.Event()
        self.requests = 0

    def _document(self) -> tuple[str, str, bytes]:
        word = _codeword(self._rng)
        paragraphs = self._rng.sample(self._corpus, self._rng.randint(1, 6))
        body = "\n\n".join(p["text"] for p in paragraphs)
        text = f"# {paragraphs[0]['title']} {word}\n\nThe codeword of this report is {word}.\n\n{body}\n"
        return word, f"{word}.md", text.encode()

    def run(self) -> None:
        while not self.stop.is_set():
            documents = [self._document() for _ in range(self._rng.choice((1, 1, 2, 3)))]
            files = [("files", (name, io.BytesIO(data), "text/markdown")) for _, name, data in documents]
            try:
                response = self._client.post("/v1/documents", files=files)
            except httpx.HTTPError:
                return  # killed mid-request: not acknowledged
            self.requests += 1
            self.first_answer.set()
            assert response.status_code == 201, response.text
            for (word, _, _), status in zip(documents, response.json()["documents"]):
                assert status["status"] == "indexed", status
                self.acknowledged[status["id"]] = word


def _assert_consistent(data_dir: Path) -> int:
    """Open the data dir as a restart does (interrupted writes are purged), then compare every store
    with the registry, as `rag check` does; returns the documents held."""
    service = Service.open(make_settings(data_dir))
    try:
        differences = service.indexer.check()
        assert differences == [], [d.describe() for d in differences]
        return len(service.registry.census())
    finally:
        service.close()


def _assert_acknowledged_present(url: str, acknowledged: dict[str, str], probe: Iterable[str]) -> None:
    """Every acknowledged document is listed with its chunks; those in ``probe`` are also retrieved by
    their codeword (all of them each round would make the test quadratic in its rounds)."""
    with httpx.Client(base_url=url, timeout=60, headers=HEADERS) as client:
        listed = {d["id"]: d for d in client.get("/v1/documents").json()["documents"]}
        lost = sorted(set(acknowledged) - set(listed))
        assert not lost, f"acknowledged but gone after a restart: {lost}"
        assert all(listed[document_id]["chunks"] > 0 for document_id in acknowledged)
        for document_id in probe:
            word = acknowledged[document_id]
            passages = client.post("/v1/retrieve", json={"question": f"codeword {word}", "top_k": 1}).json()
            assert passages["passages"][0]["document_id"] == document_id, (document_id, word)


def test_acknowledged_uploads_survive_sigkill_and_nothing_is_half_present(tmp_path: Path, xquad) -> None:
    corpus = list(xquad[0].values())
    rng = random.Random(20261128)
    data_dir = tmp_path / "data"
    acknowledged: dict[str, str] = {}
    held_before_kill: list[int] = []
    checked: set[str] = set()
    for _ in range(KILL_ROUNDS):
        server = Server(data_dir)
        # Retrieved each round: the documents acknowledged since the last restart, and a few older ones.
        unchecked = sorted(set(acknowledged) - checked)
        older = rng.sample(sorted(checked), min(3, len(checked)))
        _assert_acknowledged_present(server.url, acknowledged, unchecked + older)
        checked.update(unchecked)
        uploader = Uploader(server.url, corpus, rng, acknowledged)
        uploader.start()
        uploader.first_answer.wait(timeout=120)  # then a random moment: between, during or after writes
        time.sleep(rng.uniform(0.0, 2.0))
        server.kill()
        uploader.stop.set()
        uploader.join(timeout=60)
        held_before_kill.append(uploader.requests)
        assert _assert_consistent(data_dir) >= len(acknowledged)
    server = Server(data_dir)
    try:
        _assert_acknowledged_present(server.url, acknowledged, sorted(acknowledged))
    finally:
        server.kill()
    assert len(acknowledged) >= KILL_ROUNDS  # the rounds did upload, and were killed mid-stream
    print(f"{KILL_ROUNDS} kills, {len(acknowledged)} acknowledged documents, requests per round {held_before_kill}")
