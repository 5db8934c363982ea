"""API keys and tenant isolation: the key store, every /v1 route behind a key, the `rag keys` command,
and two tenants with near-identical documents that never see each other's anything."""

from __future__ import annotations

import io
import logging
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from rag.errors import InvalidRequest, Unauthorized
from rag.keys import KEYS_FILE, Authenticator, KeyStore, digest, ensure_first_key, open_key_store
from tests.conftest import MODEL_DIR, REPO, LiveServer

RAG = str(Path(sys.executable).with_name("rag"))

REPORT = """# Harbor Logistics annual report

Harbor Logistics moved 41,000 containers through its terminals last year, most of them refrigerated.
The headquarters of Harbor Logistics is in {city}, where the company was founded by two brothers.
Its fleet counts nineteen vessels, and the board approved two new cranes for the northern pier.
"""
QUESTION = "In which city is the headquarters of Harbor Logistics?"


# --- the key store and the authenticator -------------------------------------------------------------


def test_a_key_is_stored_only_as_its_digest_and_maps_to_its_tenant(tmp_path: Path) -> None:
    store = KeyStore.embedded(tmp_path / KEYS_FILE)
    key = store.create("acme")
    assert store.tenant_of(digest(key)) == "acme" and store.tenant_of(digest(key + "x")) is None
    store.close()
    rows = sqlite3.connect(tmp_path / KEYS_FILE).execute("SELECT * FROM api_keys").fetchall()
    dump = repr(rows) + "".join(p.read_bytes().decode("latin-1") for p in tmp_path.iterdir())
    assert key not in dump and key[10:] not in dump  # neither the key nor its secret part is kept


@pytest.fixture(params=["sqlite", "postgres"])
def key_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[KeyStore]:
    """The key store on each backend: the same tests run on both."""
    url = request.getfixturevalue("postgres_url") if request.param == "postgres" else None
    store = open_key_store(tmp_path, url)
    yield store
    store.close()


def test_authenticator_takes_configured_and_stored_keys_and_refuses_the_rest(key_store: KeyStore) -> None:
    store = key_store
    stored = store.create("beta")
    auth = Authenticator(store, {"alpha": SecretStr("configured-secret")})
    assert auth.tenant_for("configured-secret") == "alpha"
    assert auth.tenant_for(stored) == "beta"
    for bad in (None, "", "configured-secre", stored.upper()):
        with pytest.raises(Unauthorized):
            auth.tenant_for(bad)
    store.revoke(stored[:10])
    with pytest.raises(Unauthorized):
        auth.tenant_for(stored)


@pytest.mark.parametrize("name", ["", "a b", "../etc", "x" * 65, "-lead", "tenant\n"])
def test_tenant_names_are_checked(tmp_path: Path, name: str) -> None:
    with pytest.raises(InvalidRequest):
        KeyStore.embedded(tmp_path / KEYS_FILE).create(name)


def test_the_first_start_creates_one_key_and_only_when_there_is_none(key_store: KeyStore) -> None:
    store = key_store
    assert ensure_first_key(store, {"ops": SecretStr("k")}, "default") is None  # configured keys suffice
    first = ensure_first_key(store, {}, "default")
    assert first and store.tenant_of(digest(first)) == "default"
    assert ensure_first_key(store, {}, "default") is None and store.count() == 1


def test_rag_keys_create_prints_the_key_alone_on_the_last_line(tmp_path: Path) -> None:
    env = {**os.environ, "RAG_DATA_DIR": str(tmp_path), "RAG_MODEL_DIR": str(MODEL_DIR)}
    run = lambda *args: subprocess.run([RAG, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False)
    created = run("keys", "create", "--tenant", "acme")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip().splitlines()[-1]
    assert key.startswith("rag_") and " " not in key
    store = KeyStore.embedded(tmp_path / KEYS_FILE)
    assert store.tenant_of(digest(key)) == "acme"
    listed = run("keys", "list").stdout
    assert "acme" in listed and key not in listed
    assert run("keys", "revoke", key[:10]).returncode == 0 and store.tenant_of(digest(key)) is None
    assert run("keys", "create", "--tenant", "no spaces").returncode == 1


# --- over HTTP -----------------------------------------------------------------------------------------


def _v1_operations(spec: dict) -> list[tuple[str, str]]:
    return [
        (method.upper(), path.replace("{document_id}", "x").replace("{name}", "x"))
        for path, item in spec["paths"].items()
        for method in item
        if path.startswith("/v1/") or path == "/metrics"
    ]


def test_every_v1_route_needs_a_valid_key(live_server: LiveServer, caplog: pytest.LogCaptureFixture) -> None:
    spec = httpx.get(f"{live_server.url}/openapi.json").json()
    operations = _v1_operations(spec)
    assert len(operations) >= 8
    wrong = "rag_" + "A" * 43
    caplog.set_level(logging.DEBUG)
    with httpx.Client(base_url=live_server.url, timeout=60) as anonymous:
        for method, path in operations:
            for headers in ({}, {"Authorization": f"Bearer {wrong}"}, {"Authorization": f"Basic {wrong}"}):
                response = anonymous.request(method, path, headers=headers)
                assert response.status_code == 401, (method, path, headers, response.text)
                assert response.headers["www-authenticate"] == "Bearer"
                assert response.json()["error"]["code"] == "unauthorized"
        assert anonymous.get("/healthz").status_code == 200  # liveness stays open, and says nothing of tenants
    assert wrong not in caplog.text and live_server.key not in caplog.text
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"  # clients learn the scheme


def _upload(client: httpx.Client, city: str) -> str:
    response = client.post(
        "/v1/documents", files=[("files", ("harbor.md", io.BytesIO(REPORT.format(city=city).encode())))]
    )
    assert response.status_code == 201, response.text
    return response.json()["documents"][0]["id"]


def test_two_tenants_with_near_identical_documents_share_nothing(live_server: LiveServer) -> None:
    clients = {
        tenant: httpx.Client(base_url=live_server.url, timeout=300, headers={"Authorization": f"Bearer {key}"})
        for tenant, key in (("lisbon-co", live_server.key_for("lisbon-co")), ("oslo-co", live_server.key_for("oslo-co")))
    }
    lisbon, oslo = clients["lisbon-co"], clients["oslo-co"]
    try:
        ids = {"lisbon-co": _upload(lisbon, "Lisbon"), "oslo-co": _upload(oslo, "Oslo")}
        assert ids["lisbon-co"] != ids["oslo-co"]

        first = lisbon.post("/v1/query", json={"question": QUESTION}).json()
        assert first["cache"] == "miss" and "lisbon" in first["answer"].lower()
        assert {c["document_id"] for c in first["citations"]} == {ids["lisbon-co"]}
        assert lisbon.post("/v1/query", json={"question": QUESTION}).json()["cache"] == "hit"

        # The same question from the other tenant: no cache hit across tenants, its own document only.
        other = oslo.post("/v1/query", json={"question": QUESTION}).json()
        assert other["cache"] == "miss" and "oslo" in other["answer"].lower() and "lisbon" not in other["answer"].lower()
        assert {c["document_id"] for c in other["citations"]} == {ids["oslo-co"]}
        passages = oslo.post("/v1/retrieve", json={"question": QUESTION, "top_k": 10}).json()["passages"]
        assert passages and {p["document_id"] for p in passages} == {ids["oslo-co"]}

        # Another tenant's document is not there at all: not listed, not readable, not deletable.
        assert [d["id"] for d in oslo.get("/v1/documents").json()["documents"]] == [ids["oslo-co"]]
        assert oslo.get(f"/v1/documents/{ids['lisbon-co']}").status_code == 404
        assert oslo.delete(f"/v1/documents/{ids['lisbon-co']}").status_code == 404
        assert lisbon.get(f"/v1/documents/{ids['lisbon-co']}").status_code == 200

        # The graph: each tenant finds its own city only.
        assert not oslo.get("/v1/graph/entities", params={"q": "lisbon"}).json()["entities"]
        assert oslo.get("/v1/graph/entities/lisbon/neighbors").status_code == 404
        assert lisbon.get("/v1/graph/entities", params={"q": "lisbon"}).json()["entities"]

        # Usage: each sees its own counters only.
        usage = {t: c.get("/v1/usage").json() for t, c in clients.items()}
        assert usage["lisbon-co"]["tenant"] == "lisbon-co" and usage["lisbon-co"]["total"]["queries"] == 2
        assert usage["oslo-co"]["total"]["queries"] == 1 and usage["oslo-co"]["total"]["cache_hits"] == 0
        metrics = oslo.get("/metrics").text
        assert 'tenant="oslo-co"' in metrics and "lisbon-co" not in metrics

        # Deleting one tenant's document leaves the other's answerable from its cache and stores.
        assert lisbon.delete(f"/v1/documents/{ids['lisbon-co']}").status_code == 200
        assert oslo.post("/v1/query", json={"question": QUESTION}).json()["cache"] == "hit"
        assert oslo.get(f"/v1/documents/{ids['oslo-co']}").status_code == 200
    finally:
        for client in clients.values():
            client.close()
