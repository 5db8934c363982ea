"""Semantic answer cache: a repeated question costs nothing, a different question never gets its answer.

Lookup is an exact match of the normalized question first, then a nearest-neighbour search of the
question's embedding in a vector collection (any ``DenseStore``: embedded by default, a Qdrant server
when configured), where the nearest candidate above the similarity threshold must also pass the hard
guard of ``rag.cache.guard`` (numbers, negation, name order) and the learned verifier of
``rag.cache.verifier`` (its probability over the fitted threshold), and must not be ambiguous (another
cached question within the verifier's margin of it). Entries are kept per tenant, with the
documents their answer cited: deleting a document drops every entry that cited it, and an answer that
found nothing in the documents ("I don't know") is dropped when documents are added. A TTL and a size
bound (least recently used first) keep the cache honest and small. The entries are SQL: a SQLite file
in the data dir, or the server-mode database (the same tables, from ``rag/database/migrations``).
"""

from __future__ import annotations

import json
import re
import threading
import time
import unicodedata
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from rag.cache.guard import Verdict, hard_guard, same_question
from rag.cache.verifier import Verifier
from rag.database.sql import Sql, SqliteSql
from rag.types import Chunk, Citation, ScoredId

_SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    id TEXT PRIMARY KEY, tenant TEXT NOT NULL, question TEXT NOT NULL, normalized TEXT NOT NULL,
    answer TEXT NOT NULL, citations TEXT NOT NULL, abstained INTEGER NOT NULL,
    created_at REAL NOT NULL, used_at REAL NOT NULL, hits INTEGER NOT NULL DEFAULT 0,
    reference_cost_usd REAL);
CREATE INDEX IF NOT EXISTS entries_normalized ON entries (tenant, normalized);
CREATE INDEX IF NOT EXISTS entries_used ON entries (used_at);
CREATE INDEX IF NOT EXISTS entries_created ON entries (created_at); -- the TTL sweep on each lookup
CREATE TABLE IF NOT EXISTS cited (
    entry_id TEXT NOT NULL, tenant TEXT NOT NULL, document_id TEXT NOT NULL,
    PRIMARY KEY (entry_id, document_id));
CREATE INDEX IF NOT EXISTS cited_document ON cited (tenant, document_id);
"""


def embedded_entries(path: Path) -> Sql:
    """The entries' SQLite file, brought up to date."""
    sql = SqliteSql(path, _SQLITE_SCHEMA)
    if "reference_cost_usd" not in {row[1] for row in sql.query("PRAGMA table_info(entries)")}:
        with sql.transaction() as writer:  # a cache written before the column existed
            writer.execute("ALTER TABLE entries ADD COLUMN reference_cost_usd REAL")
    return sql
_TRAILING = re.compile(r"[\s?!.。？！]+$")
_SPACES = re.compile(r"\s+")


class VectorIndex(Protocol):
    """The part of ``indexing.stores.base.DenseStore`` the cache uses."""

    def upsert(self, chunks: Sequence[Chunk], vectors: np.ndarray) -> None: ...

    def delete_document(self, tenant: str, document_id: str) -> int: ...

    def search(self, tenant: str, vector: np.ndarray, top_k: int) -> list[ScoredId]: ...

    def count(self, tenant: str | None = None, document_id: str | None = None) -> int: ...

    def close(self) -> None: ...


def normalize(question: str) -> str:
    """The exact-match key: Unicode-normalized, case-folded, single-spaced, without end punctuation."""
    text = unicodedata.normalize("NFKC", question).casefold().strip()
    return _TRAILING.sub("", _SPACES.sub(" ", text))


# Share of a question's letters that must be Latin for a paraphrase to match. The cache's embedder
# (all-MiniLM-L6-v2) and its verifier learned English: on 100 cmrc2018 questions they matched 21
# different Chinese questions about as near as paraphrases ("溪银汉鱼的体长是多少？" got another
# question's "火鸡"), so beyond the same text, a question in another script never hits.
MIN_LATIN_SHARE = 0.5


def reads_latin(question: str) -> bool:
    """Whether at least ``MIN_LATIN_SHARE`` of the question's letters are Latin (a question without
    letters, "2+2?", counts as Latin: the guard's number check judges it)."""
    letters = [c for c in question if c.isalpha()]
    if not letters:
        return True
    latin = sum(1 for c in letters if unicodedata.name(c, "").startswith("LATIN"))
    return latin / len(letters) >= MIN_LATIN_SHARE


def decide(
    similarity: float,
    new: str,
    cached: str,
    threshold: float,
    verifier: Verifier | None,
    verifier_threshold: float | None = None,
) -> Verdict:
    """The matching rule, shared by the cache and its eval: the same text, or over the similarity
    threshold, through the hard guard, and scored over the verifier's threshold (``verifier_threshold``
    overrides the fitted one: the eval draws its curve with it). ``verifier=None`` is the rule before
    the verifier: the whole lexical guard (``same_question``) and nothing learned; the service passes
    the fitted one (``rag.cache.verifier.load_verifier``)."""
    if normalize(new) == normalize(cached):
        return Verdict(True, "the same question")
    if not (reads_latin(new) and reads_latin(cached)):
        return Verdict(False, "only the same text matches outside Latin script (the embedder and the verifier read English)")
    if similarity < threshold:
        return Verdict(False, f"similarity {similarity:.3f} below {threshold}")
    if verifier is None:
        return same_question(new, cached)
    guard = hard_guard(new, cached)
    if not guard.same:
        return guard
    cut = verifier.threshold if verifier_threshold is None else verifier_threshold
    probability = verifier.score(new, cached, similarity)
    if probability < cut:
        return Verdict(False, f"verifier {probability:.3f} below {cut}")
    return Verdict(True, f"verifier {probability:.3f}")


@dataclass(frozen=True)
class CachedAnswer:
    answer: str
    citations: tuple[Citation, ...]
    # What answering cost the first time against the naive reference (``rag.types.Usage``), so that a
    # hit can say what it saved.
    reference_cost_usd: float | None = None


@dataclass(frozen=True)
class CacheLookup:
    hit: bool
    similarity: float | None
    reason: str
    entry_id: str | None = None
    cached_question: str | None = None
    answer: CachedAnswer | None = None


@dataclass(frozen=True)
class Candidate:
    entry_id: str
    question: str
    similarity: float


class SemanticCache:
    def __init__(
        self,
        entries: Sql,
        index: VectorIndex,
        threshold: float,
        ttl_seconds: float | None = None,
        max_entries: int = 100_000,
        clock: Callable[[], float] = time.time,
        *,
        verifier: Verifier | None,
    ) -> None:
        if not 0.0 < threshold <= 1.0:
            raise ValueError("threshold must be within (0, 1]")
        if max_entries < 1 or (ttl_seconds is not None and ttl_seconds <= 0):
            raise ValueError("max_entries must be positive, ttl_seconds positive or None")
        self._index = index
        self.threshold = threshold
        self._ttl = ttl_seconds
        self._max_entries = max_entries
        self._clock = clock
        self.verifier = verifier
        # Serializes this process's read-modify-write sequences (lookup and its hit count, store and its
        # twins); each SQL transaction is atomic on its own for other processes.
        self._lock = threading.RLock()
        self._sql = entries

    # -- lookup -------------------------------------------------------------------------------------

    def lookup(
        self,
        tenant: str,
        question: str,
        vector: np.ndarray,
        threshold: float | None = None,
        verifier_threshold: float | None = None,
    ) -> CacheLookup:
        """A hit, or a miss with the nearest candidate's similarity and why it was refused.
        ``threshold`` and ``verifier_threshold`` override the configured similarity threshold and the
        verifier's fitted one (the eval draws its curves with them)."""
        threshold = self.threshold if threshold is None else threshold
        with self._lock:
            self._expire()
            rows = self._sql.query(
                "SELECT id, question FROM entries WHERE tenant = ? AND normalized = ? ORDER BY used_at DESC LIMIT 1",
                (tenant, normalize(question)),
            )
            if rows:
                row = rows[0]
                return self._hit(row[0], row[1], 1.0, "the same question")
            margin = self.verifier.ambiguity_margin if self.verifier is not None else 0.0
            nearest = self._candidates(tenant, vector, 2 if margin > 0 else 1)
            if not nearest:
                return CacheLookup(False, None, "the cache holds no question of this tenant")
            # Only the nearest question may answer: when it is refused, a farther one that passes the
            # guard is more likely a near-miss than the same question (on gptcache_mock, letting the
            # 2nd-5th nearest answer lowered precision; measured before the eval matched repeated q1
            # texts by text, so worth measuring again).
            best = nearest[0]
            verdict = decide(
                best.similarity, question, best.question, threshold, self.verifier, verifier_threshold
            )
            if not verdict.same:
                return CacheLookup(False, best.similarity, verdict.reason)
            # Two different cached questions about as near: the new one could be either, so neither.
            if (
                len(nearest) > 1
                and best.similarity - nearest[1].similarity < margin
                and normalize(nearest[1].question) != normalize(best.question)
            ):
                return CacheLookup(
                    False, best.similarity, f"ambiguous: another cached question within {margin} of it"
                )
            return self._hit(best.entry_id, best.question, best.similarity, verdict.reason)

    def candidates(self, tenant: str, vector: np.ndarray, k: int) -> list[Candidate]:
        """The ``k`` nearest cached questions of the tenant, best first (live entries only)."""
        with self._lock:
            return self._candidates(tenant, vector, k)

    def _candidates(self, tenant: str, vector: np.ndarray, k: int) -> list[Candidate]:
        hits = self._index.search(tenant, vector, k)
        if not hits:
            return []
        placeholders = ",".join("?" * len(hits))
        rows = dict(
            self._sql.query(
                f"SELECT id, question FROM entries WHERE tenant = ? AND id IN ({placeholders})",
                (tenant, *[h.chunk_id for h in hits]),
            )
        )
        return [Candidate(h.chunk_id, rows[h.chunk_id], h.score) for h in hits if h.chunk_id in rows]

    def _hit(self, entry_id: str, cached_question: str, similarity: float, reason: str) -> CacheLookup:
        with self._sql.transaction() as sql:
            [(answer, citations, reference)] = sql.query(
                "SELECT answer, citations, reference_cost_usd FROM entries WHERE id = ?", (entry_id,)
            )
            sql.execute("UPDATE entries SET used_at = ?, hits = hits + 1 WHERE id = ?", (self._clock(), entry_id))
        cached = CachedAnswer(answer, tuple(Citation(**c) for c in json.loads(citations)), reference)
        return CacheLookup(True, similarity, reason, entry_id, cached_question, cached)

    # -- writes -------------------------------------------------------------------------------------

    def store(
        self, tenant: str, question: str, vector: np.ndarray, answer: CachedAnswer, abstained: bool
    ) -> str:
        return self.store_many(tenant, [(question, vector, answer, abstained)])[0]

    def store_many(
        self, tenant: str, items: Sequence[tuple[str, np.ndarray, CachedAnswer, bool]]
    ) -> list[str]:
        """``store`` for several entries in one transaction and one vector write (the eval fills a cache
        of 20k entries with it: one durable write per entry takes ~0.1 s)."""
        now = self._clock()
        rows, cited, keys, seen = [], [], [], {}
        for question, _, answer, abstained in items:
            entry_id, key = str(uuid.uuid4()), normalize(question)
            if key in seen:  # the same question twice in one batch: the later one stays
                rows[seen[key]] = None
            seen[key] = len(rows)
            rows.append(
                (
                    entry_id,
                    tenant,
                    question,
                    key,
                    answer.answer,
                    json.dumps([vars(c) for c in answer.citations]),
                    int(abstained),
                    now,
                    now,
                    answer.reference_cost_usd,
                )
            )
            cited.append([(entry_id, tenant, d) for d in sorted({c.document_id for c in answer.citations})])
            keys.append(key)
        kept = [i for i, row in enumerate(rows) if row is not None]
        with self._lock:
            # The same question again replaces its entry rather than adding a twin.
            twins = [
                r[0]
                for key in set(keys)
                for r in self._sql.query("SELECT id FROM entries WHERE tenant = ? AND normalized = ?", (tenant, key))
            ]
            self._remove(tenant, twins)
            with self._sql.transaction() as sql:  # the vectors are written inside: a failure keeps neither
                sql.executemany(
                    "INSERT INTO entries (id, tenant, question, normalized, answer, citations, abstained, "
                    "created_at, used_at, reference_cost_usd) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [rows[i] for i in kept],
                )
                sql.executemany(
                    "INSERT INTO cited (entry_id, tenant, document_id) VALUES (?, ?, ?)",
                    [c for i in kept for c in cited[i]],
                )
                if kept:
                    self._index.upsert(
                        [_entry_chunk(rows[i][0], tenant) for i in kept],
                        np.array([np.asarray(items[i][1], dtype=np.float32).reshape(-1) for i in kept]),
                    )
            self._evict()
        return [rows[seen[key]][0] for key in keys]

    def invalidate_documents(self, tenant: str, document_ids: Sequence[str]) -> int:
        """Drop every entry whose answer cited one of these documents (deleted or replaced)."""
        with self._lock:
            ids = [
                row[0]
                for document_id in document_ids
                for row in self._sql.query(
                    "SELECT entry_id FROM cited WHERE tenant = ? AND document_id = ?", (tenant, document_id)
                )
            ]
            return self._remove(tenant, sorted(set(ids)))

    def document_removed(self, tenant: str, document_id: str) -> int:
        return self.invalidate_documents(tenant, [document_id])

    def documents_added(self, tenant: str) -> int:
        """New documents may hold what an "I don't know" answer lacked: drop those answers."""
        with self._lock:
            ids = [r[0] for r in self._sql.query("SELECT id FROM entries WHERE tenant = ? AND abstained = 1", (tenant,))]
            return self._remove(tenant, ids)

    def count(self, tenant: str | None = None) -> int:
        if tenant is None:
            return self._sql.query("SELECT COUNT(*) FROM entries")[0][0]
        return self._sql.query("SELECT COUNT(*) FROM entries WHERE tenant = ?", (tenant,))[0][0]

    def close(self) -> None:
        """Closes the entries and the question index: the cache owns the index it was given."""
        with self._lock:
            self._sql.close()
            self._index.close()

    def _expire(self) -> None:
        if self._ttl is None:
            return
        rows = self._sql.query("SELECT tenant, id FROM entries WHERE created_at < ?", (self._clock() - self._ttl,))
        for tenant, entry_id in rows:
            self._remove(tenant, [entry_id])

    def _evict(self) -> None:
        excess = self.count() - self._max_entries
        if excess > 0:
            rows = self._sql.query("SELECT tenant, id FROM entries ORDER BY used_at LIMIT ?", (excess,))
            for tenant, entry_id in rows:
                self._remove(tenant, [entry_id])

    def _remove(self, tenant: str, entry_ids: Sequence[str]) -> int:
        for entry_id in entry_ids:
            # The vector goes first: an entry without its vector is only unreachable, never wrong.
            self._index.delete_document(tenant, entry_id)
            with self._sql.transaction() as sql:
                sql.execute("DELETE FROM cited WHERE entry_id = ?", (entry_id,))
                sql.execute("DELETE FROM entries WHERE id = ?", (entry_id,))
        return len(entry_ids)


def _entry_chunk(entry_id: str, tenant: str) -> Chunk:
    """A cache entry in the vector collection's terms: its own 'document', so it can be deleted by id."""
    return Chunk(entry_id, entry_id, tenant, 0, "", 0, 0, "", 0)
