"""Any OpenAI-compatible chat endpoint (hosted, vLLM, llama.cpp's server): a tier can move off this machine."""

from __future__ import annotations

import json
from collections.abc import Generator, Sequence
from typing import Any

import httpx

from rag.errors import UpstreamLLMError
from rag.generation.llm.base import ChatMessage, Generation


class OpenAICompatibleLLM:
    """POSTs to ``{base_url}/chat/completions`` (``base_url`` like ``http://host:port/v1``) at temperature 0."""

    def __init__(self, base_url: str, model: str, api_key: str | None, timeout_s: float = 60.0) -> None:
        self.model = model
        self._timeout_s = timeout_s
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        # One pooled client: reusing connections saves a TLS handshake per request.
        self._client = httpx.Client(base_url=base_url, headers=headers, timeout=timeout_s)

    def warm_up(self) -> None:
        """Nothing to load: an endpoint that is down is reported per request, so start-up does not hinge on it."""

    def generate(self, messages: Sequence[ChatMessage], max_tokens: int) -> Generation:
        body = {
            "model": self.model,
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "temperature": 0,
            "max_tokens": max_tokens,
        }
        try:
            response = self._client.post("/chat/completions", json=body)
            response.raise_for_status()
            return _parse(response.json())
        except httpx.TimeoutException as exc:
            raise UpstreamLLMError(f"{self.model}: no answer within {self._timeout_s}s") from exc
        except httpx.HTTPStatusError as exc:
            raise UpstreamLLMError(
                f"{self.model}: endpoint answered {exc.response.status_code}: {exc.response.text[:200]}"
            ) from exc
        except httpx.HTTPError as exc:
            raise UpstreamLLMError(f"{self.model}: request failed: {exc!r}") from exc
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise UpstreamLLMError(f"{self.model}: malformed response: {exc!r}") from exc

    def stream(self, messages: Sequence[ChatMessage], max_tokens: int) -> Generator[str, None, Generation]:
        """The same request with ``"stream": true``: server-sent events of text deltas."""
        body = {
            "model": self.model,
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "temperature": 0,
            "max_tokens": max_tokens,
            "stream": True,
        }
        pieces: list[str] = []
        finish_reason = "stop"
        try:
            with self._client.stream("POST", "/chat/completions", json=body) as response:
                if response.status_code >= 400:
                    response.read()
                    raise UpstreamLLMError(
                        f"{self.model}: endpoint answered {response.status_code}: {response.text[:200]}"
                    )
                for line in response.iter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[len("data:") :].strip()
                    if data == "[DONE]":
                        break
                    choice = json.loads(data)["choices"][0]
                    piece = (choice.get("delta") or {}).get("content") or ""
                    if piece:
                        pieces.append(piece)
                        yield piece
                    finish_reason = choice.get("finish_reason") or finish_reason
        except httpx.TimeoutException as exc:
            raise UpstreamLLMError(f"{self.model}: no answer within {self._timeout_s}s") from exc
        except httpx.HTTPError as exc:
            raise UpstreamLLMError(f"{self.model}: request failed: {exc!r}") from exc
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise UpstreamLLMError(f"{self.model}: malformed stream: {exc!r}") from exc
        return Generation(text="".join(pieces).strip(), finish_reason=str(finish_reason))

    def close(self) -> None:
        self._client.close()


def _parse(payload: Any) -> Generation:
    choice = payload["choices"][0]
    return Generation(
        text=(choice["message"]["content"] or "").strip(), finish_reason=str(choice["finish_reason"])
    )
