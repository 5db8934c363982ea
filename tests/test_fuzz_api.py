"""Property-based fuzzing of the HTTP API from its own OpenAPI schema (schemathesis), on a bounded budget.

Every operation the running server publishes at /openapi.json gets generated requests, valid and invalid:
schemathesis' examples, coverage (boundaries, type mutations, missing fields) and fuzzing phases, run by
its engine (the same one ``schemathesis run`` uses; its pytest loader does not work with pytest 9's node
ids). The checks: no 5xx, the status code, content type and body of each response are the ones the schema
declares, and invalid requests are refused with a 4xx. Then hypothesis goes where the schema's generators
do not: questions with lone surrogates, NULs and control characters in raw JSON, and multipart parts with
any bytes, names and declared types. POST /v1/query and POST /v1/chat/completions run the local LLM, so
this server answers with at most 8 tokens and those routes get few generated examples. Deterministic (fixed seeds, no example database).
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import Status, events

from tests.conftest import NO_RATE_LIMITS, LiveServer, make_settings

EXAMPLES = 80  # per operation and phase
QUERY_EXAMPLES = 10  # each one may run the LLM (~2 s): /v1/query and /v1/chat/completions
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
)


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    settings = make_settings(tmp_path_factory.mktemp("fuzz"), max_answer_tokens=8, max_upload_bytes=200_000, **NO_RATE_LIMITS)
    with LiveServer(settings) as server:
        _seed(server)
        yield server


SEEDS = [
    b"# Lighthouses\n\nThe Eddystone lighthouse stands on rocks south of Plymouth.\n",
    b"# Rivers\n\nThe Thames flows through London to the North Sea.\n",
    b"# Bridges\n\nTower Bridge opened in 1894 and crosses the Thames.\n",
]


def _seed(server: LiveServer) -> None:
    """Documents to retrieve from, so questions reach the reranker and the LLM (idempotent: the fuzzer's
    DELETEs may have removed them, an upload of the same bytes again is a 'duplicate' otherwise)."""
    files = [("files", (f"seed{i}.md", io.BytesIO(seed))) for i, seed in enumerate(SEEDS)]
    with _client(server) as http:
        response = http.post("/v1/documents", files=files)
        assert response.status_code == 201, response.text


@pytest.fixture()
def seeded(fuzz_server: LiveServer) -> LiveServer:
    _seed(fuzz_server)
    return fuzz_server


def _client(server: LiveServer) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers=getattr(server, "auth_headers", {}), timeout=120)


def _config(server: LiveServer) -> SchemathesisConfig:
    return SchemathesisConfig.from_dict(
        {
            "seed": 20240601,
            "headers": dict(getattr(server, "auth_headers", {})),
            "request-timeout": 120,
            "workers": 1,
            # Requests without the API key are tests/test_auth.py's business (and their 401 is not in the schema).
            "generation": {"max-examples": EXAMPLES, "database": "none", "with-security-parameters": False},
            "phases": {"stateful": {"enabled": False}},
            "checks": {"enabled": False, **{name: {"enabled": True} for name in CHECKS}},
            "operations": [
                {"include-path": path, "generation": {"max-examples": QUERY_EXAMPLES}}
                for path in ("/v1/query", "/v1/chat/completions")
            ],
        }
    )


def _describe(event: events.ScenarioFinished) -> list[str]:
    out = []
    for checks in event.recorder.checks.values():
        for check in checks:
            if check.status == Status.FAILURE and check.failure_info is not None:
                failure = check.failure_info.failure
                out.append(
                    f"[{event.phase.value}] {event.recorder.label}: {check.name}: {failure.title}\n"
                    f"{failure.message}\n{check.failure_info.code_sample}"
                )
    return out


def test_fuzzing_every_operation_finds_no_server_error_and_no_schema_violation(
    fuzz_server: LiveServer,
) -> None:
    schema = schemathesis.openapi.from_url(
        f"{fuzz_server.url}/openapi.json",
        config=_config(fuzz_server),
        headers=getattr(fuzz_server, "auth_headers", {}),
    )
    operations = {result.ok().label for result in schema.get_all_operations()}
    assert {"POST /v1/documents", "POST /v1/query", "POST /v1/retrieve", "GET /healthz"} <= operations

    problems: list[str] = []
    tested: set[str] = set()
    finished: events.EngineFinished | None = None
    for event in schemathesis.engine.from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            tested.add(event.recorder.label)
            if event.status in (Status.FAILURE, Status.ERROR):
                problems += _describe(event) or [f"{event.recorder.label}: {event.status.value}"]
        elif isinstance(event, events.NonFatalError):
            problems.append(f"{event.label}: {event.info.title}: {event.info.message}")
        elif isinstance(event, events.FatalError):
            raise event.exception
        elif isinstance(event, events.EngineFinished):
            finished = event
    assert finished is not None and finished.stop_reason.value == "completed"
    assert not problems, "\n\n".join(problems)
    assert tested == operations


# --- deeper than the schema: every string a JSON body can carry, and hostile multipart parts ----------

_JSON_ESCAPES = st.sampled_from(
    ["\\ud800", "\\udfff", "\\u0000", "\\u001b", "\\ufeff", "\\u202e", "\\ud83d\\ude00"]
)
_QUESTIONS = st.lists(
    st.one_of(st.text(min_size=1, max_size=40), _JSON_ESCAPES.map(lambda e: ("raw", e))),
    min_size=1,
    max_size=6,
)


def _json_string(parts: list) -> str:
    """A JSON string literal; ("raw", escape) parts go in unescaped, so lone surrogates and NULs reach the server."""
    out = []
    for part in parts:
        out.append(part[1] if isinstance(part, tuple) else json.dumps(part)[1:-1])
    return '"' + "".join(out) + '"'


@given(
    question=_QUESTIONS,
    top_k=st.one_of(st.none(), st.integers(1, 8)),
    budget=st.one_of(st.none(), st.integers(64, 600)),
)
@settings(
    max_examples=80, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck), database=None
)
def test_any_question_text_gets_an_answer_or_a_4xx(seeded: LiveServer, question, top_k, budget) -> None:
    fuzz_server = seeded
    body = '{"question": ' + _json_string(question)
    body += (
        "".join(f', "{k}": {v}' for k, v in (("top_k", top_k), ("token_budget", budget)) if v is not None)
        + "}"
    )
    with _client(fuzz_server) as http:
        response = http.post(
            "/v1/retrieve", content=body.encode(), headers={"content-type": "application/json"}
        )
    assert response.status_code in (200, 422), response.text
    if response.status_code == 422:
        assert response.json()["error"]["code"] == "invalid_request"


@given(question=_QUESTIONS, stream=st.booleans())
@settings(
    max_examples=QUERY_EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
    database=None,
)
def test_any_question_text_gets_an_answer_or_a_4xx_from_the_llm_route(
    seeded: LiveServer, question, stream
) -> None:
    fuzz_server = seeded
    body = '{"question": ' + _json_string(question) + f', "stream": {json.dumps(stream)}}}'
    with _client(fuzz_server) as http:
        response = http.post("/v1/query", content=body.encode(), headers={"content-type": "application/json"})
    assert response.status_code in (200, 422), response.text
    if response.status_code == 422:
        assert response.json()["error"]["code"] == "invalid_request"
    elif stream:
        assert "event: done" in response.text and "event: error" not in response.text, response.text
    else:
        assert isinstance(response.json()["answer"], str)


_NAMES = st.one_of(
    st.text(min_size=0, max_size=30),
    st.sampled_from(
        ["../../etc/passwd.txt", "a/b\\c.md", "con.txt", ".txt", "x" * 300 + ".txt", "nul\x00.txt", "é.HTML"]
    ),
)
_TYPES = st.one_of(
    st.none(),
    st.sampled_from(
        [
            "text/plain",
            "text/html; charset=utf-16",
            "application/pdf",
            "application/octet-stream",
            "image/png",
            "x/y; z",
        ]
    ),
)


@given(name=_NAMES, content=st.binary(max_size=600), declared=_TYPES)
@settings(
    max_examples=80, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck), database=None
)
def test_any_uploaded_part_is_indexed_or_refused_with_a_4xx(
    fuzz_server: LiveServer, name, content, declared
) -> None:
    part = (name, io.BytesIO(content), declared) if declared else (name, io.BytesIO(content))
    with _client(fuzz_server) as http:
        response = http.post("/v1/documents", files=[("files", part)])
    assert response.status_code in (201, 413, 415, 422), response.text
    if response.status_code != 201:
        assert response.json()["error"]["message"]


def test_the_server_is_still_up_after_fuzzing(fuzz_server: LiveServer) -> None:
    with _client(fuzz_server) as http:
        assert http.get("/healthz").json()["status"] == "ok"
        assert (
            http.post("/v1/retrieve", json={"question": "Where is the Eddystone lighthouse?"}).status_code
            == 200
        )
