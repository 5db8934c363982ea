"""The retrieval parameters fitted on the DEV data (``evals/fit_weighting.py`` writes them, and
``evals/fit_trim.py`` the trim's focus rule; the trim's floor is chosen on answers from the ``rag tune``
sweeps, docs/results/quality.md), as one versioned file shipped with the code:
``retrieval/params/fitted.json``."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

from retrieval.budget import TrimParams
from retrieval.hybrid import GraphParams
from retrieval.rerank import RerankParams
from retrieval.weighting import WeightingParams

FITTED_FILE = Path(__file__).parent / "params" / "fitted.json"


@dataclass(frozen=True)
class FittedParams:
    weighting: WeightingParams
    rerank: RerankParams
    trim: TrimParams
    graph: GraphParams = field(default_factory=GraphParams)

    def as_json(self) -> dict:
        return {
            "weighting": asdict(self.weighting),
            "rerank": asdict(self.rerank),
            "trim": asdict(self.trim),
            "graph": asdict(self.graph),
        }


def parse_fitted(data: dict) -> FittedParams:
    return FittedParams(
        weighting=WeightingParams(**data["weighting"]),
        rerank=RerankParams(**data.get("rerank", {})),
        trim=TrimParams(**data.get("trim", {})),
        graph=GraphParams(**data.get("graph", {})),
    )


@lru_cache(maxsize=1)
def load_fitted(path: Path = FITTED_FILE) -> FittedParams:
    return parse_fitted(json.loads(path.read_text()))


def save_fitted(fitted: FittedParams, path: Path = FITTED_FILE) -> None:
    """Write the file the service loads, and check that what was written loads back."""
    path.write_text(json.dumps(fitted.as_json(), indent=2) + "\n")
    parse_fitted(json.loads(path.read_text()))
    load_fitted.cache_clear()
