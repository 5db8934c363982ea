"""The knowledge graph: SQL holds every chunk's contributions, networkx holds their sum in memory.

Each chunk's mentions and relations are rows keyed by the chunk, so deleting a document removes exactly
its rows and subtracts exactly its counts from the in-memory graph; nothing is ever rebuilt except at
start-up, when the rows are replayed. Node and edge attributes are counters (never "last writer wins"),
which is what makes add-then-delete restore the graph exactly.

Tenants never share a node: each has its own ``nx.Graph``. The rows are in ``graph.sqlite`` (WAL,
``synchronous=FULL``) or in the server-mode database, so ``add`` is durable when it returns. Every write
bumps the tenant's version in the same transaction; a reader whose graph of the tenant was built from
another version (another worker wrote since) replays that tenant's rows first, so each worker sees
every other worker's uploads and deletions before its next question.
"""

from __future__ import annotations

import contextlib
import threading
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import networkx as nx

from kg.extract import ChunkGraph, Mention, Relation, extract, normalize, title_key
from rag.database.sql import Sql, SqliteSql, SqlWriter, count_rows, rows_per_document
from rag.errors import NotFound
from rag.types import Chunk

_SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS mentions (
    tenant TEXT NOT NULL,
    document_id TEXT NOT NULL,
    chunk_id TEXT NOT NULL,
    entity TEXT NOT NULL,
    surface TEXT NOT NULL,
    is_title INTEGER NOT NULL,
    occurrences INTEGER NOT NULL,
    PRIMARY KEY (tenant, chunk_id, entity, surface, is_title));
CREATE INDEX IF NOT EXISTS mentions_by_document ON mentions (tenant, document_id);
CREATE TABLE IF NOT EXISTS edges (
    seq INTEGER PRIMARY KEY,
    tenant TEXT NOT NULL,
    document_id TEXT NOT NULL,
    chunk_id TEXT NOT NULL,
    a TEXT NOT NULL,
    b TEXT NOT NULL,
    label TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS edges_by_chunk ON edges (tenant, chunk_id);
CREATE INDEX IF NOT EXISTS edges_by_document ON edges (tenant, document_id);
CREATE TABLE IF NOT EXISTS graph_versions (tenant TEXT PRIMARY KEY, version INTEGER NOT NULL);
"""
_MENTION_COLUMNS = "chunk_id, entity, surface, is_title, occurrences"
_EDGE_COLUMNS = "chunk_id, a, b, label"
_MAX_PARAMS = 900  # SQLite caps the parameters of one statement
TOP_LABELS = 3
TOP_SURFACES = 5


@dataclass(frozen=True)
class EntityInfo:
    """An entity as the inspection API shows it."""

    name: str
    mentions: int
    chunk_ids: tuple[str, ...]
    surfaces: tuple[str, ...]  # most used first
    title_chunk_ids: tuple[str, ...]  # chunks of the documents this entity is the title of
    degree: int

    @property
    def is_title(self) -> bool:
        return bool(self.title_chunk_ids)


@dataclass(frozen=True)
class NeighborInfo:
    """An edge seen from one of its ends: the other end, how many contributions it has, its main labels."""

    name: str
    weight: int
    labels: tuple[str, ...]
    is_title: bool


@dataclass(frozen=True)
class Snapshot:
    """A tenant's whole graph as plain comparable values (tests compare two of them for equality)."""

    nodes: dict[str, tuple[int, frozenset[str], frozenset[str], frozenset[tuple[str, int]]]]
    edges: dict[tuple[str, str], tuple[int, frozenset[tuple[str, int]]]]
    chunks: dict[str, frozenset[str]]


class TenantGraph:
    """One tenant's graph in memory. Read it only inside ``KnowledgeGraph.reading``.

    Node attributes: ``mentions`` (occurrences), ``chunks`` (ids of chunks mentioning it), ``surfaces``
    (Counter of surface forms), ``title_chunks`` (chunks whose document title it is). Edge attributes:
    ``weight`` (contributions: sentences plus title links) and ``labels`` (Counter of linking phrases).
    """

    def __init__(self) -> None:
        self.graph = nx.Graph()
        self.chunk_entities: dict[str, frozenset[str]] = {}
        self._aliases: dict[str, tuple[str, ...]] | None = None

    def add_chunk(self, chunk_id: str, mentions: Iterable[Mention], relations: Iterable[Relation]) -> None:
        graph = self.graph
        entities = set()
        for m in mentions:
            if m.key not in graph:
                graph.add_node(m.key, mentions=0, chunks=set(), surfaces=Counter(), title_chunks=set())
            node = graph.nodes[m.key]
            node["mentions"] += m.occurrences
            node["chunks"].add(chunk_id)
            node["surfaces"][m.surface] += m.occurrences
            if m.is_title:
                node["title_chunks"].add(chunk_id)
            entities.add(m.key)
        for r in relations:
            if not graph.has_edge(r.a, r.b):
                graph.add_edge(r.a, r.b, weight=0, labels=Counter())
            edge = graph.edges[r.a, r.b]
            edge["weight"] += 1
            edge["labels"][r.label] += 1
        if entities:
            self.chunk_entities[chunk_id] = frozenset(entities)
        self._aliases = None

    def remove_chunk(self, chunk_id: str, mentions: Sequence[Mention], relations: Iterable[Relation]) -> None:
        """Subtract exactly what ``add_chunk`` added for these rows; drop emptied edges and orphan nodes."""
        graph = self.graph
        for r in relations:
            edge = graph.edges[r.a, r.b]
            edge["weight"] -= 1
            edge["labels"][r.label] -= 1
            if edge["labels"][r.label] <= 0:
                del edge["labels"][r.label]
            if edge["weight"] <= 0:
                graph.remove_edge(r.a, r.b)
        for m in mentions:
            node = graph.nodes[m.key]
            node["mentions"] -= m.occurrences
            node["chunks"].discard(chunk_id)
            node["surfaces"][m.surface] -= m.occurrences
            if node["surfaces"][m.surface] <= 0:
                del node["surfaces"][m.surface]
            if m.is_title:
                node["title_chunks"].discard(chunk_id)
        orphans = {m.key for m in mentions if m.key in graph and not graph.nodes[m.key]["chunks"]}
        graph.remove_nodes_from(orphans)
        self.chunk_entities.pop(chunk_id, None)
        self._aliases = None

    def resolve(self, name: str) -> list[str]:
        """Node keys ``name`` refers to: its own key if it is a node, else nodes it is a surface form of."""
        key = normalize(name)
        if key in self.graph:
            return [key]
        title = title_key(name)
        if title in self.graph:
            return [title]
        return list(self.aliases().get(key, ()))

    def aliases(self) -> dict[str, tuple[str, ...]]:
        """Normalized surface form -> node keys, for forms that differ from the key ("x (1945 film)")."""
        if self._aliases is None:
            found: defaultdict[str, set[str]] = defaultdict(set)
            for key, surfaces in self.graph.nodes(data="surfaces"):
                for surface in surfaces:
                    alias = normalize(surface)
                    if alias != key:
                        found[alias].add(key)
            self._aliases = {alias: tuple(sorted(keys)) for alias, keys in found.items()}
        return self._aliases

    def snapshot(self) -> Snapshot:
        nodes = {
            key: (
                data["mentions"],
                frozenset(data["chunks"]),
                frozenset(data["title_chunks"]),
                frozenset(data["surfaces"].items()),
            )
            for key, data in self.graph.nodes(data=True)
        }
        edges = {
            tuple(sorted((a, b))): (data["weight"], frozenset(data["labels"].items()))
            for a, b, data in self.graph.edges(data=True)
        }
        return Snapshot(nodes, edges, dict(self.chunk_entities))


class KnowledgeGraph:
    """Entities and their relations, per tenant, extracted at index time from chunks (no LLM)."""

    def __init__(self, sql: Sql) -> None:
        self._sql = sql
        self._lock = threading.RLock()
        self._tenants: dict[str, TenantGraph] = {}
        self._versions: dict[str, int] = {}  # the stored version each tenant's graph was built from
        self._load()

    @classmethod
    def embedded(cls, path: Path) -> KnowledgeGraph:
        sql = SqliteSql(Path(path), _SQLITE_SCHEMA)
        with sql.transaction() as writer:  # a graph written before versions existed: its tenants at 1
            writer.execute(
                "INSERT INTO graph_versions (tenant, version) SELECT DISTINCT tenant, 1 FROM mentions"
                " WHERE tenant NOT IN (SELECT tenant FROM graph_versions)"
            )
        return cls(sql)

    def add(self, chunks: Sequence[Chunk]) -> None:
        """Store the chunks' contributions durably, then add them in memory; a re-added chunk is replaced."""
        # CPU work outside the lock; a chunk given twice counts once (its last version).
        graphs = list({(c.tenant, c.id): extract(c) for c in chunks}.values())
        if not graphs:
            return
        by_tenant = _group(graphs)
        with self._lock:
            for tenant in by_tenant:
                self._refresh(tenant)
            replaced: list[tuple[str, str, list[Mention], list[Relation]]] = []
            with self._sql.transaction() as sql:
                for tenant, chunk_ids in by_tenant.items():
                    present = self._tenants.get(tenant)
                    known = [c for c in chunk_ids if present is not None and c in present.chunk_entities]
                    for chunk_id, (mentions, relations) in _rows(sql, tenant, "chunk_id", known).items():
                        replaced.append((tenant, chunk_id, mentions, relations))
                    _delete_rows(sql, tenant, "chunk_id", known)
                sql.executemany(
                    "INSERT INTO mentions (tenant, document_id, chunk_id, entity, surface, is_title, occurrences)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (tenant, chunk_id, entity, surface, is_title)"
                    " DO UPDATE SET document_id = excluded.document_id, occurrences = excluded.occurrences",
                    [
                        (g.tenant, g.document_id, g.chunk_id, m.key, m.surface, int(m.is_title), m.occurrences)
                        for g in graphs
                        for m in g.mentions
                    ],
                )
                sql.executemany(
                    "INSERT INTO edges (tenant, document_id, chunk_id, a, b, label) VALUES (?, ?, ?, ?, ?, ?)",
                    [(g.tenant, g.document_id, g.chunk_id, r.a, r.b, r.label) for g in graphs for r in g.relations],
                )
                versions = {tenant: _bump(sql, tenant) for tenant in by_tenant}
            for tenant, chunk_id, mentions, relations in replaced:
                self._tenants[tenant].remove_chunk(chunk_id, mentions, relations)
            for g in graphs:
                self._tenant(g.tenant).add_chunk(g.chunk_id, g.mentions, g.relations)
            self._advance(versions)

    def rows_expected(self, chunks: Sequence[Chunk]) -> int:
        return sum(len(extract(chunk).mentions) for chunk in chunks)

    def delete_document(self, tenant: str, document_id: str) -> int:
        """Remove exactly this document's contributions; returns the number of mention rows removed."""
        with self._lock:
            self._refresh(tenant)
            with self._sql.transaction() as sql:
                rows = _rows(sql, tenant, "document_id", [document_id])
                _delete_rows(sql, tenant, "document_id", [document_id])
                version = _bump(sql, tenant)
            graph = self._tenants.get(tenant)
            for chunk_id, (mentions, relations) in rows.items():
                if graph is not None:
                    graph.remove_chunk(chunk_id, mentions, relations)
            self._advance({tenant: version})
            return sum(len(mentions) for mentions, _ in rows.values())

    def count(self, tenant: str | None = None, document_id: str | None = None) -> int:
        """Mention rows: one per (chunk, entity, surface form, title or not)."""
        return count_rows(self._sql, "mentions", tenant, document_id)

    def documents(self) -> dict[tuple[str, str], int]:
        """(tenant, document id) → mention rows."""
        return rows_per_document(self._sql, "mentions")

    @contextlib.contextmanager
    def reading(self, tenant: str) -> Iterator[TenantGraph | None]:
        """The tenant's graph (None if it has nothing), up to date with the stored rows and held still
        for the duration of the block."""
        with self._lock:
            self._refresh(tenant)
            yield self._tenants.get(tenant)

    def snapshot(self, tenant: str) -> Snapshot:
        with self.reading(tenant) as graph:
            return (graph or TenantGraph()).snapshot()

    def entities(self, tenant: str, query: str, limit: int = 20) -> list[EntityInfo]:
        """Entities whose key starts with (first) or contains the normalized query, most mentioned first."""
        needle = normalize(query)
        with self.reading(tenant) as graph:
            if graph is None:
                return []
            ranked = []
            for key, mentions in graph.graph.nodes(data="mentions"):
                if key.startswith(needle):
                    ranked.append((0, -mentions, key))
                elif needle in key:
                    ranked.append((1, -mentions, key))
            ranked.sort()
            return [_entity_info(graph, key) for _, _, key in ranked[:limit]]

    def neighbors(self, tenant: str, name: str, limit: int = 20) -> list[NeighborInfo]:
        """The entity's neighbours, strongest edge first; ``NotFound`` when no entity has that name."""
        with self.reading(tenant) as graph:
            key = _resolve_one(graph, name)
            assert graph is not None
            nodes = graph.graph.nodes
            edges = sorted(graph.graph[key].items(), key=lambda item: (-item[1]["weight"], item[0]))
            return [
                NeighborInfo(
                    other,
                    data["weight"],
                    tuple(label for label, _ in _most_common(data["labels"], TOP_LABELS)),
                    bool(nodes[other]["title_chunks"]),
                )
                for other, data in edges[:limit]
            ]

    def close(self) -> None:
        with self._lock:
            self._sql.close()

    def _tenant(self, tenant: str) -> TenantGraph:
        graph = self._tenants.get(tenant)
        if graph is None:
            graph = self._tenants[tenant] = TenantGraph()
        return graph

    def _load(self) -> None:
        """Replay every stored contribution: the in-memory graph is a pure function of the rows."""
        with self._lock:
            versions = dict(self._sql.query("SELECT tenant, version FROM graph_versions"))
            for tenant in sorted(versions):
                self._replay(tenant, versions[tenant])

    def _refresh(self, tenant: str) -> None:
        """Replay the tenant's rows if another process wrote them since this graph was built."""
        rows = self._sql.query("SELECT version FROM graph_versions WHERE tenant = ?", (tenant,))
        stored = rows[0][0] if rows else 0
        if stored != self._versions.get(tenant, 0):
            self._replay(tenant, stored)

    def _replay(self, tenant: str, version: int) -> None:
        """The tenant's graph rebuilt from its rows (read in one transaction, so they match ``version``
        or a later one; a later one only makes the next refresh replay again)."""
        with self._sql.transaction() as sql:
            [(version,)] = sql.query("SELECT COALESCE(MAX(version), 0) FROM graph_versions WHERE tenant = ?", (tenant,))
            mentions: defaultdict[str, list[Mention]] = defaultdict(list)
            relations: defaultdict[str, list[Relation]] = defaultdict(list)
            for chunk_id, entity, surface, is_title, occurrences in sql.query(
                f"SELECT {_MENTION_COLUMNS} FROM mentions WHERE tenant = ? ORDER BY chunk_id, entity, surface, is_title",
                (tenant,),
            ):
                mentions[chunk_id].append(Mention(entity, surface, bool(is_title), occurrences))
            for chunk_id, a, b, label in sql.query(
                f"SELECT {_EDGE_COLUMNS} FROM edges WHERE tenant = ? ORDER BY seq", (tenant,)
            ):
                relations[chunk_id].append(Relation(a, b, label))
        graph = TenantGraph()
        for chunk_id, chunk_mentions in mentions.items():
            graph.add_chunk(chunk_id, chunk_mentions, relations.get(chunk_id, ()))
        if graph.chunk_entities:
            self._tenants[tenant] = graph
        else:
            self._tenants.pop(tenant, None)
        self._versions[tenant] = version

    def _advance(self, versions: dict[str, int]) -> None:
        """After this process's own write: the graph in memory now matches ``version`` if it matched the
        one before; if another process had written in between, the next read replays the tenant."""
        for tenant, version in versions.items():
            if self._versions.get(tenant, 0) == version - 1:
                self._versions[tenant] = version


def _bump(sql: SqlWriter, tenant: str) -> int:
    """The tenant's graph version after this write."""
    sql.execute(
        "INSERT INTO graph_versions (tenant, version) VALUES (?, 1)"
        " ON CONFLICT (tenant) DO UPDATE SET version = graph_versions.version + 1",
        (tenant,),
    )
    return sql.query("SELECT version FROM graph_versions WHERE tenant = ?", (tenant,))[0][0]


def _rows(
    sql: SqlWriter, tenant: str, column: str, values: Sequence[str]
) -> dict[str, tuple[list[Mention], list[Relation]]]:
    """Stored contributions, by chunk, of the chunks (``column="chunk_id"``) or documents given."""
    rows: defaultdict[str, tuple[list[Mention], list[Relation]]] = defaultdict(lambda: ([], []))
    for batch in _batches(values):
        marks = ", ".join("?" * len(batch))
        for chunk_id, entity, surface, is_title, occurrences in sql.query(
            f"SELECT {_MENTION_COLUMNS} FROM mentions WHERE tenant = ? AND {column} IN ({marks})",
            (tenant, *batch),
        ):
            rows[chunk_id][0].append(Mention(entity, surface, bool(is_title), occurrences))
        for chunk_id, a, b, label in sql.query(
            f"SELECT {_EDGE_COLUMNS} FROM edges WHERE tenant = ? AND {column} IN ({marks}) ORDER BY seq",
            (tenant, *batch),
        ):
            rows[chunk_id][1].append(Relation(a, b, label))
    return dict(rows)


def _delete_rows(sql: SqlWriter, tenant: str, column: str, values: Sequence[str]) -> None:
    for batch in _batches(values):
        marks = ", ".join("?" * len(batch))
        for table in ("mentions", "edges"):
            sql.execute(f"DELETE FROM {table} WHERE tenant = ? AND {column} IN ({marks})", (tenant, *batch))


def _group(graphs: Sequence[ChunkGraph]) -> dict[str, list[str]]:
    by_tenant: defaultdict[str, list[str]] = defaultdict(list)
    for g in graphs:
        by_tenant[g.tenant].append(g.chunk_id)
    return dict(by_tenant)


def _batches(values: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(values), _MAX_PARAMS):
        yield values[start : start + _MAX_PARAMS]


def _most_common(counter: Counter[str], n: int) -> list[tuple[str, int]]:
    """Deterministic ``Counter.most_common``: ties broken by the label, not by insertion order."""
    return sorted(counter.items(), key=lambda item: (-item[1], item[0]))[:n]


def _resolve_one(graph: TenantGraph | None, name: str) -> str:
    keys = graph.resolve(name) if graph is not None else []
    if not keys:
        raise NotFound(f"no entity named {name!r}")
    return keys[0]


def _entity_info(graph: TenantGraph | None, key: str) -> EntityInfo:
    assert graph is not None
    data = graph.graph.nodes[key]
    return EntityInfo(
        name=key,
        mentions=data["mentions"],
        chunk_ids=tuple(sorted(data["chunks"])),
        surfaces=tuple(surface for surface, _ in _most_common(data["surfaces"], TOP_SURFACES)),
        title_chunk_ids=tuple(sorted(data["title_chunks"])),
        degree=graph.graph.degree(key),
    )
