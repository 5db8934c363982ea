"""/v1/chat/completions and /v1/models, driven by the official ``openai`` package against the running
service, plus the wire format its stream must have."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.conftest import LiveServer, as_text_file, upload

QUESTION_ID = "57115ff82419e314009555c4"  # "In a steam turbine, what are rotors mounted on?"


@pytest.fixture(scope="module")
def ready(live_server: LiveServer, xquad) -> tuple[LiveServer, dict, dict]:
    """The server with the question's article indexed: (server, question, its gold document)."""
    corpus, queries = xquad
    query = next(q for q in queries if q["id"] == QUESTION_ID)
    gold = corpus[query["gold_doc_ids"][0]]
    with httpx.Client(base_url=live_server.url, headers=live_server.auth_headers, timeout=300) as http:
        assert upload(http, as_text_file(gold)).status_code == 201
    return live_server, query, gold


@pytest.fixture()
def sdk(live_server: LiveServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{live_server.url}/v1", api_key=live_server.key, max_retries=0, timeout=300) as client:
        yield client


def _spend(server: LiveServer) -> float:
    with httpx.Client(base_url=server.url, headers=server.auth_headers) as http:
        return http.get("/v1/usage").json()["total"]["cost_usd"]


def test_models_are_the_service_profiles(sdk: openai.OpenAI) -> None:
    assert [m.id for m in sdk.models.list()] == ["costrag", "costrag-strong"]


def test_a_plain_call_answers_from_the_documents_with_its_usage_and_citations(
    ready: tuple[LiveServer, dict, dict], sdk: openai.OpenAI
) -> None:
    server, query, gold = ready
    before = _spend(server)
    completion = sdk.chat.completions.create(
        model="costrag",
        messages=[
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": query["question"]},
        ],
        temperature=0.2,  # accepted and ignored: the tiers decode greedily
        user="someone",
    )
    assert completion.object == "chat.completion" and completion.model == "costrag"
    assert completion.id.startswith("chatcmpl-")
    choice = completion.choices[0]
    assert choice.message.role == "assistant" and choice.finish_reason == "stop"
    words = re.findall(r"\w+", choice.message.content.lower())
    assert words and all(w in gold["text"].lower() for w in words), choice.message.content

    own = completion.model_extra["costrag"]  # the /v1/query body for this question
    assert own["answer"] == choice.message.content
    assert own["citations"] and own["citations"][0]["text"] in gold["text"]
    usage, calls = completion.usage, own["usage"]["generations"]
    assert usage.prompt_tokens == sum(c["prompt_tokens"] for c in calls) > 50
    assert usage.completion_tokens == sum(c["completion_tokens"] for c in calls) > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert own["routing"]["tier"] in ("cheap", "strong") and own["usage"]["cost_usd"] > 0
    assert _spend(server) - before == pytest.approx(own["usage"]["cost_usd"])  # one ledger with /v1/query

    # The same question through /v1/query is a cache hit: one pipeline behind both endpoints.
    with httpx.Client(base_url=server.url, headers=server.auth_headers, timeout=300) as http:
        again = http.post("/v1/query", json={"question": query["question"]}).json()
    assert again["cache"] == "hit" and again["answer"] == choice.message.content


def test_a_streamed_call_ends_with_the_usage_chunk(ready: tuple[LiveServer, dict, dict], sdk: openai.OpenAI) -> None:
    _, query, _ = ready
    question = f"{query['question']} Answer briefly."  # not the cached question: the stream is generated
    stream = sdk.chat.completions.create(
        model="costrag-strong",
        messages=[{"role": "user", "content": question}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert all(c.object == "chat.completion.chunk" and c.id == chunks[0].id for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finals) == 1 and finals[0].choices[0].finish_reason == "stop"
    own = finals[0].model_extra["costrag"]
    assert text.strip() == own["answer"] and own["citations"]
    # The strong profile: one call, to the strong tier, never from the answer cache.
    assert own["cache"] == "miss" and [g["tier"] for g in own["usage"]["generations"]] == ["strong"]
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert last.usage.prompt_tokens == own["usage"]["prompt_tokens"]
    assert last.usage.total_tokens == own["usage"]["prompt_tokens"] + own["usage"]["completion_tokens"]
    assert all(c.usage is None for c in chunks[:-1])


def test_the_stream_on_the_wire_ends_with_done(ready: tuple[LiveServer, dict, dict]) -> None:
    server, query, _ = ready
    body = {"model": "costrag", "messages": [{"role": "user", "content": query["question"]}], "stream": True}
    with httpx.Client(base_url=server.url, headers=server.auth_headers, timeout=300) as http:
        response = http.post("/v1/chat/completions", json=body)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    events = [line.removeprefix("data: ") for line in response.text.split("\n\n") if line]
    assert events[-1] == "data: [DONE]".removeprefix("data: ")
    assert all(json.loads(e)["object"] == "chat.completion.chunk" for e in events[:-1])
    assert "usage" not in json.loads(events[-2])  # not asked for: no usage chunk


def test_max_tokens_cuts_the_answer(ready: tuple[LiveServer, dict, dict], sdk: openai.OpenAI) -> None:
    _, query, _ = ready
    completion = sdk.chat.completions.create(
        model="costrag-strong",
        messages=[{"role": "user", "content": f"Describe in detail: {query['question']}"}],
        max_completion_tokens=2,
    )
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage.completion_tokens <= 2


def test_a_bad_key_is_the_sdks_authentication_error(live_server: LiveServer) -> None:
    client = openai.OpenAI(base_url=f"{live_server.url}/v1", api_key="not-a-key", max_retries=0)
    with client, pytest.raises(openai.AuthenticationError) as raised:
        client.chat.completions.create(model="costrag", messages=[{"role": "user", "content": "Hi?"}])
    assert raised.value.status_code == 401 and raised.value.type == "authentication_error"


@pytest.mark.parametrize(
    ("request_body", "error", "param"),
    [
        ({"model": "gpt-4o"}, openai.NotFoundError, "model"),
        ({"n": 2}, openai.BadRequestError, "n"),
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, openai.BadRequestError, "tools"),
        ({"response_format": {"type": "json_object"}}, openai.BadRequestError, "response_format"),
        ({"messages": [{"role": "assistant", "content": "Hello"}]}, openai.BadRequestError, "messages"),
        ({"messages": []}, openai.BadRequestError, "messages"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
         openai.BadRequestError, "messages"),
        ({"max_tokens": 0}, openai.BadRequestError, "max_tokens"),
    ],
)
def test_what_it_cannot_do_is_refused_as_openai_refuses(
    sdk: openai.OpenAI, request_body: dict, error: type[openai.APIStatusError], param: str
) -> None:
    arguments = {"model": "costrag", "messages": [{"role": "user", "content": "Hi?"}], **request_body}
    with pytest.raises(error) as raised:
        sdk.chat.completions.create(**arguments)
    assert raised.value.body["param"] == param, raised.value.body
    assert raised.value.body["type"] == "invalid_request_error" and raised.value.body["message"]


BANDS = {
    "abba.md": "# ABBA\n\nABBA was a Swedish pop group formed in Stockholm in 1972 by Agnetha Fältskog, Björn "
    "Ulvaeus, Benny Andersson and Anni-Frid Lyngstad. ABBA disbanded in 1982 and reunited in 2021.\n",
    "beatles.md": "# The Beatles\n\nThe Beatles were an English rock band formed in Liverpool in 1960 by John "
    "Lennon, Paul McCartney, George Harrison and Ringo Starr. The Beatles disbanded in 1970.\n",
}


@pytest.fixture(scope="module")
def bands(live_server: LiveServer) -> LiveServer:
    with httpx.Client(base_url=live_server.url, headers=live_server.auth_headers, timeout=300) as http:
        assert upload(http, *((name, text.encode()) for name, text in BANDS.items())).status_code == 201
    return live_server


def test_one_follow_up_in_two_conversations_never_shares_an_answer(bands: LiveServer) -> None:
    """"When did they disband?" is searched as a question about each conversation's band: the second
    asking is not served the first one's answer from the cache."""
    conversations = {
        "ABBA": [{"question": "Who were ABBA?", "answer": "A Swedish pop group formed in Stockholm in 1972."}],
        "The Beatles": [{"question": "Tell me about The Beatles.", "answer": "An English rock band from Liverpool."}],
    }
    with httpx.Client(base_url=bands.url, headers=bands.auth_headers, timeout=300) as http:
        bodies = {
            band: http.post("/v1/query", json={"question": "When did they disband?", "history": history}).json()
            for band, history in conversations.items()
        }
        alone = http.post("/v1/query", json={"question": "When did they disband?"}).json()
    for band, body in bodies.items():
        assert band in body["searched_question"], body["debug"]["conversation"]
        assert body["cache"] == "miss"
        assert body["debug"]["conversation"]["asked"] == "When did they disband?"
        # The rewrite is one more call of the cheap tier, counted in the answer's usage.
        calls = body["usage"]["generations"]
        assert calls[0]["tier"] == "cheap" and len(calls) >= 2
        assert body["usage"]["prompt_tokens"] == sum(c["prompt_tokens"] for c in calls)
        assert body["citations"] and band in body["citations"][0]["title"]
    # Without a history there is nothing to resolve: searched as asked, no rewrite call.
    assert alone["searched_question"] == "When did they disband?" and "conversation" not in alone["debug"]


def test_a_chat_follow_up_is_made_standalone(bands: LiveServer, sdk: openai.OpenAI) -> None:
    completion = sdk.chat.completions.create(
        model="costrag",
        messages=[
            {"role": "system", "content": "Answer briefly."},
            {"role": "user", "content": "Tell me about The Beatles."},
            {"role": "assistant", "content": "An English rock band formed in Liverpool in 1960."},
            {"role": "user", "content": "Where were they formed?"},
        ],
    )
    own = completion.model_extra["costrag"]
    assert "The Beatles" in own["searched_question"] and own["debug"]["conversation"]["reason"]
    assert completion.usage.prompt_tokens == sum(g["prompt_tokens"] for g in own["usage"]["generations"])
