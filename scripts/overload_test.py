"""Two tenants, one flooding: what overload control gives each of them (issue 22's benchmark).

    .venv/bin/python scripts/overload_test.py --duration 120 --flood-clients 24 --calm-clients 2

Starts the service on a fresh data dir (the embedded default), with an API key for tenant ``flood`` and one
for tenant ``calm``; both upload the same documents (tenants are isolated). First the calm tenant asks
alone, one question at a time: its single-client latencies. Then for ``--duration`` seconds the flood
tenant's clients and the calm tenant's clients ask questions of those documents, each client one at a
time; a refused client (429, 503) waits what Retry-After says, and a share of the flood's clients give up
after ``--patience`` seconds (telling the service so in X-Request-Timeout). Reported per tenant: admitted,
refused by reason, left early, p50/p95 of admitted questions (and of those a model answered, cache hits
aside), against the single-client p95 of the same run; any status other than 200/429/503, a refusal
without Retry-After, or an acknowledged upload missing afterwards is an error. The counters the service
kept come last: refusals by reason (``deadline``: dropped from the queue before any model call) and
``aborted`` answers (generation stopped when their client left).

An HTTP client only, like scripts/load_test.py, whose service runner it reuses.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load_test import REPO, ServerProcess, load_jsonl, percentile

ACCEPTED = {200, 429, 503}
LEFT = 0  # the status of a question whose client gave up before the answer


@dataclass
class Sample:
    tenant: str
    phase: str  # "alone" or "flood"
    status: int
    latency_s: float
    code: str | None = None  # the error code of a refusal
    retry_after: str | None = None
    cache: str | None = None  # "hit" / "miss" for an answer


def create_key(data_dir: Path, tenant: str) -> str:
    """A key made as an operator makes one, before the service starts (the data dir is then unlocked)."""
    env = {**os.environ, "RAG_DATA_DIR": str(data_dir), "RAG_MODEL_DIR": str(REPO / "data" / "models")}
    done = subprocess.run(
        [str(REPO / ".venv" / "bin" / "rag"), "keys", "create", "--tenant", tenant],
        env=env, capture_output=True, text=True, check=True, cwd=REPO,
    )
    return done.stdout.strip().splitlines()[-1]


async def ask(
    client: httpx.AsyncClient, tenant: str, phase: str, question: str, patience: float | None = None
) -> Sample:
    """One question; with ``patience`` the client gives up after that many seconds (and says so in
    X-Request-Timeout, so that the service can drop it from the queue)."""
    started = time.perf_counter()
    headers = {"X-Request-Timeout": str(patience)} if patience else {}
    try:
        response = await client.post("/v1/query", json={"question": question}, headers=headers, timeout=patience)
    except httpx.TimeoutException:
        return Sample(tenant, phase, LEFT, time.perf_counter() - started)
    latency = time.perf_counter() - started
    body: dict[str, Any] = {}
    try:
        body = response.json()
    except ValueError:
        pass
    error = body.get("error") or {}
    return Sample(
        tenant, phase, response.status_code, latency, error.get("code"),
        response.headers.get("retry-after"), body.get("cache"),
    )


async def client_loop(
    client: httpx.AsyncClient, tenant: str, questions: list[str], rng: random.Random, stop_at: float,
    samples: list[Sample], patience: float | None = None,
) -> None:
    while time.monotonic() < stop_at:
        sample = await ask(client, tenant, "flood", rng.choice(questions), patience)
        samples.append(sample)
        if sample.status in (429, 503):
            wait = float(sample.retry_after) if sample.retry_after else 1.0
            await asyncio.sleep(min(wait, max(0.0, stop_at - time.monotonic())))


def summary(samples: list[Sample]) -> dict[str, Any]:
    answered = [s.latency_s for s in samples if s.status == 200]
    generated = [s.latency_s for s in samples if s.status == 200 and s.cache != "hit"]
    return {
        "requests": len(samples),
        "admitted": len(answered),
        "cache_hits": sum(s.cache == "hit" for s in samples),
        "refused": dict(Counter(s.code or str(s.status) for s in samples if s.status in (429, 503))),
        "p50_s": round(percentile(answered, 50), 2) if answered else None,
        "p95_s": round(percentile(answered, 95), 2) if answered else None,
        "p95_generated_s": round(percentile(generated, 95), 2) if generated else None,
        "max_s": round(max(answered), 2) if answered else None,
        "left_early": sum(s.status == LEFT for s in samples),
        "unexpected": sum(s.status not in ACCEPTED | {LEFT} for s in samples),
        "refused_without_retry_after": sum(s.status in (429, 503) and not s.retry_after for s in samples),
    }


async def run(args: argparse.Namespace, server: ServerProcess, keys: dict[str, str]) -> dict[str, Any]:
    rng = random.Random(args.seed)
    corpus = {d["id"]: d for d in load_jsonl(args.corpus / "corpus.jsonl")}
    queries = load_jsonl(args.corpus / "queries.jsonl")
    documents = rng.sample(sorted(corpus), args.documents)
    chosen = set(documents)
    questions = [q["question"] for q in queries if chosen & set(q["gold_doc_ids"])]
    rng.shuffle(questions)
    alone, rest = questions[: args.alone_questions], questions[args.alone_questions :]
    timeout = httpx.Timeout(args.request_timeout)
    clients = {
        tenant: httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=timeout)
        for tenant, key in keys.items()
    }
    try:
        for tenant, client in clients.items():  # both tenants hold the same documents
            for doc_id in documents:
                doc = corpus[doc_id]
                files = [("files", (f"{doc_id.replace('#', '_')}.md", f"# {doc['title']}\n\n{doc['text']}\n".encode()))]
                response = await client.post("/v1/documents", files=files)
                while response.status_code == 429:  # the upload rate limit: wait as told, then again
                    await asyncio.sleep(float(response.headers.get("retry-after", "1")))
                    response = await client.post("/v1/documents", files=files)
                response.raise_for_status()
            print(f"{tenant}: {len(documents)} documents uploaded", file=sys.stderr)
        samples: list[Sample] = []
        for question in alone:  # the calm tenant alone: its single-client latency in this run
            samples.append(await ask(clients["calm"], "calm", "alone", question))
        single = [s.latency_s for s in samples if s.phase == "alone" and s.status == 200]
        print(f"alone: p95 {percentile(single, 95):.2f} s over {len(single)} questions", file=sys.stderr)
        stop_at = time.monotonic() + args.duration
        impatient = round(args.impatient_share * args.flood_clients)
        loops = [
            client_loop(
                clients[tenant], tenant, rest, random.Random(f"{args.seed}-{tenant}-{i}"), stop_at, samples,
                args.patience if tenant == "flood" and i < impatient else None,
            )
            for tenant, count in (("flood", args.flood_clients), ("calm", args.calm_clients))
            for i in range(count)
        ]
        started = time.monotonic()
        await asyncio.gather(*loops)
        wall = time.monotonic() - started
        await asyncio.sleep(args.patience or 0)  # let the service finish with questions their clients left
        usage = {tenant: (await client.get("/v1/usage")).json()["total"] for tenant, client in clients.items()}
        listed = {
            tenant: len((await client.get("/v1/documents")).json()["documents"]) for tenant, client in clients.items()
        }
        metrics = (await clients["calm"].get("/metrics")).text
    finally:
        for client in clients.values():
            await client.aclose()
    flood = [s for s in samples if s.phase == "flood"]
    single_p95 = percentile(single, 95)
    tenants = {tenant: summary([s for s in flood if s.tenant == tenant]) for tenant in keys}
    for stats in tenants.values():
        stats["p95_over_single_p95"] = round(stats["p95_s"] / single_p95, 2) if stats["p95_s"] else None
    return {
        "settings": {k: str(v) for k, v in vars(args).items()},
        "single_client": {"questions": len(single), "p50_s": round(percentile(single, 50), 2), "p95_s": round(single_p95, 2)},
        "flood_wall_s": round(wall, 1),
        "tenants": tenants,
        "service_counters": {
            tenant: {"queries": u["queries"], "rejected": u["rejected"], "aborted": u["aborted"]}
            for tenant, u in usage.items()
        },
        "uploads": {"acknowledged_per_tenant": len(documents), "listed_after": listed},
        "gate_metrics": [line for line in metrics.splitlines() if line.startswith("rag_generation_")],
        "samples": [asdict(s) for s in samples],
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=120, help="seconds of flood")
    parser.add_argument("--flood-clients", type=int, default=24)
    parser.add_argument("--calm-clients", type=int, default=2)
    parser.add_argument("--documents", type=int, default=40, help="documents each tenant uploads")
    parser.add_argument("--alone-questions", type=int, default=10, help="asked by the calm tenant alone first")
    parser.add_argument(
        "--impatient-share", type=float, default=0.25, help="share of the flood's clients that give up after --patience"
    )
    parser.add_argument("--patience", type=float, default=15.0, help="seconds an impatient client waits")
    parser.add_argument("--corpus", type=Path, default=REPO.parent / "shared" / "datasets" / "xquad_en")
    parser.add_argument("--request-timeout", type=float, default=600)
    parser.add_argument("--start-timeout", type=float, default=600)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "results" / "overload.json")
    parser.add_argument("--keep-data", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    server = ServerProcess(args.start_timeout, args.keep_data)
    keys = {tenant: create_key(server.data_dir, tenant) for tenant in ("flood", "calm")}
    server.start()
    try:
        report = asyncio.run(run(args, server, keys))
    finally:
        server.stop()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    shown = {k: v for k, v in report.items() if k != "samples"}
    print(json.dumps(shown, indent=1))
    bad = sum(t["unexpected"] + t["refused_without_retry_after"] for t in report["tenants"].values())
    bad += sum(n != report["uploads"]["acknowledged_per_tenant"] for n in report["uploads"]["listed_after"].values())
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
