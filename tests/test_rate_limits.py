"""Rate limits: the limiter on fixed inputs (in-process counters), two workers' limiters sharing one limit in a
real Valkey server, and the 429 over HTTP with its Retry-After, message and counts."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from api.ratelimit import RateLimiter, key_id
from rag.errors import RateLimited
from rag.settings import RateLimitSettings, Settings
from tests.conftest import NO_RATE_LIMITS, LiveServer, make_settings


def limiter(tmp_path: Path, **overrides) -> RateLimiter:
    settings = Settings(data_dir=tmp_path, **{**NO_RATE_LIMITS, **overrides})
    rate_limiter = RateLimiter(settings)
    rate_limiter.warm_up()
    return rate_limiter


def admitted(rate_limiter: RateLimiter, n: int, kind="query", tenant="acme", key: str | None = "k1", cost=1) -> int:
    count = 0
    for _ in range(n):
        try:
            rate_limiter.check(kind, tenant, key, cost)
            count += 1
        except RateLimited:
            pass
    return count


def test_a_key_gets_its_limit_and_then_a_429_naming_it(tmp_path: Path) -> None:
    rate_limiter = limiter(tmp_path, rate_limits_per_key=RateLimitSettings(query="3/10 seconds"))
    assert admitted(rate_limiter, 3) == 3
    with pytest.raises(RateLimited) as refused:
        rate_limiter.check("query", "acme", "k1")
    error = refused.value
    assert error.status_code == 429 and error.code == "rate_limited"
    assert f"3 questions per 10 seconds for the key {key_id('k1')[:8]}" in error.message
    assert "k1" not in error.message.replace(key_id("k1")[:8], "")  # never the key itself
    assert 9 <= error.retry_after() <= 10
    # Another key of the tenant, and other kinds of request, have their own counters.
    assert admitted(rate_limiter, 3, key="k2") == 3
    assert admitted(rate_limiter, 5, kind="retrieve") == 5


def test_a_tenant_limit_is_shared_by_its_keys_and_can_be_overridden(tmp_path: Path) -> None:
    rate_limiter = limiter(
        tmp_path,
        rate_limits_per_tenant=RateLimitSettings(query="4/minute"),
        tenant_rate_limits={"big": RateLimitSettings(query="10/minute")},
    )
    assert admitted(rate_limiter, 2, key="a") + admitted(rate_limiter, 5, key="b") == 4
    with pytest.raises(RateLimited, match="4 questions per minute for the tenant 'acme'"):
        rate_limiter.check("query", "acme", "c")
    assert admitted(rate_limiter, 12, tenant="big") == 10
    assert admitted(rate_limiter, 12, kind="retrieve", tenant="big") == 12  # what the override leaves: the default


def test_an_override_keeps_the_tenant_defaults_it_does_not_name(tmp_path: Path) -> None:
    rate_limiter = limiter(
        tmp_path,
        rate_limits_per_tenant=RateLimitSettings(query="4/minute", retrieve="3/minute"),
        tenant_rate_limits={"big": {"query": "10/minute"}},
    )
    assert admitted(rate_limiter, 12, tenant="big") == 10
    assert admitted(rate_limiter, 5, kind="retrieve", tenant="big") == 3
    assert admitted(rate_limiter, 6, tenant="other", key=None) == 4  # auth off: the tenant's limit alone


def test_a_burst_then_the_sustained_rate(tmp_path: Path) -> None:
    rate_limiter = limiter(tmp_path, rate_limits_per_key=RateLimitSettings(retrieve="2/second;3/minute"))
    assert admitted(rate_limiter, 5, kind="retrieve") == 2  # the burst: 2 in a second
    time.sleep(1.1)
    assert admitted(rate_limiter, 5, kind="retrieve") == 1  # the minute's third; the refused used up nothing
    with pytest.raises(RateLimited, match="3 retrievals per minute") as refused:
        rate_limiter.check("retrieve", "acme", "k1")
    assert 55 <= refused.value.retry_after() <= 60


def test_uploaded_bytes_are_counted_by_size(tmp_path: Path) -> None:
    rate_limiter = limiter(tmp_path, rate_limits_per_tenant=RateLimitSettings(upload_bytes="1000/minute"))
    assert admitted(rate_limiter, 3, kind="upload_bytes", cost=400) == 2
    with pytest.raises(RateLimited, match="5000 uploaded bytes in one request exceed the limit of 1000 per minute"):
        rate_limiter.check("upload_bytes", "acme", "k1", cost=5000)


def test_an_upload_refused_for_its_bytes_uses_none_of_the_upload_count(tmp_path: Path) -> None:
    rate_limiter = limiter(
        tmp_path, rate_limits_per_tenant=RateLimitSettings(upload="2/minute", upload_bytes="1000/minute")
    )
    rate_limiter.check_all("acme", "k1", [("upload", 1), ("upload_bytes", 900)])
    for _ in range(3):
        with pytest.raises(RateLimited, match="1000 uploaded bytes per minute"):
            rate_limiter.check_all("acme", "k1", [("upload", 1), ("upload_bytes", 500)])
    rate_limiter.check_all("acme", "k1", [("upload", 1), ("upload_bytes", 100)])  # the second upload
    with pytest.raises(RateLimited, match="2 uploads per minute"):
        rate_limiter.check_all("acme", "k1", [("upload", 1), ("upload_bytes", 1)])


def test_a_malformed_limit_fails_at_start_up(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        RateLimitSettings(query="ten per second")
    dead = Settings(data_dir=tmp_path, rate_limit_storage="redis://127.0.0.1:1")
    with pytest.raises(Exception):  # noqa: B017 -- redis-py's connection error, whatever its class
        RateLimiter(dead).warm_up()


def test_two_workers_share_one_limit_in_valkey(tmp_path: Path, valkey_url: str) -> None:
    """Each worker process builds its own limiter from the same settings; the counters are in Valkey."""
    limits = {"rate_limits_per_tenant": RateLimitSettings(query="5/minute"), "rate_limit_storage": valkey_url}
    first, second = limiter(tmp_path / "w1", **limits), limiter(tmp_path / "w2", **limits)
    tenant = f"shared-{time.time_ns()}"  # the server outlives one test run's counters: a fresh tenant
    results = [admitted(worker, 1, tenant=tenant, key=None) for worker in (first, second) * 4]
    assert results == [1, 1, 1, 1, 1, 0, 0, 0]
    with pytest.raises(RateLimited) as refused:
        second.check("query", tenant, None)
    assert 1 <= refused.value.retry_after() <= 60
    # In-process counters, by contrast, are per worker: each would have admitted five.
    apart = [limiter(tmp_path / "m1", rate_limits_per_tenant=RateLimitSettings(query="5/minute")) for _ in range(2)]
    assert sum(admitted(worker, 5, tenant=tenant, key=None) for worker in apart) == 10


@pytest.fixture(scope="module")
def strict_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    settings = make_settings(
        tmp_path_factory.mktemp("data"),
        warm_generation=False,
        rate_limits_per_key=RateLimitSettings(query="2/minute", upload="1/minute", upload_bytes="1000/minute"),
    )
    with LiveServer(settings) as server:
        yield server


def test_over_http_a_429_with_retry_after_and_the_rejection_counted(strict_server: LiveServer) -> None:
    with httpx.Client(base_url=strict_server.url, headers=strict_server.auth_headers, timeout=120) as http:
        # Nothing is indexed: each answer is an abstention at no cost, but each request counts.
        assert [http.post("/v1/query", json={"question": "Who?"}).status_code for _ in range(2)] == [200, 200]
        refused = http.post("/v1/query", json={"question": "Who?"})
        assert refused.status_code == 429 and 1 <= int(refused.headers["Retry-After"]) <= 60
        error = refused.json()["error"]
        assert error["code"] == "rate_limited" and "2 questions per minute for the key" in error["message"]
        # The chat endpoint is the same kind of request: refused too, in OpenAI's error shape.
        chat = http.post("/v1/chat/completions", json={"model": "costrag", "messages": [{"role": "user", "content": "Who?"}]})
        assert chat.status_code == 429 and chat.json()["error"]["type"]
        # Retrieval has its own limit.
        assert http.post("/v1/retrieve", json={"question": "Who?"}).status_code == 200
        # An upload declaring more bytes than a minute allows.
        big = http.post("/v1/documents", files=[("files", ("big.txt", b"word " * 400))])
        assert big.status_code == 429 and "uploaded bytes" in big.json()["error"]["message"]
        # The refused upload used none of the one upload a minute allows.
        small = http.post("/v1/documents", files=[("files", ("small.txt", b"A small note."))])
        assert small.status_code < 300, small.text
        again = http.post("/v1/documents", files=[("files", ("again.txt", b"Another note."))])
        assert again.status_code == 429 and "1 uploads per minute" in again.json()["error"]["message"]
        usage = http.get("/v1/usage").json()["total"]
        assert usage["rejected"] == {"rate_limit": 4} and usage["queries"] == 2
        metrics = http.get("/metrics").text
        assert 'rag_rejections_total{tenant="default",reason="rate_limit"} 4' in metrics
    # Another key of the same tenant has its own per-key counter.
    other = {"Authorization": f"Bearer {strict_server.key_for('default')}"}
    assert httpx.post(f"{strict_server.url}/v1/query", json={"question": "Who?"}, headers=other, timeout=120).status_code == 200
