"""A bounded load test on loopback: N concurrent clients mixing uploads and queries for a fixed time.

    .venv/bin/python scripts/load_test.py --start --clients 32 --duration 60
    .venv/bin/python scripts/load_test.py --url http://127.0.0.1:8000 --key rag_... --clients 8

The clock bounds when requests *start*; requests still in flight when it stops finish (up to
``--request-timeout``) and count. Every upload the service acknowledged (2xx, status ``indexed``) is
checked afterwards: listed by ``GET /v1/documents`` with its chunks, and, for a sample, found again by
``POST /v1/retrieve``. Any error, lost or unretrievable upload makes the exit status 1.

With ``--start`` the service runs in a subprocess on a fresh data dir (the embedded default stores),
reusing the assembled models in ``data/models``. If the service prints an API key on its first start
(a line containing "api key"), that key is used; ``--key`` / ``RAG_API_KEY`` take precedence.

This is an HTTP client only: it imports nothing from the service, so it measures what a client sees.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
UPLOAD = "POST /v1/documents"
QUERY = "POST /v1/query"
ROUTES = (UPLOAD, QUERY)
KEY_SHAPE = re.compile(r"[A-Za-z0-9_-]{16,}")  # secrets.token_urlsafe and similar
SERVER_LOG_PATTERN = re.compile(r"error|exception|traceback|locked|timeout|critical", re.IGNORECASE)


# --- the service under test ------------------------------------------------------------------------


def parse_api_key(lines: Iterable[str]) -> str | None:
    """The key from the last line mentioning "api key": its last whitespace-separated token.

    The service shows a key only once, on its first start. Quotes or punctuation around the token are
    presentation; a token that is not a long URL-safe string (say "... no api key configured") is a
    word, not a key.
    """
    key = None
    for line in lines:
        tokens = line.split()
        if "api key" in line.lower() and tokens:
            token = tokens[-1].strip("'\"`.,;:()[]<>")
            if KEY_SHAPE.fullmatch(token):
                key = token
    return key


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """`rag serve` in a subprocess on a fresh data dir; its output goes to a log file we can read."""

    def __init__(self, start_timeout_s: float, keep_data: bool) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = Path(tempfile.mkdtemp(prefix="rag-load-"))
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}.server.log"
        self._start_timeout_s = start_timeout_s
        self._keep_data = keep_data
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {
            **os.environ,
            "RAG_DATA_DIR": str(self.data_dir),
            "RAG_MODEL_DIR": str(REPO / "data" / "models"),  # assembled once; not again per run
            "PYTHONUNBUFFERED": "1",  # so a printed key reaches the log before we look for it
        }
        command = [
            str(REPO / ".venv" / "bin" / "rag"),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
        self._wait_ready()

    def _wait_ready(self) -> None:
        """Uvicorn answers only once the app's start-up (models loaded and warmed) is done, so any
        HTTP answer from /healthz below 500 means ready (a 401, should health ever need a key, too)."""
        assert self._process is not None
        deadline = time.monotonic() + self._start_timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"the service exited with {self._process.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=5).status_code < 500:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError(
            f"the service was not ready after {self._start_timeout_s:.0f} s:\n{self.log_tail()}"
        )

    def log_lines(self) -> list[str]:
        return self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_lines()[-lines:])

    def log_problems(self, limit: int = 200) -> list[str]:
        """Distinct server log lines that look like trouble (4xx/5xx access lines included), counted;
        the client's address is blanked so that repeats of one failure read as one line."""
        problems = Counter(
            re.sub(r"\d+\.\d+\.\d+\.\d+:\d+", "<client>", line)
            for line in self.log_lines()
            if SERVER_LOG_PATTERN.search(line) or re.search(r'" [45]\d\d ', line)
        )
        return [f"{count}x {line}" for line, count in list(problems.items())[:limit]]

    def stop(self) -> None:
        """SIGINT first: uvicorn's graceful shutdown closes the stores; escalate only if it hangs."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGINT)
            try:
                self._process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=30)
        if not self._keep_data:
            shutil.rmtree(self.data_dir, ignore_errors=True)


# --- the workload ----------------------------------------------------------------------------------


def load_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


@dataclass
class Sample:
    route: str
    latency_s: float
    ok: bool


@dataclass
class Ack:
    """An upload the service acknowledged: it must be listed, with chunks, afterwards."""

    id: str
    name: str
    chunks: int
    corpus_id: str
    title: str
    text: str


@dataclass
class Workload:
    """Shared state of all clients (one event loop, so no locks): the corpus cursor, what was
    acknowledged, and every request's outcome."""

    corpus: list[dict[str, Any]]
    queries: list[dict[str, Any]]
    samples: list[Sample] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    acks: list[Ack] = field(default_factory=list)
    answerable: list[dict[str, Any]] = field(default_factory=list)  # queries whose gold doc is uploaded
    in_flight: Counter[str] = field(default_factory=Counter)
    clock_start: float = 0.0
    _cursor: int = 0
    _by_gold: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for query in self.queries:
            for gold in query.get("gold_doc_ids", []):
                self._by_gold.setdefault(gold, []).append(query)

    def next_document(self) -> tuple[str, str, bytes, dict[str, Any]]:
        """A document never sent before: the corpus in order, then again with a round marker so the
        bytes differ (the service treats identical bytes as an idempotent duplicate)."""
        doc = self.corpus[self._cursor % len(self.corpus)]
        round_ = self._cursor // len(self.corpus)
        self._cursor += 1
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", doc["id"]) + (f"-r{round_}" if round_ else "")
        body = f"# {doc['title']}\n\n{doc['text']}\n"
        if round_:
            body += f"\n(load test copy {round_})\n"
        return doc["id"], f"{stem}.md", body.encode("utf-8"), doc

    def question(self, rng: random.Random) -> str:
        """A question whose gold document is already uploaded, so queries hit real content."""
        return rng.choice(self.answerable or self.queries)["question"]

    def acknowledge(self, ack: Ack) -> None:
        self.acks.append(ack)
        self.answerable.extend(self._by_gold.pop(ack.corpus_id, []))

    def elapsed(self) -> float:
        return time.monotonic() - self.clock_start


def _error_message(response: httpx.Response) -> str:
    try:
        error = response.json().get("error", {})
        return f"{error.get('code')}: {error.get('message')}"
    except (ValueError, AttributeError):
        return response.text[:300]


async def upload_once(client: httpx.AsyncClient, work: Workload, record: bool = True) -> bool:
    """One new document; True if it was acknowledged as indexed."""
    corpus_id, name, content, doc = work.next_document()
    return await _timed(
        work,
        UPLOAD,
        record,
        lambda: client.post("/v1/documents", files=[("files", (name, content, "text/markdown"))]),
        lambda body: _check_upload(work, body, corpus_id, doc),
    )


def _check_upload(work: Workload, body: dict[str, Any], corpus_id: str, doc: dict[str, Any]) -> str | None:
    status = body["documents"][0]
    if status["status"] != "indexed" or not status["id"]:
        # A new document must be indexed: "duplicate" or "rejected" inside a 2xx is an anomaly too.
        return f"{status['status']}: {status.get('error')}"
    work.acknowledge(
        Ack(status["id"], status["name"], status["chunks"], corpus_id, doc["title"], doc["text"])
    )
    return None


async def query_once(client: httpx.AsyncClient, work: Workload, rng: random.Random) -> bool:
    question = work.question(rng)
    return await _timed(
        work,
        QUERY,
        True,
        lambda: client.post("/v1/query", json={"question": question}),
        lambda body: None if isinstance(body.get("answer"), str) else "response without an answer",
    )


async def _timed(
    work: Workload,
    route: str,
    record: bool,
    send: Callable[[], Awaitable[httpx.Response]],
    check: Callable[[Any], str | None],
) -> bool:
    """Send, time, classify: any exception, non-2xx or a 2xx whose body fails its check is an error."""
    started = time.monotonic()
    work.in_flight[route] += 1
    status: int | None = None
    problem: str | None
    try:
        response = await send()
        status = response.status_code
        problem = None if response.is_success else _error_message(response)
        if problem is None:
            problem = check(response.json())
    except Exception as exc:  # noqa: BLE001 - every failure is a finding to report, never a crash
        problem = f"{type(exc).__name__}: {exc}"
    finally:
        work.in_flight[route] -= 1
    latency = time.monotonic() - started
    if record:
        work.samples.append(Sample(route, latency, problem is None))
    if problem is not None:
        work.errors.append(
            {
                "route": route,
                "status": status,
                "message": problem,
                "at_s": round(started - work.clock_start, 2),
                "latency_ms": round(latency * 1000, 1),
            }
        )
    return problem is None


async def client_loop(
    client: httpx.AsyncClient, work: Workload, deadline: float, upload_probability: float, seed: int
) -> None:
    rng = random.Random(seed)
    while time.monotonic() < deadline:
        if rng.random() < upload_probability:
            await upload_once(client, work)
        else:
            await query_once(client, work, rng)


def upload_probabilities(mix: str, share: float, clients: int) -> list[float]:
    """Each client's chance of uploading per request. Clients of a random mix soon all wait on slow
    queries (seconds each on CPU, queued behind one another); a fixed mix keeps uploaders uploading."""
    if mix == "random":
        return [share] * clients
    uploaders = round(share * clients)
    return [1.0] * uploaders + [0.0] * (clients - uploaders)


async def progress(work: Workload, every_s: float) -> None:
    while True:
        await asyncio.sleep(every_s)
        done = Counter(s.route for s in work.samples)
        failed = Counter(e["route"] for e in work.errors)
        counts = [
            f"{name} {done[route]} ({failed[route]} err, {work.in_flight[route]} in flight)"
            for name, route in (("uploads", UPLOAD), ("queries", QUERY))
        ]
        print(f"[{work.elapsed():5.0f} s] {'  '.join(counts)}  acknowledged {len(work.acks)}", flush=True)


# --- after the run: nothing lost -------------------------------------------------------------------


def _probe_question(ack: Ack) -> str:
    """The title and the opening of the document's text: a question it should answer best."""
    first = re.split(r"(?<=[.!?])\s", ack.text, maxsplit=1)[0]
    return f"{ack.title}: {' '.join(first.split()[:40])}"


async def verify(client: httpx.AsyncClient, work: Workload, sample: int) -> dict[str, Any]:
    """Every acknowledged id listed with chunks > 0; a spread sample of them found by retrieval."""
    try:
        response = await client.get("/v1/documents")
        listing_error = None if response.is_success else f"{response.status_code} {_error_message(response)}"
    except httpx.HTTPError as exc:
        listing_error = f"{type(exc).__name__}: {exc}"
    if listing_error:  # nothing can be confirmed: every acknowledged upload counts as lost
        why = f"GET /v1/documents: {listing_error}"
        lost = [{"id": a.id, "name": a.name, "why": why} for a in work.acks]
        return {
            "listed_total": 0,
            "lost": lost,
            "chunk_mismatch": [],
            "retrieve_checked": 0,
            "unretrievable": [],
        }
    listed = {d["id"]: d["chunks"] for d in response.json()["documents"]}
    lost = [
        {"id": a.id, "name": a.name, "why": "not listed" if a.id not in listed else "listed with 0 chunks"}
        for a in work.acks
        if listed.get(a.id, 0) <= 0
    ]
    chunk_mismatch = [
        {"id": a.id, "acknowledged": a.chunks, "listed": listed[a.id]}
        for a in work.acks
        if a.id in listed and listed[a.id] != a.chunks
    ]
    step = max(1, len(work.acks) // sample) if sample else 0
    probes = work.acks[::step][:sample] if step else []
    unretrievable = []
    for ack in probes:
        body = {"question": _probe_question(ack), "top_k": 10, "token_budget": 3000}
        response = await client.post("/v1/retrieve", json=body)
        found = response.is_success and ack.id in {p["document_id"] for p in response.json()["passages"]}
        if not found:
            unretrievable.append({"id": ack.id, "name": ack.name, "status": response.status_code})
    return {
        "listed_total": len(listed),
        "lost": lost,
        "chunk_mismatch": chunk_mismatch,
        "retrieve_checked": len(probes),
        "unretrievable": unretrievable,
    }


# --- the report ------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """Nearest rank, the rule of evals.bench.percentile (not imported: this client loads no service code)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def route_stats(samples: list[Sample], wall_s: float) -> dict[str, dict[str, Any]]:
    stats = {}
    for route in ROUTES:
        latencies = [s.latency_s * 1000 for s in samples if s.route == route]
        stats[route] = {
            "n": len(latencies),
            "errors": sum(not s.ok for s in samples if s.route == route),
            "p50_ms": round(percentile(latencies, 50), 1) if latencies else None,
            "p95_ms": round(percentile(latencies, 95), 1) if latencies else None,
            "max_ms": round(max(latencies), 1) if latencies else None,
            "rps": round(len(latencies) / wall_s, 3) if wall_s > 0 else None,
        }
    return stats


def print_report(report: dict[str, Any]) -> None:
    print()
    print(
        f"{report['clients']} clients, {report['duration_s']} s clock, {report['wall_s']} s until the last "
        f"request finished; load average before/after: {report['loadavg_before']} / {report['loadavg_after']}"
    )
    print(f"{'route':22} {'n':>6} {'errors':>7} {'p50 ms':>10} {'p95 ms':>10} {'max ms':>10} {'req/s':>8}")
    for route, s in report["routes"].items():
        cells = [
            f"{s[k]:>10.1f}" if s[k] is not None else f"{'-':>10}" for k in ("p50_ms", "p95_ms", "max_ms")
        ]
        print(f"{route:22} {s['n']:>6} {s['errors']:>7} {' '.join(cells)} {s['rps'] or 0:>8.3f}")
    acknowledged, lost = report["uploads_acknowledged"], report["uploads_lost"]
    checked = report["retrieve_checked"]
    print(
        f"uploads acknowledged {acknowledged} (seed {report['seed_documents']}), listed afterwards "
        f"{acknowledged - lost}, lost {lost}; "
        f"retrievable {checked - len(report['unretrievable'])}/{checked} checked"
    )
    grouped = Counter((e["route"], e["status"], e["message"]) for e in report["errors"])
    if grouped:
        print("errors:")
        for (route, status, message), count in grouped.most_common(20):
            print(f"  {count:4}x {route} {status}: {message}")
    for problem in report["lost"] + report["unretrievable"]:
        print(f"  lost/unretrievable: {problem}")
    if report.get("server_log_problems"):
        print(f"server log ({report['server_log']}), lines that look like trouble:")
        for line in report["server_log_problems"][:30]:
            print(f"  {line}")
    print("PASS" if report["passed"] else "FAIL")


# --- main ------------------------------------------------------------------------------------------


async def run(args: argparse.Namespace, url: str, key: str | None) -> dict[str, Any]:
    corpus = load_jsonl(args.corpus / "corpus.jsonl")
    random.Random(args.seed).shuffle(corpus)  # topics mixed, not one article's paragraphs in a row
    work = Workload(corpus, load_jsonl(args.corpus / "queries.jsonl"))
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    limits = httpx.Limits(max_connections=args.clients + 4, max_keepalive_connections=args.clients + 4)
    timeout = httpx.Timeout(args.request_timeout, connect=30)
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=timeout) as client:
        work.clock_start = time.monotonic()
        for _ in range(args.seed_docs):  # before the clock: something for the first queries to find
            await upload_once(client, work, record=False)
        seeded = len(work.acks)
        print(
            f"seeded {seeded}/{args.seed_docs} documents; {args.clients} clients for {args.duration} s",
            flush=True,
        )

        loadavg_before = round(os.getloadavg()[0], 2)
        work.samples.clear()
        work.clock_start = time.monotonic()
        deadline = work.clock_start + args.duration
        ticker = asyncio.create_task(progress(work, args.progress_every))
        await asyncio.gather(
            *(
                client_loop(client, work, deadline, p, args.seed + 1 + i)
                for i, p in enumerate(upload_probabilities(args.mix, args.upload_share, args.clients))
            )
        )
        wall_s = work.elapsed()
        ticker.cancel()
        print(f"all clients done after {wall_s:.1f} s; verifying uploads", flush=True)
        loadavg_after = round(os.getloadavg()[0], 2)
        checks = await verify(client, work, args.verify_sample)

    return {
        "url": url,
        "clients": args.clients,
        "duration_s": args.duration,
        "wall_s": round(wall_s, 1),
        "upload_share": args.upload_share,
        "mix": args.mix,
        "corpus": str(args.corpus),
        "auth": bool(key),
        "loadavg_before": loadavg_before,
        "loadavg_after": loadavg_after,
        "routes": route_stats(work.samples, wall_s),
        "errors": work.errors,
        "seed_documents": seeded,
        "uploads_acknowledged": len(work.acks),
        "uploads_lost": len(checks["lost"]),
        "lost": checks["lost"],
        "chunk_mismatch": checks["chunk_mismatch"],
        "listed_total": checks["listed_total"],
        "retrieve_checked": checks["retrieve_checked"],
        "unretrievable": checks["unretrievable"],
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--url", help="a running service, e.g. http://127.0.0.1:8000")
    target.add_argument(
        "--start", action="store_true", help="start `rag serve` on a fresh data dir and stop it after"
    )
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--duration", type=float, default=60, help="seconds during which requests start")
    parser.add_argument(
        "--upload-share",
        type=float,
        default=0.3,
        help="share of requests (or, with --mix fixed, of clients) uploading",
    )
    parser.add_argument(
        "--mix",
        choices=("random", "fixed"),
        default="fixed",
        help="random: every client picks each request by --upload-share; fixed: that share of the clients "
        "only uploads and the rest only query, so uploads keep coming while slow queries queue up",
    )
    parser.add_argument("--corpus", type=Path, default=REPO.parent / "shared" / "datasets" / "xquad_en")
    parser.add_argument(
        "--key", default=os.environ.get("RAG_API_KEY"), help="API key (default: $RAG_API_KEY)"
    )
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "results" / "load.json")
    parser.add_argument("--seed-docs", type=int, default=8, help="documents uploaded before the clock starts")
    parser.add_argument(
        "--verify-sample", type=int, default=20, help="acknowledged documents probed by retrieval"
    )
    parser.add_argument("--request-timeout", type=float, default=600)
    parser.add_argument("--start-timeout", type=float, default=600)
    parser.add_argument("--progress-every", type=float, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep-data", action="store_true", help="with --start: keep the temporary data dir")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Exit status: 0 all good, 1 errors or lost uploads (the report says which), 2 no service."""
    args = parse_args(argv)
    server = ServerProcess(args.start_timeout, args.keep_data) if args.start else None
    try:
        if server is not None:
            print(f"starting the service on {server.url} (data dir {server.data_dir}, log {server.log_path})")
            started = time.monotonic()
            try:
                server.start()
            except RuntimeError as exc:
                print(exc, file=sys.stderr)
                return 2
            print(f"ready after {time.monotonic() - started:.1f} s", flush=True)
        key = args.key or (parse_api_key(server.log_lines()) if server else None)
        print(f"API key: {'given' if args.key else 'from the server log' if key else 'none'}", flush=True)
        report = asyncio.run(run(args, server.url if server else args.url, key))
    finally:
        if server is not None:
            server.stop()
    if server is not None:
        report["server_log"] = str(server.log_path)
        report["server_log_problems"] = server.log_problems()
    report["passed"] = not report["errors"] and not report["lost"] and not report["unretrievable"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print_report(report)
    print(f"written {args.out}")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
