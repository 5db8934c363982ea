"""The `rag` command line: the same code as the HTTP service, in-process or against a running one (--url)."""

from __future__ import annotations

import json
import mimetypes
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from tqdm import tqdm

from evals.tune.space import POLICIES
from indexing.indexer import IngestOutcome, Upload
from indexing.loaders import MEDIA_TYPES
from rag.database.pool import redact
from rag.errors import RagError
from rag.keys import KeyStore, bearer_headers, ensure_first_key, open_key_store
from rag.settings import Settings, get_settings
from rag.types import DEFAULT_TENANT

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)

UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url",
        envvar="RAG_URL",
        help="send the command to a running service, e.g. http://127.0.0.1:8000, with the key in RAG_API_KEY",
    ),
]
TenantOption = Annotated[
    str, typer.Option(help="act for this tenant (in-process only; over --url the API key decides)")
]


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=1)


@contextmanager
def _service(settings: Settings, generation: bool) -> Iterator[object]:
    from rag.service import Service

    service = Service.open(settings)
    try:
        service.warm_up(generation=generation)
        yield service
    finally:
        service.close()


def _http(url: str, method: str, path: str, **kwargs: object) -> dict:
    import httpx

    try:
        response = httpx.request(method, url.rstrip("/") + path, timeout=600, headers=bearer_headers(), **kwargs)
    except httpx.HTTPError as exc:
        _fail(f"cannot reach {url}: {exc}")
    body = response.json()
    if response.status_code >= 400:
        _fail(body.get("error", {}).get("message", response.text))
    return body


def _files(paths: list[Path]) -> list[Path]:
    """The supported files named, with directories walked recursively, in a stable order."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in MEDIA_TYPES)
        elif path.is_file():
            found.append(path)
        else:
            _fail(f"{path}: no such file or directory")
    return found


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="interface to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8000,
    workers: Annotated[
        int, typer.Option(min=1, help="worker processes; more than one needs server mode (RAG_DATABASE_URL)")
    ] = 1,
) -> None:
    """Start the HTTP service (web page at /, OpenAPI page at /docs)."""
    import uvicorn

    from api.app import create_app

    settings = get_settings()
    if workers > 1 and not settings.database_url:
        _fail(
            f"--workers {workers} needs server mode: the embedded data dir is owned by one process. "
            "Set RAG_DATABASE_URL to a PostgreSQL database (then `rag db upgrade`), or run one worker"
        )
    stores = (
        f"database: {redact(settings.database_url)}"
        if settings.database_url
        else f"data dir: {settings.data_dir}"
    )
    dense = settings.qdrant_url or ("pgvector" if settings.database_url else "embedded (qdrant-edge)")
    typer.echo(f"{stores}; dense store: {dense}; workers: {workers}")
    if settings.auth == "off":
        typer.secho("auth is off (development mode): every caller is the default tenant", fg=typer.colors.YELLOW)
    else:
        store = open_key_store(settings.data_dir, settings.database_url)
        first = ensure_first_key(store, settings.api_keys, DEFAULT_TENANT)
        store.close()
        if first:
            typer.echo(f"first start: created the api key of tenant '{DEFAULT_TENANT}' (shown once): {first}")
    typer.echo(f"web page: http://{host}:{port}/ (the API under /v1, its OpenAPI page at /docs)")
    if workers == 1:
        uvicorn.run(create_app(settings), host=host, port=port, log_level="info")
    else:  # each worker process builds the app from the same environment
        uvicorn.run("api.app:create_app", factory=True, workers=workers, host=host, port=port, log_level="info")


def _print_outcome(outcome: IngestOutcome) -> None:
    detail = outcome.error.message if outcome.error else f"{outcome.document.chunk_count} chunks"
    tqdm.write(f"{outcome.status:9} {outcome.document.id if outcome.document else '-':36} {detail}")


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="files or directories")],
    url: UrlOption = None,
    tenant: TenantOption = DEFAULT_TENANT,
) -> None:
    """Index documents (PDF, HTML, DOCX, Markdown, text), with a progress bar."""
    files = _files(paths)
    if not files:
        _fail("no supported files found")
    rejected = 0
    with tqdm(total=len(files), unit="doc", desc="ingest") as bar:
        if url:
            for path in files:
                mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
                with path.open("rb") as handle:
                    body = _http(url, "POST", "/v1/documents", files=[("files", (path.name, handle, mime))])
                for doc in body["documents"]:
                    tqdm.write(f"{doc['status']:9} {doc['id'] or '-':36} {doc['error'] or doc['chunks']}")
                bar.update(1)
        else:
            def on_done(outcome: IngestOutcome) -> None:
                nonlocal rejected
                rejected += outcome.status == "rejected"
                _print_outcome(outcome)
                bar.update(1)

            with _service(get_settings(), generation=False) as service:
                uploads = (Upload(str(path), path.read_bytes()) for path in files)
                service.indexer.add_many(uploads, tenant, on_done=on_done)
    if rejected:
        raise typer.Exit(code=2)


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="the question")],
    as_json: Annotated[bool, typer.Option("--json", help="print the full response as JSON")] = False,
    top_k: Annotated[int | None, typer.Option(help="passages to retrieve")] = None,
    token_budget: Annotated[int | None, typer.Option(help="context tokens at most")] = None,
    session: Annotated[
        Path | None,
        typer.Option(help="a conversation kept in this JSON file: its turns are the history, this one is added"),
    ] = None,
    url: UrlOption = None,
    tenant: TenantOption = DEFAULT_TENANT,
) -> None:
    """Answer a question from the indexed documents, with citations and usage."""
    history = _read_session(session) if session else []
    if url:
        request = {"question": question, "top_k": top_k, "token_budget": token_budget, "history": history}
        body = _http(url, "POST", "/v1/query", json=request)
    else:
        from api.schemas import QueryResponse
        from rag.types import Turn

        turns = tuple(Turn(t["question"], t["answer"]) for t in history)
        with _service(get_settings(), generation=True) as service:
            answer = service.pipeline.answer(question, tenant, top_k, token_budget, history=turns)
        body = QueryResponse.of(answer).model_dump()
    if session:
        history.append({"question": question, "answer": body["answer"]})
        session.write_text(json.dumps(history, ensure_ascii=False, indent=1))
    if as_json:
        typer.echo(json.dumps(body, ensure_ascii=False, indent=2))
        return
    if body.get("searched_question") not in (None, question):
        typer.echo(f"(searched: {body['searched_question']})")
    typer.echo(body["answer"])
    for n, citation in enumerate(body["citations"], start=1):
        typer.echo(f"  [{n}] {citation['title']} ({citation['document_id']}): {citation['text'][:200]}")
    usage = body["usage"]
    typer.echo(
        f"  {usage['prompt_tokens']}+{usage['completion_tokens']} tokens, {usage['model']} ({usage['tier']}), "
        f"${usage['cost_usd']:.6f}, {body['latency_ms']:.0f} ms"
    )


def _read_session(path: Path) -> list[dict[str, str]]:
    """The turns saved in a session file (none yet when it does not exist)."""
    if not path.exists():
        return []
    try:
        turns = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(turns, list) or not all(isinstance(t, dict) and {"question", "answer"} <= t.keys() for t in turns):
            raise ValueError("not a list of {question, answer}")
    except ValueError as exc:
        _fail(f"{path}: not a session file ({exc})")
    return turns


@app.command()
def docs(
    as_json: Annotated[bool, typer.Option("--json", help="print as JSON")] = False,
    url: UrlOption = None,
    tenant: TenantOption = DEFAULT_TENANT,
) -> None:
    """List the indexed documents."""
    if url:
        documents = _http(url, "GET", "/v1/documents")["documents"]
    else:
        from api.schemas import DocumentOut

        with _service(get_settings(), generation=False) as service:
            documents = [DocumentOut.of(r).model_dump() for r in service.registry.list(tenant)]
    if as_json:
        typer.echo(json.dumps(documents, ensure_ascii=False, indent=2))
        return
    for doc in documents:
        typer.echo(f"{doc['id']}  {doc['chunks']:5} chunks  {doc['size_bytes']:9} B  {doc['created_at']}  {doc['name']}")
    typer.echo(f"{len(documents)} documents", err=True)


@app.command()
def delete(
    document_id: Annotated[str, typer.Argument(help="the document's id")],
    url: UrlOption = None,
    tenant: TenantOption = DEFAULT_TENANT,
) -> None:
    """Delete a document from every store."""
    if url:
        _http(url, "DELETE", f"/v1/documents/{document_id}")
    else:
        with _service(get_settings(), generation=False) as service:
            if not service.indexer.delete(tenant, document_id):
                _fail(f"no document {document_id}")
    typer.echo(f"deleted {document_id}")


@app.command()
def check(
    repair: Annotated[bool, typer.Option("--repair", help="mend what differs, then check again")] = False,
) -> None:
    """Compare every store with the document registry; exit 1 if a difference remains."""
    with _service(get_settings(), generation=False) as service:
        differences = service.indexer.check()
        for difference in differences:
            typer.echo(difference.describe())
        if differences and repair:
            service.indexer.repair(differences)
            differences = service.indexer.check()
            for difference in differences:
                typer.echo(f"still: {difference.describe()}")
        documents = len(service.registry.census())
    if differences:
        _fail(f"{len(differences)} difference(s) between the registry and the stores")
    typer.echo(f"consistent: {documents} documents agree in the registry and every store")


keys_app = typer.Typer(no_args_is_help=True, help="API keys: create, list, revoke.")
app.add_typer(keys_app, name="keys")


def _key_store() -> KeyStore:
    settings = get_settings()
    return open_key_store(settings.data_dir, settings.database_url)


@keys_app.command("create")
def keys_create(tenant: Annotated[str, typer.Option(help="the tenant the key acts for")]) -> None:
    """Create a key; it is printed once, alone on the last line, and stored only as a digest."""
    store = _key_store()
    try:
        key = store.create(tenant)
    finally:
        store.close()
    typer.echo(f"created a key for tenant '{tenant}'; store it now, it cannot be shown again:")
    typer.echo(key)


@keys_app.command("list")
def keys_list() -> None:
    """The keys by label (their first characters), tenant and creation time."""
    store = _key_store()
    try:
        for info in store.list():
            typer.echo(f"{info.label}…  {info.tenant:24}  {info.created_at}")
    finally:
        store.close()


@keys_app.command("revoke")
def keys_revoke(label: Annotated[str, typer.Argument(help="the label `rag keys list` shows")]) -> None:
    """Revoke a key; a running service refuses it from the next request."""
    store = _key_store()
    try:
        removed = store.revoke(label.rstrip("…"))
    finally:
        store.close()
    if not removed:
        _fail(f"no key labelled {label}")
    typer.echo(f"revoked {removed} key(s)")


db_app = typer.Typer(no_args_is_help=True, help="Server mode's database (RAG_DATABASE_URL): its schema.")
app.add_typer(db_app, name="db")


def _database_url() -> str:
    url = get_settings().database_url
    if not url:
        _fail("RAG_DATABASE_URL is not set: the embedded mode keeps its state in the data dir and needs no upgrade")
    return url


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply the schema migrations the database lacks (safe to run from several workers at once)."""
    import psycopg

    from rag.database.schema import upgrade

    try:
        applied = upgrade(_database_url())
    except psycopg.Error as error:  # the driver's message names the cause (auth, host, permissions)
        _fail(f"upgrade failed: {error}")
    listed = ": " + ", ".join(applied) if applied else ""
    typer.echo(f"applied {len(applied)} migration(s){listed}; the schema is current")


@db_app.command("status")
def db_status() -> None:
    """Whether the database's schema is the one this version of the service runs on."""
    import psycopg

    from rag.database.schema import state

    try:
        found = state(_database_url())
    except psycopg.Error as error:
        _fail(f"cannot read the schema: {error}")
    if found.unknown:
        _fail(f"{len(found.unknown)} migration(s) applied by a newer version of the service")
    if found.pending:
        _fail(f"pending: {', '.join(found.pending)}; run `rag db upgrade`")
    typer.echo("the schema is current")


eval_app = typer.Typer(no_args_is_help=True, help="Measure the service on a dataset in the shared format.")
app.add_typer(eval_app, name="eval")


@eval_app.command("retrieval")
def eval_retrieval(
    dataset: Annotated[Path, typer.Option(help="a folder with corpus.jsonl and queries.jsonl")],
    out: Annotated[Path, typer.Option(help="write the report as JSON here")],
    limit: Annotated[int | None, typer.Option(help="at most this many questions")] = None,
    token_budget: Annotated[int, typer.Option(help="budget of the trimmed method")] = 1000,
    index_root: Annotated[
        Path, typer.Option(help="indexes are built here once per corpus and reused")
    ] = Path("data/eval"),
    dump: Annotated[Path | None, typer.Option(help="per-query rows for evals.fit_weighting")] = None,
) -> None:
    """Compare bm25, dense, fixed fusions, per-query hybrid, rerank and trim on one dataset."""
    from evals.retrieval import print_table, run

    if not dataset.is_dir():
        _fail(f"{dataset}: not a dataset folder")
    report = run(dataset, index_root.resolve(), get_settings(), limit, token_budget, dump)
    print_table(report)
    out.write_text(json.dumps(report, indent=2))
    typer.echo(f"wrote {out}", err=True)


@eval_app.command("cache")
def eval_cache(
    pairs: Annotated[Path, typer.Option(help="a pairs.jsonl of question pairs")],
    mode: Annotated[str, typer.Option(help="pairwise or populated")],
    out: Annotated[Path, typer.Option(help="write the report as JSON here")],
    fill_to: Annotated[int, typer.Option(help="populated: extra entries from other pair sets, up to this many")] = 0,
) -> None:
    """Precision, recall and lookup latency of the answer cache's matching on question pairs."""
    from evals.cache import print_report, run

    if mode not in ("pairwise", "populated"):
        _fail("--mode must be pairwise or populated")
    if not pairs.is_file():
        _fail(f"{pairs}: no such file")
    report = run(pairs, mode, get_settings(), fill_to)
    print_report(report)
    out.write_text(json.dumps(report, indent=2))
    typer.echo(f"wrote {out}", err=True)


def _numbers(text: str, kind: type, option: str) -> list:
    try:
        values = [kind(part) for part in text.split(",") if part.strip()]
    except ValueError:
        _fail(f"{option}: {text!r} is not a comma-separated list of numbers")
    if not values:
        _fail(f"{option} needs at least one value")
    return values


@eval_app.command("rewrite")
def eval_rewrite(
    dataset: Annotated[Path, typer.Option(help="a CANARD folder (turns.jsonl)")],
    out: Annotated[Path, typer.Option(help="write the scores (one object per method) and every rewrite as JSON")],
    sample: Annotated[int | None, typer.Option(help="a seeded random sample of N turns")] = None,
    seed: Annotated[int, typer.Option(help="the sample's seed")] = 0,
    limit: Annotated[int | None, typer.Option(help="the first N turns only")] = None,
    memo: Annotated[
        Path, typer.Option(help="generations already made, by prompt (reused: the tiers decode greedily)")
    ] = Path("data/eval/generations.sqlite"),
) -> None:
    """Follow-up questions made standalone by the service, against people's rewrites."""
    import random

    from evals import rewrite

    if sample is not None and limit is not None:
        _fail("give --sample or --limit, not both")
    try:
        turns = rewrite.load_turns(dataset)
    except FileNotFoundError as exc:
        _fail(str(exc))
    if sample is not None:
        turns = random.Random(seed).sample(turns, min(sample, len(turns)))
    elif limit is not None:
        turns = turns[:limit]
    result = rewrite.run(turns, get_settings(), memo)
    result["selection"] = {"sample": sample, "seed": seed, "limit": limit, "dataset": str(dataset)}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, ensure_ascii=False))
    typer.echo(rewrite.table(result))
    typer.echo(f"wrote {out}", err=True)


def _switches(text: str, option: str) -> list[bool]:
    words = [part.strip() for part in text.split(",") if part.strip()]
    if not words or any(word not in ("on", "off") for word in words):
        _fail(f"{option}: {text!r} is not on, off or on,off")
    return list(dict.fromkeys(word == "on" for word in words))


@eval_app.command("qa")
def eval_qa(
    dataset: Annotated[Path, typer.Option(help="a folder with corpus.jsonl and queries.jsonl")],
    out: Annotated[Path, typer.Option(help="write the report as JSON here")],
    limit: Annotated[int | None, typer.Option(help="the first N questions only")] = None,
    sample: Annotated[
        int | None, typer.Option(help="a seeded random sample of N questions across the whole dataset")
    ] = None,
    seed: Annotated[int, typer.Option(help="the sample's seed")] = 0,
    pipelines: Annotated[
        str,
        typer.Option(
            help="comma-separated: naive_k2,naive_k5,naive_k10,hybrid,rerank_trim,routed,strong_trimmed,"
            "optimized (and profile, with --profile)"
        ),
    ] = "naive_k2,naive_k5,naive_k10,hybrid,rerank_trim,routed,optimized",
    profile: Annotated[
        Path | None,
        typer.Option(help="add the pipeline 'profile' running this profile; its tuning questions are left out"),
    ] = None,
    unanswerable: Annotated[
        float | None,
        typer.Option(help="index without the gold documents of this share of the questions; report abstention"),
    ] = None,
    report: Annotated[Path | None, typer.Option(help="also write a Markdown report here")] = None,
    plot: Annotated[Path | None, typer.Option(help="also plot F1 against cost per 1k questions (PNG)")] = None,
    url: Annotated[
        str | None, typer.Option(help="ask a running service over HTTP instead (one pipeline: 'service')")
    ] = None,
    index_root: Annotated[
        Path, typer.Option(help="indexes are built here once per corpus and reused")
    ] = Path("data/eval"),
    memo: Annotated[
        Path, typer.Option(help="generations already made, by prompt (reused: the tiers decode greedily)")
    ] = Path("data/eval/generations.sqlite"),
) -> None:
    """Answer quality against tokens and dollars: each pipeline configuration on the same questions."""
    from evals import qa, qa_report
    from rag.profile import load_profile

    if not dataset.is_dir():
        _fail(f"{dataset}: not a dataset folder")
    if limit is not None and limit < 1:
        _fail("--limit must be at least 1")
    if sample is not None and sample < 1:
        _fail("--sample must be at least 1")
    if sample is not None and limit is not None:
        _fail("give --sample or --limit, not both")
    if unanswerable is not None and not 0 < unanswerable < 1:
        _fail("--unanswerable must be a share between 0 and 1")
    names = [name.strip() for name in pipelines.split(",") if name.strip()]
    loaded = None
    if profile is not None:
        try:
            loaded = load_profile(profile)
        except ValueError as exc:
            _fail(str(exc))
        if qa.PROFILE_PIPELINE not in names:
            names.append(qa.PROFILE_PIPELINE)
    known = [*qa.PIPELINES, qa.PROFILE_PIPELINE] if loaded else list(qa.PIPELINES)
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        _fail(f"unknown pipelines {unknown}; known: {', '.join(known)}")
    if url:
        result = qa.run_remote(dataset, url, limit, sample=sample, seed=seed)
    else:
        result = qa.run(
            dataset,
            get_settings(),
            index_root.resolve(),
            names,
            limit=limit,
            sample=sample,
            seed=seed,
            profile=loaded,
            unanswerable=unanswerable,
            memo_path=memo,
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, ensure_ascii=False))
    typer.echo(qa_report.table(result))
    for name, share in qa.savings(result).items():
        typer.echo(f"optimized costs {share:.1%} less than {name} per 1,000 questions")
    if report:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(qa_report.markdown(result))
    if plot:
        qa_report.plot(result, plot)
    typer.echo(f"wrote {', '.join(str(p) for p in (out, report, plot) if p)}", err=True)


@app.command()
def tune(
    dataset: Annotated[Path, typer.Option(help="your golden set: a folder with corpus.jsonl and queries.jsonl")],
    out: Annotated[Path, typer.Option(help="write the chosen configuration here as a profile (JSON)")],
    report: Annotated[Path | None, typer.Option(help="write the frontier and the choice as Markdown")] = None,
    plot: Annotated[Path | None, typer.Option(help="plot every configuration's F1 against its cost (PNG)")] = None,
    results: Annotated[Path | None, typer.Option(help="write every configuration's answers as JSON")] = None,
    sample: Annotated[int | None, typer.Option(help="a seeded random sample of N questions")] = None,
    seed: Annotated[int, typer.Option(help="the sample's seed")] = 0,
    limit: Annotated[int | None, typer.Option(help="the first N questions only")] = None,
    tolerance: Annotated[
        float, typer.Option(help="choose the cheapest configuration whose F1 is within this of the best")
    ] = 0.02,
    top_k: Annotated[str, typer.Option(help="retrieval depths to try")] = "3,5,8",
    floors: Annotated[str, typer.Option(help="trim floors to try")] = "0.3,0.5,0.7",
    budgets: Annotated[str, typer.Option(help="token budgets to try")] = "1500",
    policies: Annotated[
        str, typer.Option(help=f"answer policies to try: {', '.join(POLICIES)}")
    ] = ",".join(POLICIES),
    ablations: Annotated[
        bool, typer.Option(help="also try rerank off, graph off and linking off (at depth 5)")
    ] = True,
    links: Annotated[str, typer.Option(help="linked passages to try: on, off, or on,off")] = "on",
    index_root: Annotated[
        Path, typer.Option(help="indexes are built here once per corpus and reused")
    ] = Path("data/eval"),
    memo: Annotated[
        Path, typer.Option(help="generations already made, by prompt (reused: the tiers decode greedily)")
    ] = Path("data/eval/generations.sqlite"),
) -> None:
    """Sweep configurations on your questions, plot the cost–F1 frontier, write the chosen profile."""
    from evals.tune import report as tune_report
    from evals.tune.space import grid
    from evals.tune.sweep import save
    from evals.tune.sweep import tune as run_tune

    if not dataset.is_dir():
        _fail(f"{dataset}: not a dataset folder")
    if sample is not None and limit is not None:
        _fail("give --sample or --limit, not both")
    if tolerance < 0:
        _fail("--tolerance must not be negative")
    chosen_policies = [name.strip() for name in policies.split(",") if name.strip()]
    unknown = [name for name in chosen_policies if name not in POLICIES]
    if unknown or not chosen_policies:
        _fail(f"unknown policies {unknown}; known: {', '.join(POLICIES)}")
    configurations = grid(
        top_ks=_numbers(top_k, int, "--top-k"),
        floors=_numbers(floors, float, "--floors"),
        budgets=_numbers(budgets, int, "--budgets"),
        policies=[POLICIES[name] for name in chosen_policies],
        ablations=ablations,
        links=_switches(links, "--links"),
    )
    result = run_tune(
        dataset,
        get_settings(),
        index_root.resolve(),
        configurations,
        sample=sample,
        seed=seed,
        limit=limit,
        tolerance=tolerance,
        memo_path=memo,
    )
    profile = save(result, out)
    typer.echo(tune_report.table(result, frontier_only=True))
    saving = result.saving_vs_baseline(result.chosen.name)
    typer.echo(
        f"chosen: {result.chosen.name} (F1 {result.chosen.f1:.3f}, ${result.chosen.cost_per_1k_usd:.3f} per 1k "
        "questions"
        + (f", {saving:.0%} less than naive_k5 on these questions" if saving is not None else "")
        + f"); profile {profile.name} written to {out}"
    )
    command = " ".join(["rag tune", *sys.argv[2:]])
    if report:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(tune_report.markdown(result, command))
    if plot:
        tune_report.plot(result, plot)
    if results:
        results.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "dataset": result.dataset,
            "questions": [q.id for q in result.queries],
            "chosen": result.chosen.name,
            "configurations": {
                name: {
                    "settings": result.configurations[name].overrides(),
                    "summary": result.summary(name),
                    "answers": [asdict(q) for q in result.results[name].questions],
                }
                for name in result.points
            },
        }
        results.write_text(json.dumps(payload, indent=1, ensure_ascii=False))
    typer.echo(f"wrote {', '.join(str(p) for p in (out, report, plot, results) if p)}", err=True)


def main() -> None:
    try:
        app()
    except RagError as exc:
        typer.secho(f"error: {exc.message}", fg=typer.colors.RED, err=True)
        sys.exit(1)
    except ValidationError as exc:  # settings from the environment; pydantic names the bad variable
        typer.secho(f"error: invalid RAG_ settings: {exc}", fg=typer.colors.RED, err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
