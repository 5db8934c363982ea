"""Reader for the shared evaluation format: ``corpus.jsonl`` and ``queries.jsonl`` in one folder."""

from __future__ import annotations

import json
import random
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from pathlib import Path


@dataclass(frozen=True)
class CorpusDoc:
    id: str
    title: str
    text: str

    def as_markdown(self) -> str:
        """The form in which a corpus document is uploaded: its title as the heading, then its text."""
        return f"# {self.title}\n\n{self.text}\n"


@dataclass(frozen=True)
class Query:
    id: str
    question: str
    answers: tuple[str, ...]
    gold_doc_ids: tuple[str, ...]
    type: str
    lang: str


@dataclass(frozen=True)
class Dataset:
    name: str
    corpus: tuple[CorpusDoc, ...]
    queries: tuple[Query, ...]


def _jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: a dataset folder holds corpus.jsonl and queries.jsonl")
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def load_dataset(folder: Path) -> Dataset:
    corpus = tuple(
        CorpusDoc(d["id"], d.get("title") or "", d["text"]) for d in _jsonl(folder / "corpus.jsonl")
    )
    queries = tuple(
        Query(
            id=q["id"],
            question=q["question"],
            answers=tuple(q.get("answers") or ()),
            gold_doc_ids=tuple(q.get("gold_doc_ids") or ()),
            type=q.get("type", ""),
            lang=q.get("lang", "en"),
        )
        for q in _jsonl(folder / "queries.jsonl")
    )
    return Dataset(folder.resolve().name, corpus, queries)


def select_queries(
    queries: Sequence[Query],
    limit: int | None = None,
    sample: int | None = None,
    seed: int = 0,
    exclude: Collection[str] = (),
) -> list[Query]:
    """The questions an eval asks: a seeded random ``sample`` of the dataset (without the ``exclude``d
    ids), or its first ``limit``, or all of it. A sample is drawn from the whole dataset, because the
    first questions of a dataset often come from one or two of its documents."""
    if sample is not None and limit is not None:
        raise ValueError("give either a sample size or a limit, not both")
    pool = [q for q in queries if q.id not in exclude]
    if sample is not None:
        if sample < 1:
            raise ValueError("the sample size must be at least 1")
        return random.Random(seed).sample(pool, min(sample, len(pool)))
    return pool[:limit] if limit else pool


def without_gold_documents(
    dataset: Dataset, queries: Sequence[Query], share: float, seed: int = 0
) -> tuple[Dataset, frozenset[str]]:
    """The dataset with the gold documents of a seeded sample of ``share`` of ``queries`` taken out of
    its corpus, and the ids of every query that lost a gold document (they can no longer be answered
    from the corpus; other queries can share a removed document)."""
    if not 0.0 < share < 1.0:
        raise ValueError("the unanswerable share must be between 0 and 1")
    chosen = random.Random(f"unanswerable-{seed}").sample(list(queries), max(1, round(share * len(queries))))
    removed = {doc for q in chosen for doc in q.gold_doc_ids}
    if not removed:
        raise ValueError("the chosen questions name no gold documents")
    lost = frozenset(q.id for q in dataset.queries if removed & set(q.gold_doc_ids))
    corpus = tuple(doc for doc in dataset.corpus if doc.id not in removed)
    return replace(dataset, name=f"{dataset.name}-without{len(removed)}", corpus=corpus), lost
