"""Do the stores agree with the registry? `rag check` reports the differences, `--repair` mends them.

The registry is the source of truth. An indexed document must have exactly its chunks in the BM25 and
the dense store, and graph rows whenever its chunks name entities; a pending or deleting document is an
interrupted write; anything a store holds for a document the registry does not know is an orphan.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

from indexing.registry import INDEXED, DocumentRegistry

Problem = Literal["unfinished", "missing", "partial", "orphan"]

# Stores whose entries are one per chunk; the graph's are mention rows, so only presence is compared.
CHUNK_STORES = ("bm25", "dense")
GRAPH = "graph"


class CensusStore(Protocol):
    def documents(self) -> dict[tuple[str, str], int]: ...

    def delete_document(self, tenant: str, document_id: str) -> int: ...


@dataclass(frozen=True)
class Difference:
    store: str
    tenant: str
    document_id: str
    problem: Problem
    expected: int
    found: int

    def describe(self) -> str:
        where = f"{self.store}: " if self.store != "registry" else ""
        what = {
            "unfinished": "an interrupted write (registry state is not 'indexed')",
            "missing": f"indexed, but none of its {self.expected} entries are here",
            "partial": f"{self.found} entries here, {self.expected} expected",
            "orphan": f"{self.found} entries of a document the registry does not hold",
        }[self.problem]
        return f"{where}{self.tenant}/{self.document_id}: {what}"


def find_differences(
    registry: DocumentRegistry,
    stores: Mapping[str, CensusStore],
    graph_rows_expected: Callable[[str, str], int],
) -> list[Difference]:
    """Every disagreement between the registry and the stores; empty when they agree.

    ``graph_rows_expected`` is asked only for indexed documents the graph holds nothing of: a document
    whose chunks name no entity rightly has no rows. The graph writes a document in one transaction, so
    a document it holds rows of is complete.
    """
    census = registry.census()
    differences = [
        Difference("registry", tenant, document_id, "unfinished", chunks, chunks)
        for (tenant, document_id), (state, chunks) in census.items()
        if state != INDEXED
    ]
    indexed = {key: chunks for key, (state, chunks) in census.items() if state == INDEXED}
    for name, store in stores.items():
        held = store.documents()
        for key, found in held.items():
            if key not in census:
                differences.append(Difference(name, *key, "orphan", 0, found))
        for key, chunks in indexed.items():
            found = held.get(key, 0)
            if name == GRAPH:
                if found == 0 and (expected := graph_rows_expected(*key)) > 0:
                    differences.append(Difference(name, *key, "missing", expected, 0))
            elif found != chunks:
                differences.append(Difference(name, *key, "missing" if found == 0 else "partial", chunks, found))
    return differences
