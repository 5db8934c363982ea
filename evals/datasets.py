"""Reader for the shared evaluation format: ``corpus.jsonl`` and ``queries.jsonl`` in one folder."""

from __future__ import annotations

import json
from dataclasses import dataclass
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
