"""An indexed copy of a dataset's corpus, built once through the real indexer and reused by every eval.

The data dir is keyed by the corpus's content hash and the settings that shape the index (embedding
model, chunk sizes), so a changed corpus or chunker gets a fresh index and an unchanged one is reused.
A ``READY`` marker is written last: a build that was interrupted is started over, never half-used.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tqdm import tqdm

from evals.datasets import Dataset
from indexing.indexer import Upload
from rag.service import Service
from rag.settings import Settings
from rag.types import DEFAULT_TENANT

READY = "READY.json"


def index_key(dataset: Dataset, settings: Settings) -> str:
    digest = hashlib.sha256()
    for doc in dataset.corpus:
        digest.update(doc.as_markdown().encode())
        digest.update(b"\0")
    shape = f"{settings.embedding_model}/{settings.chunk_tokens}/{settings.chunk_overlap_tokens}"
    digest.update(shape.encode())
    return f"{dataset.name}-{digest.hexdigest()[:12]}"


def corpus_uploads(dataset: Dataset) -> Iterator[Upload]:
    """Each corpus document as the service receives it: Markdown named ``<corpus id>.md``."""
    return (Upload(f"{doc.id}.md", doc.as_markdown().encode()) for doc in dataset.corpus)


def document_ids_by_corpus_id(service: Service) -> dict[str, str]:
    """Registry document id → the dataset's corpus id (uploads are named ``<corpus id>.md``)."""
    return {record.id: record.name.removesuffix(".md") for record in service.registry.list(DEFAULT_TENANT)}


@contextmanager
def indexed_corpus(
    dataset: Dataset, root: Path, settings: Settings, generation: bool = False
) -> Iterator[Service]:
    """A warm service over the dataset's corpus, built under ``root`` on first use."""
    data_dir = root / index_key(dataset, settings)
    # The models stay where the caller's settings keep them; only the indexes move.
    settings = settings.model_copy(update={"data_dir": data_dir, "model_dir": settings.models_dir})
    if not (data_dir / READY).is_file() and data_dir.exists():
        shutil.rmtree(data_dir)  # an interrupted build: start over rather than trust part of it
    service = Service.open(settings)
    try:
        service.warm_up(generation=generation)
        if not (data_dir / READY).is_file():
            uploads = corpus_uploads(dataset)
            with tqdm(
                total=len(dataset.corpus), unit="doc", desc=f"index {dataset.name}", file=sys.stderr
            ) as bar:
                outcomes = service.indexer.add_many(uploads, DEFAULT_TENANT, on_done=lambda _: bar.update(1))
            rejected = [o.name for o in outcomes if o.status == "rejected"]
            (data_dir / READY).write_text(
                json.dumps({"documents": len(outcomes) - len(rejected), "rejected": rejected}, indent=1)
            )
        yield service
    finally:
        service.close()
