"""Indexer: bytes in, chunks durable in every store out; or a typed error and nothing left behind.

Parsing, chunking and embedding happen before any store is touched, so a bad file costs no cleanup.
The writes follow one order (registry ``pending`` → BM25 → dense → registry ``indexed``); a failure or
crash in between leaves a ``pending`` row, which ``recover`` and the failure path purge from every store.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from indexing.chunking import Chunker
from indexing.consistency import GRAPH, CensusStore, Difference, find_differences
from indexing.embedding import Embedder
from indexing.loaders import detect_media_type, load_document
from indexing.registry import INDEXED, DocumentRegistry
from indexing.stores.base import DenseStore, GraphStore, LexicalStore
from indexing.writers import SoleWriter, WriterLiveness
from rag.errors import PayloadTooLarge, RagError, StoreError
from rag.tokens import count_tokens
from rag.types import Chunk, DocumentRecord, utc_now

log = logging.getLogger(__name__)

# Documents prepared and written together: one embedding call, one write per store.
WRITE_GROUP = 64
MIN_TOKENS_TO_TIME = 200  # a smaller write is mostly fixed overhead: its speed says little


class IndexListener(Protocol):
    """Told when a tenant's documents change, after the change is durable (the answer cache listens)."""

    def documents_added(self, tenant: str) -> int: ...

    def document_removed(self, tenant: str, document_id: str) -> int: ...


@dataclass(frozen=True)
class Upload:
    name: str
    content: bytes
    declared_type: str | None = None


@dataclass(frozen=True)
class IngestOutcome:
    name: str
    status: Literal["indexed", "duplicate", "rejected"]
    document: DocumentRecord | None = None
    error: RagError | None = None


@dataclass(frozen=True)
class Estimate:
    """What indexing an upload would do, found by parsing and chunking it without writing any store:
    its chunks exactly as an upload now would store them, and the tokens the embedder would read."""

    name: str
    status: Literal["new", "duplicate", "rejected"]
    document: DocumentRecord | None = None
    chunks: tuple[Chunk, ...] = ()
    embedding_tokens: int = 0
    error: RagError | None = None


@dataclass(frozen=True)
class _Prepared:
    record: DocumentRecord
    chunks: tuple[Chunk, ...]


def document_id_for(tenant: str, content_hash: str) -> str:
    """Deterministic, so a retried upload of the same bytes lands on the same id."""
    return str(uuid.UUID(hex=hashlib.sha256(f"{tenant}\0{content_hash}".encode()).hexdigest()[:32]))


def indexed_text(chunk: Chunk) -> str:
    """What the retrievers see: the title gives a short chunk its subject."""
    return f"{chunk.title}\n{chunk.text}"


class Indexer:
    def __init__(
        self,
        registry: DocumentRegistry,
        dense: DenseStore,
        lexical: LexicalStore,
        embedder: Embedder,
        chunker: Chunker,
        max_upload_bytes: int,
        listeners: Sequence[IndexListener] = (),
        graph: GraphStore | None = None,
        writers: WriterLiveness | None = None,
        concurrency: int = 1,
    ) -> None:
        if concurrency < 1:
            raise ValueError("indexing concurrency must be at least 1")
        self._listeners = tuple(listeners)
        # Whose unfinished writes may be purged: by default (embedded) every writer but this process.
        self._writers = writers or SoleWriter(registry.writer_id)
        self._graph = graph
        self._registry = registry
        self._dense = dense
        self._lexical = lexical
        self._embedder = embedder
        self._chunker = chunker
        self._max_upload_bytes = max_upload_bytes
        self._write_lock = threading.Lock()
        self._embed_rate: float | None = None  # embedding tokens per second, as measured on real writes
        # Uploads (and dry runs) parsed and embedded at once: bounded, so that they leave questions the CPU.
        self._slots = threading.BoundedSemaphore(concurrency)

    def add(self, upload: Upload, tenant: str) -> IngestOutcome:
        return self.add_many([upload], tenant)[0]

    def add_many(
        self,
        uploads: Iterable[Upload],
        tenant: str,
        on_done: Callable[[IngestOutcome], None] | None = None,
    ) -> list[IngestOutcome]:
        """Index every upload; each gets its own outcome, and one bad file never loses the others. At most
        ``concurrency`` calls run at once; the others wait their turn."""
        with self._slots:
            return self._add_all(uploads, tenant, on_done)

    def _add_all(
        self, uploads: Iterable[Upload], tenant: str, on_done: Callable[[IngestOutcome], None] | None
    ) -> list[IngestOutcome]:
        outcomes: list[IngestOutcome] = []
        group: list[Upload] = []
        for upload in uploads:
            group.append(upload)
            if len(group) == WRITE_GROUP:
                outcomes += self._add_group(group, tenant, on_done)
                group = []
        if group:
            outcomes += self._add_group(group, tenant, on_done)
        return outcomes

    def estimate_many(self, uploads: Iterable[Upload], tenant: str) -> list[Estimate]:
        """What ``add_many`` would do with these uploads, without writing anything (a dry run)."""
        with self._slots:
            return self._estimate_all(uploads, tenant)

    def _estimate_all(self, uploads: Iterable[Upload], tenant: str) -> list[Estimate]:
        estimates: list[Estimate] = []
        seen: set[str] = set()
        for upload in uploads:
            try:
                item = self._prepare(upload, tenant)
            except RagError as error:
                estimates.append(Estimate(upload.name, "rejected", error=error))
                continue
            existing = self._registry.find_by_hash(tenant, item.record.content_hash)
            duplicate = self._taken(existing) or item.record.content_hash in seen
            seen.add(item.record.content_hash)
            tokens = sum(count_tokens(indexed_text(chunk)) for chunk in item.chunks)
            estimates.append(
                Estimate(upload.name, "duplicate" if duplicate else "new", item.record, item.chunks, tokens)
            )
        return estimates

    def _taken(self, existing: tuple[DocumentRecord, str, str | None] | None) -> bool:
        """Whether a registry row of the same bytes makes an upload a duplicate: the document is indexed,
        or another live worker is indexing it right now (a dead writer's row is a trace to purge)."""
        return existing is not None and (existing[1] == INDEXED or self._writers.alive(existing[2]))

    @property
    def embedding_tokens_per_second(self) -> float | None:
        """This process's embedding speed, from its writes so far (None before the first)."""
        return self._embed_rate

    def _add_group(
        self, uploads: Sequence[Upload], tenant: str, on_done: Callable[[IngestOutcome], None] | None
    ) -> list[IngestOutcome]:
        outcomes: list[IngestOutcome | None] = [None] * len(uploads)
        candidates: dict[int, _Prepared] = {}
        for i, upload in enumerate(uploads):
            try:
                candidates[i] = self._prepare(upload, tenant)
            except RagError as error:
                outcomes[i] = IngestOutcome(upload.name, "rejected", error=error)
        with self._write_lock:
            to_write: dict[int, _Prepared] = {}
            seen: set[str] = set()
            for i, item in candidates.items():
                existing = self._registry.find_by_hash(tenant, item.record.content_hash)
                if self._taken(existing):
                    outcomes[i] = IngestOutcome(uploads[i].name, "duplicate", document=existing[0])
                elif item.record.content_hash in seen:
                    outcomes[i] = IngestOutcome(uploads[i].name, "duplicate", document=item.record)
                else:
                    if existing:  # the trace of an interrupted write of these very bytes
                        self._purge(tenant, existing[0].id)
                    seen.add(item.record.content_hash)
                    to_write[i] = item
            for i in list(to_write):
                if not self._registry.begin(to_write[i].record, to_write[i].chunks):
                    # another worker began the same bytes since the check above: its write stands
                    outcomes[i] = IngestOutcome(uploads[i].name, "duplicate", document=to_write.pop(i).record)
            if to_write:
                try:
                    self._write(list(to_write.values()))
                    for i, item in to_write.items():
                        outcomes[i] = IngestOutcome(uploads[i].name, "indexed", document=item.record)
                    for listener in self._listeners:
                        listener.documents_added(tenant)
                except RagError as error:
                    for i in to_write:
                        outcomes[i] = IngestOutcome(uploads[i].name, "rejected", error=error)
        done = [outcome for outcome in outcomes if outcome is not None]
        if on_done:
            for outcome in done:
                on_done(outcome)
        return done

    def _prepare(self, upload: Upload, tenant: str) -> _Prepared:
        """Parse and chunk without touching any store."""
        if len(upload.content) > self._max_upload_bytes:
            raise PayloadTooLarge(
                f"{upload.name}: {len(upload.content)} bytes exceeds the limit of {self._max_upload_bytes} bytes"
            )
        media_type = detect_media_type(upload.name, upload.content, upload.declared_type)
        parsed = load_document(upload.name, upload.content, media_type)
        content_hash = hashlib.sha256(upload.content).hexdigest()
        document_id = document_id_for(tenant, content_hash)
        spans = self._chunker.split(parsed)
        chunks = tuple(
            Chunk(
                id=str(uuid.uuid5(uuid.UUID(document_id), str(index))),
                document_id=document_id,
                tenant=tenant,
                index=index,
                text=span.text,
                start=span.start,
                end=span.end,
                title=parsed.title,
                token_count=span.token_count,
                heading=span.heading,
                page=span.page,
            )
            for index, span in enumerate(spans)
        )
        record = DocumentRecord(
            id=document_id,
            tenant=tenant,
            name=Path(upload.name).name,
            media_type=media_type,
            size_bytes=len(upload.content),
            content_hash=content_hash,
            chunk_count=len(chunks),
            created_at=utc_now(),
        )
        return _Prepared(record, chunks)

    def _write(self, items: Sequence[_Prepared]) -> None:
        chunks = [chunk for item in items for chunk in item.chunks]
        texts = [indexed_text(chunk) for chunk in chunks]
        try:
            started = time.perf_counter()
            vectors = self._embedder.embed_documents(texts)
            self._observe_embedding(sum(count_tokens(text) for text in texts), time.perf_counter() - started)
            self._lexical.add(chunks, texts)
            self._dense.upsert(chunks, vectors)
            if self._graph is not None:
                self._graph.add(chunks)
            for item in items:
                self._registry.commit(item.record.id)
        except Exception as exc:
            log.exception("indexing failed; removing the partial writes")
            for item in items:
                self._purge(item.record.tenant, item.record.id)
            if isinstance(exc, RagError):  # already says what went wrong (a model missing, say)
                raise
            raise StoreError(f"indexing failed and was rolled back: {exc}") from exc

    def _observe_embedding(self, tokens: int, seconds: float) -> None:
        """A moving average of the embedder's speed (recent writes count most), for dry-run estimates."""
        if tokens < MIN_TOKENS_TO_TIME or seconds <= 0:
            return
        rate = tokens / seconds
        self._embed_rate = rate if self._embed_rate is None else 0.7 * self._embed_rate + 0.3 * rate

    def delete(self, tenant: str, document_id: str) -> bool:
        """Remove the document from every store; False when the tenant has no such document."""
        with self._write_lock:
            if self._registry.get(tenant, document_id) is None:
                return False
            self._registry.mark_deleting(document_id)
            self._purge(tenant, document_id)
            for listener in self._listeners:
                listener.document_removed(tenant, document_id)
            return True

    def _purge(self, tenant: str, document_id: str) -> None:
        self._dense.delete_document(tenant, document_id)
        self._lexical.delete_document(tenant, document_id)
        if self._graph is not None:
            self._graph.delete_document(tenant, document_id)
        self._registry.remove(document_id)

    def recover(self) -> int:
        """Purge every write a crash interrupted (not a live worker's write in progress); returns how
        many documents were purged."""
        with self._write_lock:
            unfinished = [(t, d) for t, d, writer in self._registry.unfinished() if not self._writers.alive(writer)]
            for tenant, document_id in unfinished:
                self._purge(tenant, document_id)
        if unfinished:
            log.warning("purged %d interrupted document writes", len(unfinished))
        self._backfill_graph()
        return len(unfinished)

    def _stores(self) -> dict[str, CensusStore]:
        stores: dict[str, CensusStore] = {"bm25": self._lexical, "dense": self._dense}
        if self._graph is not None:
            stores[GRAPH] = self._graph
        return stores

    def _chunks_of(self, document_id: str) -> list[Chunk]:
        chunks = self._registry.chunks(self._registry.chunk_ids(document_id=document_id))
        return sorted(chunks.values(), key=lambda chunk: chunk.index)

    def check(self) -> list[Difference]:
        """Where the stores disagree with the registry (``indexing.consistency``)."""
        graph = self._graph
        with self._write_lock:
            return find_differences(
                self._registry,
                self._stores(),
                lambda _tenant, document_id: graph.rows_expected(self._chunks_of(document_id)) if graph else 0,
            )

    def repair(self, differences: Sequence[Difference]) -> None:
        """Purge interrupted writes and orphans; write an indexed document's chunks again, from the
        registry, into every store, when any store lacks some of them."""
        stores = self._stores()
        rewrite: dict[str, str] = {}
        with self._write_lock:
            for difference in differences:
                if difference.problem == "unfinished":
                    self._purge(difference.tenant, difference.document_id)
                elif difference.problem == "orphan":
                    stores[difference.store].delete_document(difference.tenant, difference.document_id)
                else:
                    rewrite[difference.document_id] = difference.tenant
            for document_id, tenant in rewrite.items():
                self._rewrite(tenant, document_id)

    def _rewrite(self, tenant: str, document_id: str) -> None:
        chunks = self._chunks_of(document_id)
        texts = [indexed_text(chunk) for chunk in chunks]
        for store in self._stores().values():
            store.delete_document(tenant, document_id)
        self._lexical.add(chunks, texts)
        self._dense.upsert(chunks, self._embedder.embed_documents(texts))
        if self._graph is not None:
            self._graph.add(chunks)
        log.warning("wrote the %d chunks of document %s again", len(chunks), document_id)

    def _backfill_graph(self, batch: int = 2000) -> None:
        """Documents indexed before the graph existed (an older data dir) get their graph here, once:
        an empty graph beside indexed chunks was never built."""
        if self._graph is None or self._graph.count() > 0 or self._registry.count_chunks() == 0:
            return
        chunk_ids = self._registry.chunk_ids()
        with self._write_lock:
            for start in range(0, len(chunk_ids), batch):
                chunks = self._registry.chunks(chunk_ids[start : start + batch])
                self._graph.add(list(chunks.values()))
        log.info("built the knowledge graph of %d existing chunks", len(chunk_ids))
