"""Profiles as settings: written and read back, applied beneath explicit settings, refused when wrong."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from rag.generation.router import RoutingParams, with_overrides
from rag.profile import Profile, load_profile, write_profile
from rag.settings import Settings

PROFILE = Profile(
    name="tuned-test",
    settings={"top_k": 3, "trim_floor": 0.7, "routing": "fixed", "default_tier": "cheap",
              "router": {"min_confidence": 0.6}},
    dataset="xquad_en",
    tuned_questions=frozenset({"q1", "q2"}),
    expected={"f1": 0.7},
)


def test_a_written_profile_loads_back_equal(tmp_path: Path) -> None:
    path = tmp_path / "profile.json"
    write_profile(PROFILE, path)
    assert load_profile(path) == PROFILE
    assert json.loads(path.read_text())["tuned_on"]["questions"] == ["q1", "q2"]


def test_settings_take_the_profile_beneath_explicit_values(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "profile.json"
    write_profile(PROFILE, path)
    monkeypatch.setenv("RAG_PROFILE", str(path))
    monkeypatch.setenv("RAG_TOP_K", "4")  # explicit: wins over the profile's 3
    monkeypatch.setenv("RAG_ROUTER__MAX_ECHO", "0.8")  # a nested key beside the profile's own
    settings = Settings(data_dir=tmp_path)
    assert settings.top_k == 4
    assert settings.trim_floor == 0.7 and settings.routing == "fixed" and settings.default_tier == "cheap"
    params = with_overrides(RoutingParams(), settings.router)
    assert params.min_confidence == 0.6 and params.max_echo == 0.8
    # a copy of loaded settings keeps what it holds (the profile fills nothing already set)
    assert Settings.model_validate(settings.model_dump()).top_k == 4


def test_a_profile_may_not_set_what_belongs_to_the_operator(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="sets data_dir, which a profile may not set"):
        Profile(name="bad", settings={"data_dir": "/tmp"})
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"format": "costrag-profile/1", "settings": {"api_keys": {"a": "b"}}}))
    with pytest.raises(ValidationError, match="sets api_keys, which a profile may not set"):
        Settings(data_dir=tmp_path, profile=path)


def test_missing_or_malformed_profiles_fail_at_start_up_with_the_reason(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="does not exist"):
        Settings(data_dir=tmp_path, profile=tmp_path / "nope.json")
    (tmp_path / "x.json").write_text("{not json")
    with pytest.raises(ValidationError, match="not readable JSON"):
        Settings(data_dir=tmp_path, profile=tmp_path / "x.json")
    (tmp_path / "y.json").write_text(json.dumps({"settings": {}}))
    with pytest.raises(ValidationError, match="not a profile"):
        Settings(data_dir=tmp_path, profile=tmp_path / "y.json")


def test_router_overrides_are_typed_and_unknown_names_refused(tmp_path: Path) -> None:
    params = with_overrides(RoutingParams(), {"max_answer_words": "8", "accept_yes_no": "false"})
    assert params.max_answer_words == 8 and params.accept_yes_no is False
    with pytest.raises(ValidationError, match="unknown router settings"):
        Settings(data_dir=tmp_path, router={"min_suport": 0.5})
    with pytest.raises(ValidationError, match="whole number"):
        Settings(data_dir=tmp_path, router={"max_answer_words": 2.5})
