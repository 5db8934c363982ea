"""Server mode over HTTP: `rag serve` processes on one PostgreSQL database are workers of one service.

Two servers on one database (the second itself runs two uvicorn workers): an upload through one is
retrievable and answerable through the other, a cached answer is shared, a delete through one is gone
from the other's documents, retrieval, graph and cache, and a rate limit counted in one Valkey holds
for all of them; a server SIGKILLed during uploads loses no
acknowledged document, and `rag check` agrees afterwards. `rag serve --workers 2` without a database
is refused.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import threading
from pathlib import Path

import httpx

from tests.conftest import RAG, REPO, RagServe

KEY = "server-mode-test-key"
HEADERS = {"Authorization": f"Bearer {KEY}"}
NORMANS = b"# Normans\n\nThe Normans gave their name to Normandy, a region in France. Rollo led them in 911.\n"


def _env(database_url: str, **more: str) -> dict[str, str]:
    return {
        **more,
        "RAG_DATABASE_URL": database_url,
        "RAG_API_KEYS": json.dumps({"default": KEY}),
        "RAG_WARM_GENERATION": "false",
        # the small model alone: generation is not under test here, the shared state is
        "RAG_ROUTING": "fixed",
        "RAG_DEFAULT_TIER": "cheap",
    }


def _client(server: RagServe) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers=HEADERS, timeout=300)


def _upload(client: httpx.Client, name: str, data: bytes) -> dict:
    response = client.post("/v1/documents", files=[("files", (name, io.BytesIO(data), "text/markdown"))])
    assert response.status_code == 201, response.text
    return response.json()["documents"][0]


def test_servers_on_one_database_share_documents_answers_deletes_and_rate_limits(
    tmp_path: Path, postgres_url: str, valkey_url: str
) -> None:
    # The tenant may retrieve 8 times a minute, counted in one Valkey for all three workers.
    limits = {
        "RAG_RATE_LIMIT_STORAGE": valkey_url,
        "RAG_TENANT_RATE_LIMITS": json.dumps({"default": {"retrieve": "8/minute"}}),
    }
    one = RagServe(tmp_path / "one", _env(postgres_url, **limits))
    two = RagServe(tmp_path / "two", _env(postgres_url, **limits), ("--workers", "2"))
    try:
        with _client(one) as a, _client(two) as b:
            document = _upload(a, "normans.md", NORMANS)
            assert document["status"] == "indexed"
            assert [d["id"] for d in b.get("/v1/documents").json()["documents"]] == [document["id"]]
            for _ in range(2):  # both of the second server's workers, whichever takes each request
                passages = b.post("/v1/retrieve", json={"question": "Who led the Normans?", "top_k": 1}).json()
                assert passages["passages"][0]["document_id"] == document["id"]
            assert _upload(b, "again.md", NORMANS)["status"] == "duplicate"
            first = b.post("/v1/query", json={"question": "Who led the Normans?"}).json()
            assert first["cache"] == "miss" and first["citations"][0]["document_id"] == document["id"]
            again = a.post("/v1/query", json={"question": "Who led the Normans?"}).json()
            assert again["cache"] == "hit" and again["answer"] == first["answer"]  # one cache for all
            assert b.get("/v1/graph/entities", params={"q": "norman"}).json()["entities"]

            assert b.delete(f"/v1/documents/{document['id']}").status_code in (200, 204)
            assert a.get("/v1/documents").json()["documents"] == []
            assert a.post("/v1/retrieve", json={"question": "Who led the Normans?"}).json()["passages"] == []
            assert a.get("/v1/graph/entities", params={"q": "norman"}).json()["entities"] == []
            after = a.post("/v1/query", json={"question": "Who led the Normans?"}).json()
            assert after["cache"] == "miss"  # the entry that cited the deleted document went with it
            usage = a.get("/v1/usage").json()["total"]
            assert usage["queries"] == 3 and usage["cache_hits"] == 1  # one ledger for all workers
            # 3 retrievals so far; the other 5 of the minute's 8 go to whichever server, then both refuse.
            statuses = [c.post("/v1/retrieve", json={"question": "Who?"}).status_code for c in (a, b) * 4]
            assert statuses == [200] * 5 + [429] * 3
            refused = b.post("/v1/retrieve", json={"question": "Who?"})
            assert "8 retrievals per minute for the tenant 'default'" in refused.json()["error"]["message"]
    finally:
        two.kill()
        one.kill()


def test_a_killed_server_loses_no_acknowledged_upload_and_rag_check_agrees(
    tmp_path: Path, postgres_url: str, xquad
) -> None:
    corpus = [doc["text"] for doc in list(xquad[0].values())[:40]]
    survivor = RagServe(tmp_path / "survivor", _env(postgres_url))
    victim = RagServe(tmp_path / "victim", _env(postgres_url))
    acknowledged: list[str] = []
    stop = threading.Event()

    def upload_until_killed() -> None:
        with _client(victim) as client:
            for i, text in enumerate(corpus):
                if stop.is_set():
                    return
                try:
                    status = _upload(client, f"doc{i}.md", f"# Doc {i}\n\n{text}\n".encode())
                except httpx.HTTPError:
                    return  # killed mid-request: not acknowledged
                acknowledged.append(status["id"])

    uploader = threading.Thread(target=upload_until_killed)
    uploader.start()
    try:
        while len(acknowledged) < 5 and uploader.is_alive():
            threading.Event().wait(0.1)
        victim.kill()
        stop.set()
        uploader.join(timeout=120)
        with _client(survivor) as client:
            listed = {d["id"] for d in client.get("/v1/documents").json()["documents"]}
        assert len(acknowledged) >= 5 and set(acknowledged) <= listed
    finally:
        survivor.kill()
    env = {**os.environ, **_env(postgres_url), "RAG_DATA_DIR": str(tmp_path / "check")}
    check = subprocess.run([RAG, "check"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "consistent" in check.stdout


def test_several_workers_need_server_mode(tmp_path: Path) -> None:
    env = {**os.environ, "RAG_DATA_DIR": str(tmp_path)}
    refused = subprocess.run(
        [RAG, "serve", "--workers", "2"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert refused.returncode == 1 and "RAG_DATABASE_URL" in refused.stderr
