"""Overload over HTTP against a running service: a question that would wait too long for generation is
refused at once (503, Retry-After) while cache hits and retrieval still answer; a question whose deadline
passes in the queue is dropped before any model call; both counted. Generation's slot is held by the test
itself, as a long answer would hold it."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from rag.errors import DeadlineExceeded, Overloaded
from rag.generation.gate import GenerationGate
from rag.pipeline import QueryPipeline
from rag.settings import Settings
from rag.usage.ledger import UsageLedger
from rag.usage.ledger_store import SqlLedgerStore
from tests.conftest import GateQueue, LiveServer, ScriptedLLM, as_text_file, make_settings, upload
from tests.test_abstention import ScoredRetriever

QUESTION_ID = "57115ff82419e314009555c4"  # "In a steam turbine, what are rotors mounted on?"


def test_the_pipeline_drops_a_question_whose_deadline_passes_in_the_queue(tmp_path) -> None:
    gate = GenerationGate(slots=1, max_wait_seconds=60)
    ledger = UsageLedger(SqlLedgerStore.embedded(tmp_path / "ledger.sqlite"))
    llms = {"cheap": ScriptedLLM("cheap-model", "Rollo"), "strong": ScriptedLLM("strong-model", "Rollo")}
    settings = Settings(data_dir=tmp_path, cache_enabled=False, routing="fixed")
    pipeline = QueryPipeline(settings, ScoredRetriever(5.0), llms, lambda q: np.zeros(4), ledger=ledger, gate=gate)
    held = GateQueue(gate, holder="someone-else")
    try:
        with pytest.raises(DeadlineExceeded):
            pipeline.answer("Who led the Norse raiders?", "a", deadline=time.monotonic() + 0.3)
        assert llms["strong"].calls == 0
        # Admission: with one call running, a wait of one service time passes a limit below it.
        gate.max_wait_seconds = 0.5
        with pytest.raises(Overloaded):
            pipeline.answer("Who led the Norse raiders?", "a")
    finally:
        held.release()
    assert ledger.totals().rejected == {"deadline": 1, "admission": 1} and ledger.totals().queries == 0
    gate.max_wait_seconds = 60
    assert pipeline.answer("Who led the Norse raiders?", "a").answer == "Rollo"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, xquad) -> Iterator[tuple[LiveServer, dict]]:
    settings = make_settings(tmp_path_factory.mktemp("data"), admission_max_wait_seconds=5.0)
    corpus, queries = xquad
    query = next(q for q in queries if q["id"] == QUESTION_ID)
    with LiveServer(settings) as live:
        with httpx.Client(base_url=live.url, headers=live.auth_headers, timeout=300) as http:
            assert upload(http, as_text_file(corpus[query["gold_doc_ids"][0]])).status_code == 201
            # Answered once: from now on a cache hit.
            assert http.post("/v1/query", json={"question": query["question"]}).json()["cache"] == "miss"
        yield live, query


def test_a_long_queue_refuses_new_questions_but_not_cache_hits_or_retrieval(server) -> None:
    live, query = server
    gate = live.service.gate
    gate_service = gate.stats().service_seconds
    # The tenant's own calls hold the slot and fill the queue: its next question would wait behind all of
    # them, past the 5 s limit (another tenant's would go first: tests/test_gate.py).
    held = GateQueue(gate, holder="default")
    held.add(*["default"] * (1 + int(5.0 / max(gate_service, 0.1))))
    try:
        with httpx.Client(base_url=live.url, headers=live.auth_headers, timeout=60) as http:
            refused = http.post("/v1/query", json={"question": "What is a steam turbine's casing for?"})
            assert refused.status_code == 503 and int(refused.headers["Retry-After"]) >= 1
            assert refused.json()["error"]["code"] == "overloaded" and "would wait about" in refused.json()["error"]["message"]
            streamed = http.post("/v1/query", json={"question": "What are the stators fixed to?", "stream": True})
            assert streamed.status_code == 503  # refused before the stream starts: a plain JSON error
            hit = http.post("/v1/query", json={"question": query["question"]})
            assert hit.status_code == 200 and hit.json()["cache"] == "hit"
            assert http.post("/v1/retrieve", json={"question": "What are rotors?"}).status_code == 200
            metrics = http.get("/metrics").text
            assert "rag_generation_queue_length" in metrics and "rag_generation_running" in metrics
            assert 'reason="admission"} 2' in metrics
    finally:
        held.release()


def test_a_deadline_passed_in_the_queue_drops_the_question_before_any_model_call(server) -> None:
    live, _ = server
    held = GateQueue(live.service.gate, holder="someone-else")
    try:
        with httpx.Client(base_url=live.url, headers=live.auth_headers, timeout=60) as http:
            before = http.get("/v1/usage").json()["total"]
            late = http.post(
                "/v1/query", json={"question": "What are the stators fixed to?"}, headers={"X-Request-Timeout": "0.5"}
            )
            assert late.status_code == 503 and late.json()["error"]["code"] == "deadline_exceeded"
            assert late.headers["Retry-After"] == "1"
            after = http.get("/v1/usage").json()["total"]
            assert after["prompt_tokens"] == before["prompt_tokens"] and after["queries"] == before["queries"]
            assert after["rejected"].get("deadline", 0) == before["rejected"].get("deadline", 0) + 1
            bad = http.post("/v1/query", json={"question": "Who?"}, headers={"X-Request-Timeout": "soon"})
            assert bad.status_code == 422 and bad.json()["error"]["param"] == "X-Request-Timeout"
    finally:
        held.release()


def _abandoned_request(url: str, path: str, body: dict, headers: dict, after_s: float) -> None:
    """Send a request and close the connection after ``after_s``, as a client that gives up does."""
    host, port = url.removeprefix("http://").split(":")
    payload = json.dumps(body).encode()
    head = "".join(f"{k}: {v}\r\n" for k, v in {**headers, "Content-Type": "application/json"}.items())
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: {host}\r\n{head}Content-Length: {len(payload)}\r\n\r\n".encode() + payload)
        time.sleep(after_s)


def test_a_client_that_leaves_stops_its_generation_and_its_tokens_are_counted(server) -> None:
    live, query = server
    # The strong profile: one streamed generation, no answer cache, so each ask generates anew.
    body = {"model": "costrag-strong", "messages": [{"role": "user", "content": query["question"]}]}
    with httpx.Client(base_url=live.url, headers=live.auth_headers, timeout=300) as http:
        whole = http.post("/v1/chat/completions", json=body).json()["usage"]["completion_tokens"]
        before = http.get("/v1/usage").json()["total"]
        _abandoned_request(live.url, "/v1/chat/completions", body, live.auth_headers, after_s=0.3)
        deadline = time.monotonic() + 120
        while (after := http.get("/v1/usage").json()["total"])["aborted"] == before["aborted"]:
            assert time.monotonic() < deadline, "the abandoned answer was never counted"
            time.sleep(0.2)
    assert after["queries"] == before["queries"] + 1
    assert after["prompt_tokens"] > before["prompt_tokens"]  # the prompt was read: counted
    spent = after["completion_tokens"] - before["completion_tokens"]
    assert 1 <= spent < whole, (spent, whole)  # stopped after its first piece, not generated to the end
