"""What the knowledge graph adds to indexing: the same documents through the real indexer, graph on and off.

    .venv/bin/python scripts/bench_graph_index.py --dataset ../shared/datasets/hotpotqa --docs 1000

Each run gets a fresh data dir and a warm service (models loaded before the clock starts), and runs
the whole path a user's upload takes: parse, chunk, embed, the dense store, BM25, registry, and
the graph when it is on. The runs alternate (off, on, off, on, ...) so that a busy machine slows
both alike. The result is the median time per chunk of each, and their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from evals.corpus_index import corpus_uploads
from evals.datasets import Dataset, load_dataset
from rag.service import Service
from rag.settings import get_settings
from rag.types import DEFAULT_TENANT


def index_once(dataset: Dataset, kg_enabled: bool) -> tuple[float, int]:
    """Seconds to index the corpus into a fresh data dir, and the chunks it made."""
    with tempfile.TemporaryDirectory() as data_dir:
        settings = get_settings().model_copy(
            update={"data_dir": Path(data_dir), "kg_enabled": kg_enabled, "cache_enabled": False}
        )
        settings = settings.model_copy(update={"model_dir": get_settings().models_dir})
        service = Service.open(settings)
        try:
            service.warm_up(generation=False)
            started = time.perf_counter()
            outcomes = service.indexer.add_many(corpus_uploads(dataset), DEFAULT_TENANT)
            seconds = time.perf_counter() - started
            return seconds, sum(o.document.chunk_count for o in outcomes if o.document is not None)
        finally:
            service.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, required=True)
    parser.add_argument("--docs", type=int, default=1000, help="the first N corpus documents")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    full = load_dataset(args.dataset)
    dataset = Dataset(full.name, full.corpus[: args.docs], full.queries)
    per_chunk: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(args.repeats):
        for kg_enabled in (False, True):
            seconds, chunks = index_once(dataset, kg_enabled)
            per_chunk[kg_enabled].append(seconds / chunks * 1000)
            print(f"graph {'on ' if kg_enabled else 'off'}: {chunks} chunks in {seconds:.1f} s "
                  f"({seconds / chunks * 1000:.2f} ms per chunk)", flush=True)
    off, on = statistics.median(per_chunk[False]), statistics.median(per_chunk[True])
    print(f"median ms per chunk: off {off:.2f}, on {on:.2f}; the graph adds {on - off:.2f} ms per chunk, "
          f"{on / off:.3f}x the time without it")


if __name__ == "__main__":
    main()
