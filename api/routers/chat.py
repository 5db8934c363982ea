"""/v1/chat/completions and /v1/models: OpenAI's chat protocol over the same pipeline as /v1/query.

An adapter, not a second pipeline: the conversation's last user message is the question and the
messages before it its history (a follow-up is made standalone as on /v1/query), a model name picks a
service profile, and the answer, its usage and its citations are the ones /v1/query gives.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from functools import partial
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from api.chat_schemas import (
    AssistantMessage,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatMessageIn,
    ChatUsage,
    Choice,
    ChunkChoice,
    Delta,
    ModelList,
    ModelOut,
)
from api.deps import get_service, get_tenant, rate_limited, request_deadline
from api.errors import OPENAI_TAG, error_body
from api.schemas import ErrorResponse, QueryResponse
from api.streaming import CLIENT_CLOSED_REQUEST, SSE_HEADERS, answer_unless_gone, pieces
from rag.errors import InvalidRequest, RagError, UnknownModel
from rag.pipeline import QueryPipeline
from rag.service import Service
from rag.types import Answer, Turn

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1", tags=[OPENAI_TAG])

# The profiles a client picks by model name.
MODELS = {
    "costrag": "the default: cheap tier first, the strong tier when the check doubts the answer; answer cache on",
    "costrag-strong": "the strong tier on every question, same retrieval; no answer cache",
}
_ERRORS = {
    400: {"model": ErrorResponse, "description": "a request this endpoint cannot take (OpenAI's error shape)"},
    401: {"model": ErrorResponse, "description": "no API key, or an unknown one"},
    404: {"model": ErrorResponse, "description": "no such model"},
    429: {"model": ErrorResponse, "description": "a rate limit is reached, or the tenant's daily budget is spent"},
}


def _pipeline(service: Service, model: str) -> QueryPipeline:
    if model == "costrag":
        return service.pipeline
    if model == "costrag-strong":
        return service.strong_pipeline
    raise UnknownModel(f"The model '{model}' does not exist; GET /v1/models lists {', '.join(MODELS)}", "model")


def _text(message: ChatMessageIn) -> str:
    if isinstance(message.content, str):
        return message.content
    parts = message.content or []
    other = sorted({part.type for part in parts if part.type != "text"})
    if other:
        raise InvalidRequest(f"only text content is supported, not {', '.join(other)}", "messages")
    return "\n".join(part.text or "" for part in parts)


def _history(messages: list[ChatMessageIn]) -> tuple[Turn, ...]:
    """The conversation before the question as turns: each user message with the assistant's reply to it
    (system, developer and tool messages say nothing about what the question refers to)."""
    turns: list[Turn] = []
    asked: str | None = None
    for message in messages:
        if message.role == "user":
            if asked is not None:
                turns.append(Turn(asked, ""))
            asked = _text(message)
        elif message.role == "assistant" and asked is not None:
            turns.append(Turn(asked, _text(message)))
            asked = None
    if asked is not None:
        turns.append(Turn(asked, ""))
    return tuple(turns)


def _question(request: ChatCompletionRequest) -> str:
    """The last message, which must be the user's. Options this service cannot honour are refused rather
    than silently dropped: a client relying on them would otherwise get something it did not ask for."""
    if request.n not in (None, 1):
        raise InvalidRequest("n must be 1: one answer per question", "n")
    if request.tools or request.functions:
        raise InvalidRequest("tools are not supported: answers come from your documents", "tools")
    if request.response_format and request.response_format.get("type", "text") != "text":
        raise InvalidRequest("only text responses are supported", "response_format")
    if request.logprobs:
        raise InvalidRequest("logprobs are not returned", "logprobs")
    last = request.messages[-1]
    if last.role != "user":
        raise InvalidRequest("the last message must be the user's question", "messages")
    return _text(last)


def _usage(answer: Answer) -> ChatUsage:
    usage = answer.usage
    return ChatUsage(
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        total_tokens=usage.prompt_tokens + usage.completion_tokens,
    )


def _finish(answer: Answer) -> str:
    return "length" if answer.finish_reason == "length" else "stop"


@router.get("/models", response_model=ModelList)
def models(_tenant: Annotated[str, Depends(get_tenant)]) -> ModelList:
    return ModelList(data=[ModelOut(id=name, description=text) for name, text in MODELS.items()])


@router.post(
    "/chat/completions",
    response_model=ChatCompletion,
    responses={200: {"content": {"text/event-stream": {}}, "description": "JSON, or chunks with stream"}, **_ERRORS},
    dependencies=[Depends(rate_limited("query"))],
)
async def chat_completions(
    request: ChatCompletionRequest,
    http: Request,
    service: Annotated[Service, Depends(get_service)],
    tenant: Annotated[str, Depends(get_tenant)],
    deadline: Annotated[float, Depends(request_deadline)],
) -> ChatCompletion | StreamingResponse | Response:
    """An OpenAI chat completion answering the conversation's last question from the tenant's documents.
    ``max_completion_tokens`` (or ``max_tokens``) lowers the answer's token limit, never past the service's."""
    pipeline = _pipeline(service, request.model)
    question = _question(request)
    history = _history(request.messages[:-1])
    limit = request.max_completion_tokens or request.max_tokens
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    created = int(time.time())
    # Validation, the budget check, the cache and admission run here, before any response starts: a refusal
    # is a plain JSON error, streamed or not.
    events = await run_in_threadpool(
        partial(pipeline.answer_stream, question, tenant, max_answer_tokens=limit, history=history, deadline=deadline)
    )
    if request.stream:
        include_usage = bool(request.stream_options and request.stream_options.include_usage)
        chunks = _chunks(events, completion_id, created, request.model, include_usage)
        return StreamingResponse(chunks, media_type="text/event-stream", headers=SSE_HEADERS)
    answer = await answer_unless_gone(http, events)
    if answer is None:  # the client left: generation stopped, what it spent is counted
        return Response(status_code=CLIENT_CLOSED_REQUEST)
    return ChatCompletion(
        id=completion_id,
        created=created,
        model=request.model,
        choices=[Choice(message=AssistantMessage(content=answer.answer), finish_reason=_finish(answer))],
        usage=_usage(answer),
        costrag=QueryResponse.of(answer),
    )


async def _chunks(
    events: Iterator[str | Answer], completion_id: str, created: int, model: str, include_usage: bool
) -> AsyncIterator[str]:
    """OpenAI's stream: a first chunk with the role, one per piece of text, a last one with the finish
    reason (and this service's answer), then, if asked, one with the usage and no choices; then [DONE]."""

    def chunk(
        choices: list[ChunkChoice], usage: ChatUsage | None = None, costrag: QueryResponse | None = None
    ) -> str:
        body = ChatCompletionChunk(
            id=completion_id, created=created, model=model, choices=choices, usage=usage, costrag=costrag
        )
        absent = {name for name in ("usage", "costrag") if getattr(body, name) is None}  # only where carried
        return f"data: {body.model_dump_json(exclude=absent)}\n\n"

    yield chunk([ChunkChoice(delta=Delta(role="assistant", content=""))])
    try:
        async for item in pieces(events):
            if isinstance(item, Answer):
                yield chunk([ChunkChoice(delta=Delta(), finish_reason=_finish(item))], costrag=QueryResponse.of(item))
                if include_usage:
                    yield chunk([], usage=_usage(item))
            else:
                yield chunk([ChunkChoice(delta=Delta(content=item))])
    except RagError as exc:  # OpenAI's stream reports an error as a data event holding its error body
        yield f"data: {json.dumps(error_body(exc.status_code, exc.code, exc.message, exc.param))}\n\n"
        return
    except Exception:
        log.exception("chat stream failed")
        yield f"data: {json.dumps(error_body(500, 'internal_error', 'internal error; see the server log'))}\n\n"
        return
    yield "data: [DONE]\n\n"
