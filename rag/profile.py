"""A profile: settings overrides measured on someone's own questions, kept as data.

``rag tune`` writes one (the configuration it chose, the questions it was tuned on and what it measured
there); ``RAG_PROFILE=profile.json`` makes the service run it, under any ``RAG_*`` variable set
explicitly; ``rag eval qa --profile`` checks it on questions it was not tuned on. Only query-time
settings may appear in a profile: where the data lives, keys and limits are the operator's, not a
measurement's.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

FORMAT = "costrag-profile/1"

# The settings a profile may set: what retrieval, trimming, the answer policy and the cache do per query.
PROFILE_KEYS = frozenset(
    {
        "retrieval_mode",
        "rerank",
        "kg_enabled",
        "top_k",
        "token_budget",
        "trim",
        "trim_floor",
        "link_passages",
        "link_keep_score",
        "routing",
        "cheap_tier",
        "default_tier",
        "router",
        "cache_enabled",
        "cache_threshold",
        "max_answer_tokens",
    }
)


@dataclass(frozen=True)
class Profile:
    name: str
    settings: Mapping[str, object]
    dataset: str | None = None  # the dataset (folder name) it was tuned on
    tuned_questions: frozenset[str] = frozenset()  # their ids: an eval of the profile leaves them out
    expected: Mapping[str, object] = field(default_factory=dict)  # what ``rag tune`` measured

    def __post_init__(self) -> None:
        unknown = sorted(set(self.settings) - PROFILE_KEYS)
        if unknown:
            raise ValueError(
                f"profile {self.name!r} sets {', '.join(unknown)}, which a profile may not set "
                f"(allowed: {', '.join(sorted(PROFILE_KEYS))})"
            )

    def as_json(self) -> dict[str, object]:
        return {
            "format": FORMAT,
            "name": self.name,
            "settings": dict(self.settings),
            "tuned_on": {"dataset": self.dataset, "questions": sorted(self.tuned_questions)},
            "expected": dict(self.expected),
        }


def parse_profile(data: object, source: str = "profile") -> Profile:
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        # ValueError, not TypeError: pydantic reports a ValueError raised in a validator as a settings error
        raise ValueError(f"{source}: not a profile (a JSON object with \"format\": \"{FORMAT}\")")
    settings = data.get("settings")
    if not isinstance(settings, dict):
        raise ValueError(f"{source}: \"settings\" must be an object of settings overrides")  # noqa: TRY004
    tuned = data.get("tuned_on") or {}
    return Profile(
        name=str(data.get("name") or source),
        settings=settings,
        dataset=tuned.get("dataset"),
        tuned_questions=frozenset(tuned.get("questions") or ()),
        expected=data.get("expected") or {},
    )


def load_profile(path: Path) -> Profile:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"profile {path} does not exist") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"profile {path} is not readable JSON: {exc}") from None
    return parse_profile(data, str(path))


def write_profile(profile: Profile, path: Path) -> None:
    """Write the profile, and check that what was written loads back."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(profile.as_json(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    load_profile(path)


def beneath(explicit: Mapping[str, object], profile: Profile) -> dict[str, object]:
    """``explicit`` settings over the profile's: a key set explicitly wins, and for a nested object
    (``router``) each of its keys does."""
    merged: dict[str, object] = dict(profile.settings)
    for key, value in explicit.items():
        below = merged.get(key)
        if isinstance(value, Mapping) and isinstance(below, Mapping):
            merged[key] = {**below, **value}
        else:
            merged[key] = value
    return merged
