"""Micro-batching on loopback: the service with batching off, then on, each in its own process; one
client alone, then N concurrent clients (a bounded number of requests each) on ``POST /v1/retrieve``
(query embedding, the batched model, then rerank).

    .venv/bin/python scripts/bench_batching.py --data-dir data/eval/scifact-50e359b9afae \\
        --dataset ../shared/datasets/scifact --clients 16 --requests 12

The data dir must hold an indexed corpus (``rag eval retrieval`` builds one) and no running service.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from evals.bench import percentile
from rag.keys import bearer_headers

# The served process gets this key by configuration; nothing is written to the data dir's key store.
BENCH_KEY = "bench-batching-key"


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(data_dir: Path, batching: bool, port: int) -> subprocess.Popen:
    env = {
        **os.environ,
        "RAG_DATA_DIR": str(data_dir),
        "RAG_MODEL_DIR": str(REPO / "data" / "models"),
        "RAG_BATCHING": "true" if batching else "false",
        "RAG_CACHE_ENABLED": "false",
        "RAG_API_KEYS": json.dumps({"default": BENCH_KEY}),
    }
    process = subprocess.Popen(
        [str(REPO / ".venv" / "bin" / "rag"), "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        if process.poll() is not None:
            raise RuntimeError(process.stderr.read().decode()[-2000:])
        time.sleep(0.5)
    process.kill()
    raise RuntimeError("the service did not start within 300 s")


def ask(client: httpx.Client, question: str) -> float:
    started = time.perf_counter()
    response = client.post("/v1/retrieve", json={"question": question})
    response.raise_for_status()
    return (time.perf_counter() - started) * 1000


def measure(url: str, questions: list[str], clients: int, per_client: int) -> dict:
    with httpx.Client(base_url=url, timeout=120, headers=bearer_headers(BENCH_KEY)) as client:
        for q in questions[:3]:
            ask(client, q)  # warm
        single = [ask(client, q) for q in questions[: max(30, per_client)]]

    def worker(index: int) -> list[float]:
        own = questions[index * per_client : (index + 1) * per_client]
        with httpx.Client(base_url=url, timeout=120, headers=bearer_headers(BENCH_KEY)) as client:
            return [ask(client, q) for q in own]

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        latencies = [ms for result in pool.map(worker, range(clients)) for ms in result]
    elapsed = time.perf_counter() - started
    return {
        "single_p50_ms": percentile(single, 50),
        "single_p95_ms": percentile(single, 95),
        "requests": len(latencies),
        "throughput_rps": len(latencies) / elapsed,
        "concurrent_p50_ms": percentile(latencies, 50),
        "concurrent_p95_ms": percentile(latencies, 95),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--dataset", type=Path, required=True)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=12, help="requests per client")
    args = parser.parse_args()
    lines = (args.dataset / "queries.jsonl").read_text().splitlines()
    questions = [json.loads(line)["question"] for line in lines if line.strip()]
    needed = args.clients * args.requests
    questions = (questions * (needed // len(questions) + 1))[:needed]
    results = {}
    for batching in (False, True):
        port = free_port()
        process = start(args.data_dir.resolve(), batching, port)
        try:
            results["on" if batching else "off"] = measure(f"http://127.0.0.1:{port}", questions, args.clients, args.requests)
        finally:
            process.terminate()
            process.wait(timeout=60)
    print(f"{args.clients} clients x {args.requests} requests on /v1/retrieve ({args.dataset.name})")
    print(f"{'batching':>9} {'1 client p50':>13} {'1 client p95':>13} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8}")
    for mode, r in results.items():
        print(
            f"{mode:>9} {r['single_p50_ms']:13.1f} {r['single_p95_ms']:13.1f} {r['throughput_rps']:8.2f} "
            f"{r['concurrent_p50_ms']:8.1f} {r['concurrent_p95_ms']:8.1f}"
        )
    on, off = results["on"], results["off"]
    print(
        f"throughput on/off: {on['throughput_rps'] / off['throughput_rps']:.2f}x; concurrent p95 with batching "
        f"/ single-client p95 without: {on['concurrent_p95_ms'] / off['single_p95_ms']:.2f}x"
    )
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
