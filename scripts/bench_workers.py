"""Server mode with 1 and 2 workers: upload throughput and /v1/retrieve throughput on loopback.

    .venv/bin/python scripts/bench_workers.py [--workers 1 2] [--documents 200] [--clients 4] [--duration 30]

For each worker count: a fresh PostgreSQL database (a pgserver instance started here, or databases
created on ``--server-url``), `rag db upgrade`, `rag serve --workers N`; then ``--documents`` xquad_en
paragraphs uploaded by ``--clients`` concurrent clients (one document per request), then
``--clients`` clients asking /v1/retrieve with the dataset's questions for ``--duration`` seconds.
Prints one table: uploads/s, retrievals/s, retrieval p50 and p95. An HTTP client only.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parent.parent
DATASETS = REPO.parent / "shared" / "datasets"
RAG = str(Path(sys.executable).with_name("rag"))
KEY = "bench-workers-key"
HEADERS = {"Authorization": f"Bearer {KEY}"}


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _fresh_database(server_url: str) -> str:
    import psycopg

    name = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    if "/postgres?" in server_url:  # pgserver's socket URL
        return server_url.replace("/postgres?", f"/{name}?", 1)
    return f"{server_url.rsplit('/', 1)[0]}/{name}"


def _serve(database_url: str, workers: int, data_dir: Path) -> tuple[subprocess.Popen, str]:
    env = {
        **os.environ,
        "RAG_DATABASE_URL": database_url,
        "RAG_DATA_DIR": str(data_dir),
        "RAG_MODEL_DIR": str(REPO / "data" / "models"),
        "RAG_API_KEYS": json.dumps({"default": KEY}),
        "RAG_WARM_GENERATION": "false",
    }
    subprocess.run([RAG, "db", "upgrade"], env=env, check=True, capture_output=True)
    port = _port()
    log = (data_dir / "serve.log").open("ab")
    process = subprocess.Popen(
        [RAG, "serve", "--port", str(port), "--workers", str(workers)], env=env, stdout=log, stderr=log,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return process, url
        except httpx.HTTPError:
            time.sleep(0.3)
    raise RuntimeError("the service did not start")


def _run_clients(clients: int, work: Callable[[int], None]) -> None:
    threads = [threading.Thread(target=lambda i=i: work(i)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def measure(url: str, paragraphs: list[dict], questions: list[str], clients: int, duration: float) -> dict:
    queue = list(enumerate(paragraphs))
    lock = threading.Lock()

    def upload(_: int) -> None:
        with httpx.Client(base_url=url, headers=HEADERS, timeout=600) as http:
            while True:
                with lock:
                    if not queue:
                        return
                    i, doc = queue.pop()
                body = f"# {doc['title']} {i}\n\n{doc['text']}\n".encode()
                response = http.post("/v1/documents", files=[("files", (f"p{i}.md", body, "text/markdown"))])
                response.raise_for_status()

    started = time.perf_counter()
    _run_clients(clients, upload)
    upload_s = time.perf_counter() - started
    # one retrieval first, so that the workers' first BM25 build after the uploads is not in the window
    httpx.post(f"{url}/v1/retrieve", json={"question": questions[0]}, headers=HEADERS, timeout=600)

    latencies: list[float] = []
    stop_at = time.perf_counter() + duration

    def retrieve(i: int) -> None:
        rng = random.Random(i)
        with httpx.Client(base_url=url, headers=HEADERS, timeout=600) as http:
            while time.perf_counter() < stop_at:
                t = time.perf_counter()
                http.post("/v1/retrieve", json={"question": rng.choice(questions)}).raise_for_status()
                with lock:
                    latencies.append((time.perf_counter() - t) * 1000)

    started = time.perf_counter()
    _run_clients(clients, retrieve)
    window = time.perf_counter() - started
    return {
        "uploads_per_s": round(len(paragraphs) / upload_s, 2),
        "retrievals_per_s": round(len(latencies) / window, 2),
        "retrieve_p50_ms": round(float(np.percentile(latencies, 50)), 1),
        "retrieve_p95_ms": round(float(np.percentile(latencies, 95)), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--documents", type=int, default=200)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--duration", type=float, default=30)
    parser.add_argument("--server-url", default=None, help="a PostgreSQL server's maintenance database URL")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    corpus = _jsonl(DATASETS / "xquad_en" / "corpus.jsonl")
    questions = [q["question"] for q in _jsonl(DATASETS / "xquad_en" / "queries.jsonl")]
    paragraphs = random.Random(args.seed).sample(corpus, min(args.documents, len(corpus)))
    server = None
    server_url = args.server_url
    if server_url is None:
        import pgserver

        directory = tempfile.mkdtemp(prefix="rag-bench-pg-")
        os.chmod(directory, 0o777)
        server = pgserver.get_server(directory, cleanup_mode="delete")
        server_url = server.get_uri()
    rows = []
    try:
        for workers in args.workers:
            with tempfile.TemporaryDirectory(prefix="rag-bench-workers-") as tmp:
                process, url = _serve(_fresh_database(server_url), workers, Path(tmp))
                try:
                    rows.append({"workers": workers, **measure(url, paragraphs, questions, args.clients, args.duration)})
                finally:
                    os.killpg(process.pid, 9)
                    process.wait()
    finally:
        if server is not None:
            server.cleanup()
    print(f"{len(paragraphs)} xquad_en paragraphs, {args.clients} clients, {args.duration:.0f} s of /v1/retrieve")
    print(f"{'workers':>8} {'uploads/s':>10} {'retrievals/s':>13} {'p50 ms':>8} {'p95 ms':>8}")
    for row in rows:
        print(
            f"{row['workers']:>8} {row['uploads_per_s']:>10} {row['retrievals_per_s']:>13} "
            f"{row['retrieve_p50_ms']:>8} {row['retrieve_p95_ms']:>8}"
        )


if __name__ == "__main__":
    main()
