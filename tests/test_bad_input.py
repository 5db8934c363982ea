"""Bad input over real HTTP: hostile and mislabelled files, and every request limit.

Each hostile file gets a clear error naming it (alone: the right 4xx; beside a good file: its own
``rejected`` status while the good file is indexed), leaves nothing in any store, and the server keeps
answering. The limits are configured small on this module's server, so each one is shown to be
configurable and to give a 4xx whose message names the limit.
"""

from __future__ import annotations

import io
import random
import re
import zipfile
from collections.abc import Callable, Iterator

import httpx
import pytest

from api.limits import upload_body_limit
from rag.types import DEFAULT_TENANT
from tests.conftest import NO_RATE_LIMITS, LiveServer, make_settings
from tests.test_loaders import _encrypted_pdf, _pdf

MAX_UPLOAD_BYTES = 300_000
MAX_FILES = 4
MAX_QUESTION_CHARS = 120
MAX_TOP_K = 6
MAX_TOKEN_BUDGET = 400


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """Overrides conftest's server for this module (so ``client`` talks to it): small, configured limits."""
    settings = make_settings(
        tmp_path_factory.mktemp("bad-input"),
        max_upload_bytes=MAX_UPLOAD_BYTES,
        max_files_per_request=MAX_FILES,
        max_question_chars=MAX_QUESTION_CHARS,
        max_top_k=MAX_TOP_K,
        top_k=5,
        max_token_budget=MAX_TOKEN_BUDGET,
        token_budget=300,
        max_answer_tokens=8,
        **NO_RATE_LIMITS,
    )
    with LiveServer(settings) as server:
        yield server


def upload(client: httpx.Client, *files: tuple[str, bytes] | tuple[str, bytes, str]) -> httpx.Response:
    parts = [("files", (f[0], io.BytesIO(f[1]), *f[2:])) for f in files]
    return client.post("/v1/documents", files=parts)


def totals(server: LiveServer) -> tuple[int, int, int, int]:
    service = server.service
    return (
        service.dense.count(),
        service.lexical.count(),
        service.registry.count_chunks(),
        len(service.registry.chunk_ids()),  # chunk rows of any state: a half-written document shows here
    )


def chunk_texts(server: LiveServer, document_id: str) -> list[str]:
    registry = server.service.registry
    return [c.text for c in registry.chunks(registry.chunk_ids(document_id=document_id)).values()]


def good_file(tag: str) -> tuple[str, bytes]:
    """A small valid document, different per test (the same bytes again would be a 'duplicate')."""
    text = (
        f"# Field notes {tag}\n\nThe lighthouse keeper {tag} counted forty ships passing the northern cape.\n"
    )
    return f"good-{tag}.md", text.encode()


def assert_healthy(client: httpx.Client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json()["status"] == "ok"


# --- hostile files -----------------------------------------------------------------------------------


def zip_bomb_docx(megabytes: int = 100) -> bytes:
    """word/document.xml inflates to ``megabytes`` of zeros; the archive stays ~1000x smaller."""
    out = io.BytesIO()
    block = bytes(1024 * 1024)
    with (
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive,
        archive.open("word/document.xml", "w", force_zip64=True) as member,
    ):
        for _ in range(megabytes):
            member.write(block)
    return out.getvalue()


def truncated_pdf() -> bytes:
    data = _pdf(["A page of text that will be cut off."])
    return data[: len(data) // 2]


HOSTILE: dict[str, tuple[Callable[[], tuple], int, str, str]] = {
    # kind: (file builder -> (name, bytes[, declared type]), status, error code, what the message must say)
    "zip bomb docx": (
        lambda: ("bomb.docx", zip_bomb_docx()),
        422,
        "unprocessable_document",
        "possible zip bomb",
    ),
    "truncated pdf": (lambda: ("cut.pdf", truncated_pdf()), 422, "unprocessable_document", "not a valid PDF"),
    "garbage pdf": (
        lambda: ("garbage.pdf", b"%PDF-1.7\n" + random.Random(1).randbytes(4000)),
        422,
        "unprocessable_document",
        "not a valid PDF",
    ),
    "encrypted pdf": (
        lambda: ("locked.pdf", _encrypted_pdf()),
        422,
        "unprocessable_document",
        "password-protected",
    ),
    "pdf of only garbage": (
        lambda: ("fake.pdf", b"<html>not a pdf</html>"),
        422,
        "unprocessable_document",
        "PDF",
    ),
    "image as .txt": (
        lambda: ("photo.txt", b"\x89PNG\r\n\x1a\n" + random.Random(2).randbytes(3000)),
        415,
        "unsupported_media_type",
        "binary data sent as text (a PNG image)",
    ),
    "binary declared text/plain": (
        lambda: ("upload", b"\x7fELF\x02\x01\x01\x00" + bytes(2000), "text/plain"),
        415,
        "unsupported_media_type",
        "binary data sent as text (an ELF executable)",
    ),
    "random bytes as .txt": (
        lambda: ("noise.txt", b"\x00" + random.Random(3).randbytes(4000)),
        422,
        "unprocessable_document",
        "binary data sent as text",
    ),
    "control characters as .md": (
        lambda: ("term.md", bytes(range(1, 9)) * 200 + b"words"),
        422,
        "unprocessable_document",
        "binary data sent as text",
    ),
    "broken utf-8": (
        lambda: ("mixed.txt", "Grüße aus Köln, schön.".encode() + b"\xff\xfe" + "Straße".encode()),
        422,
        "unprocessable_document",
        "UTF-8 with invalid bytes",
    ),
    "legacy .doc named .docx": (
        lambda: ("old.docx", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(1000)),
        422,
        "unprocessable_document",
        "legacy .doc",
    ),
    "zip named .docx": (
        lambda: ("archive.docx", _plain_zip()),
        422,
        "unprocessable_document",
        "no word/document.xml",
    ),
    "empty file": (lambda: ("empty.txt", b""), 422, "unprocessable_document", "empty file"),
    "whitespace only": (lambda: ("blank.md", b" \n\t\r\n  "), 422, "unprocessable_document", "no text found"),
    "html without visible text": (
        lambda: ("code.html", b"<html><head><script>x()</script></head><body><!-- c --></body></html>"),
        422,
        "unprocessable_document",
        "no text found",
    ),
    "executable": (
        lambda: ("tool.exe", b"MZ\x90\x00" + bytes(500)),
        415,
        "unsupported_media_type",
        "executable",
    ),
}


def _plain_zip() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("readme.txt", "hello")
    return out.getvalue()


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_hostile_file_gets_a_clear_error_and_loses_nothing(
    client: httpx.Client, live_server: LiveServer, kind: str
) -> None:
    build, status, code, reason = HOSTILE[kind]
    hostile = build()
    name = hostile[0]
    before = totals(live_server)

    alone = upload(client, hostile)
    assert alone.status_code == status, alone.text
    error = alone.json()["error"]
    assert error["code"] == code
    assert error["message"].startswith(f"{name}: ") and reason in error["message"], error["message"]
    assert totals(live_server) == before

    good = good_file(re.sub(r"[^a-z0-9]+", "-", kind))
    mixed = upload(client, hostile, good)
    assert mixed.status_code == 201, mixed.text
    bad_status, good_status = mixed.json()["documents"]
    assert bad_status["status"] == "rejected" and bad_status["id"] is None and bad_status["chunks"] == 0
    assert bad_status["error"] == error["message"]
    assert good_status["status"] == "indexed" and good_status["chunks"] >= 1
    assert client.get(f"/v1/documents/{good_status['id']}").json()["name"] == good[0]
    after = totals(live_server)
    assert all(a - b == good_status["chunks"] for a, b in zip(after, before)), (before, after)

    assert_healthy(client)
    assert client.delete(f"/v1/documents/{good_status['id']}").status_code == 200
    assert totals(live_server) == before


def test_every_file_of_a_mixed_request_gets_its_own_status(
    client: httpx.Client, live_server: LiveServer
) -> None:
    files = [HOSTILE[kind][0]() for kind in ("zip bomb docx", "truncated pdf", "image as .txt")]
    good = good_file("mixed-request")
    response = upload(client, files[0], good, files[1], files[2])
    assert response.status_code == 201, response.text
    documents = response.json()["documents"]
    assert [d["status"] for d in documents] == ["rejected", "indexed", "rejected", "rejected"]
    for document, file in zip([documents[0], *documents[2:]], files):
        assert document["error"].startswith(f"{file[0]}: ")
    assert client.delete(f"/v1/documents/{documents[1]['id']}").status_code == 200
    assert_healthy(client)


# --- text that is not UTF-8 is decoded, not garbled --------------------------------------------------

ENCODED = [
    ("latin-1", "notes-latin1.txt", "Crème brûlée and café au lait in the Zürich café of Mr Müller."),
    ("cp1252", "notes-cp1252.txt", "He said “bonjour” — the façade cost €12… naïvely."),
    ("utf-16", "notes-utf16-bom.txt", "UTF-16 with a BOM: Grüße aus Köln, 北京欢迎你."),
    ("utf-16-le", "notes-utf16le.txt", "UTF-16 without a BOM: Grüße aus Köln and the Straße."),
    ("gb18030", "notes-gb18030.txt", "北京是中华人民共和国的首都，也是全国的政治、文化中心。"),
]


@pytest.mark.parametrize(("encoding", "name", "text"), ENCODED, ids=[e[0] for e in ENCODED])
def test_text_in_another_encoding_is_indexed_as_its_text(
    client: httpx.Client, live_server: LiveServer, encoding: str, name: str, text: str
) -> None:
    response = upload(client, (name, text.encode(encoding)))
    assert response.status_code == 201, response.text
    document = response.json()["documents"][0]
    assert document["status"] == "indexed"
    assert "\n".join(chunk_texts(live_server, document["id"])) == text
    passages = client.post("/v1/retrieve", json={"question": text[:60]}).json()["passages"]
    assert any(p["document_id"] == document["id"] and text[:20] in p["text"] for p in passages)
    assert client.delete(f"/v1/documents/{document['id']}").status_code == 200


def test_html_scripts_styles_and_comments_are_never_indexed(
    client: httpx.Client, live_server: LiveServer
) -> None:
    token = "zqxvjscripttoken"
    page = f"""<!doctype html><html><head><title>Alpine lakes</title>
    <script>var secret = "{token}1"; document.write("{token}2");</script>
    <style>.{token}3 {{ content: "{token}4"; }}</style></head>
    <body><!-- {token}5 --><h1>Alpine lakes</h1>
    <p>Lake Geneva is the largest of the alpine lakes, shared by France and Switzerland.</p>
    <script type="module">import("{token}6")</script><noscript>{token}7</noscript>
    <svg><script>{token}8()</script></svg><template><p>{token}9</p></template>
    <iframe>{token}10</iframe><p onclick="{token}11()">Its water is cold.</p></body></html>"""
    response = upload(client, ("lakes.html", page.encode()))
    assert response.status_code == 201, response.text
    document = response.json()["documents"][0]
    assert document["status"] == "indexed"
    texts = chunk_texts(live_server, document["id"])
    assert any("Lake Geneva" in t for t in texts)
    assert not any(token in t for t in texts)
    for question in (
        token,
        f"{token}1 {token}5 {token}8",
        "What does the script of the alpine lakes page say?",
    ):
        passages = client.post("/v1/retrieve", json={"question": question}).json()["passages"]
        assert not any(token in p["text"] or token in p["title"] for p in passages)
    assert live_server.service.lexical.search(DEFAULT_TENANT, token, 5) == []
    assert client.delete(f"/v1/documents/{document['id']}").status_code == 200


# --- limits ------------------------------------------------------------------------------------------


def test_file_over_the_size_limit_is_413_naming_the_limit(
    client: httpx.Client, live_server: LiveServer
) -> None:
    before = totals(live_server)
    exact = b"Padding at the limit." + b" " * (MAX_UPLOAD_BYTES - 22) + b"."  # few tokens: quick to index
    assert len(exact) == MAX_UPLOAD_BYTES
    big = ("big.txt", exact + b" ")
    response = upload(client, big)
    assert response.status_code == 413, response.text
    error = response.json()["error"]
    assert error["code"] == "payload_too_large"
    assert error["message"] == f"big.txt: larger than the limit of {MAX_UPLOAD_BYTES} bytes"
    good = good_file("size-limit")
    mixed = upload(client, big, good).json()["documents"]
    assert [d["status"] for d in mixed] == ["rejected", "indexed"] and mixed[0]["error"] == error["message"]
    exactly = upload(client, ("exact.txt", exact))
    assert exactly.status_code == 201, exactly.text
    for document in (mixed[1], exactly.json()["documents"][0]):
        assert client.delete(f"/v1/documents/{document['id']}").status_code == 200
    assert totals(live_server) == before


def test_a_request_larger_than_all_its_files_could_be_is_refused_before_it_is_read(
    client: httpx.Client, live_server: LiveServer
) -> None:
    before = totals(live_server)
    limit = upload_body_limit(MAX_FILES, MAX_UPLOAD_BYTES)
    huge = ("huge.txt", b"x" * (limit + 1))
    declared = upload(client, huge)  # httpx declares the multipart body's length
    assert declared.status_code == 413 and declared.json()["error"]["code"] == "payload_too_large"
    assert f"exceeds the limit of {limit} bytes for one upload request" in declared.json()["error"]["message"]

    def undeclared() -> Iterator[bytes]:  # chunked: the size is known only as it streams in
        yield b"--b\r\nContent-Disposition: form-data; name=files; filename=huge.txt\r\n\r\n"
        for _ in range(limit // 65_536 + 2):
            yield b"x" * 65_536
        yield b"\r\n--b--\r\n"

    streamed = client.post(
        "/v1/documents", content=undeclared(), headers={"content-type": "multipart/form-data; boundary=b"}
    )
    assert streamed.status_code == 413
    assert totals(live_server) == before
    assert_healthy(client)


def test_too_many_files_is_a_4xx_naming_the_limit(client: httpx.Client, live_server: LiveServer) -> None:
    before = totals(live_server)
    files = [good_file(f"many-{i}") for i in range(MAX_FILES + 1)]
    response = upload(client, *files)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert error["message"] == f"{MAX_FILES + 1} files in one request; the limit is {MAX_FILES}"
    assert totals(live_server) == before  # none of them indexed: the request as a whole is refused
    assert_healthy(client)


LIMITED_BODIES = [
    ({"question": "q" * (MAX_QUESTION_CHARS + 1)}, f"question is {MAX_QUESTION_CHARS + 1} characters; the limit is {MAX_QUESTION_CHARS}"),
    ({"question": "why?", "top_k": MAX_TOP_K + 1}, f"top_k must be between 1 and {MAX_TOP_K}"),
    ({"question": "why?", "top_k": 0}, f"top_k must be between 1 and {MAX_TOP_K}"),
    ({"question": "why?", "top_k": 10**30}, f"top_k must be between 1 and {MAX_TOP_K}"),
    ({"question": "why?", "token_budget": MAX_TOKEN_BUDGET + 1}, f"token_budget must be between 64 and {MAX_TOKEN_BUDGET}"),
    ({"question": "why?", "token_budget": 63}, f"token_budget must be between 64 and {MAX_TOKEN_BUDGET}"),
]  # fmt: skip


@pytest.mark.parametrize("route", ["/v1/query", "/v1/retrieve", "/v1/query?stream"])
@pytest.mark.parametrize(
    ("body", "message"),
    LIMITED_BODIES,
    ids=["question", "top_k", "top_k0", "top_k_huge", "budget", "budget_low"],
)
def test_request_limits_are_422_naming_the_limit(
    client: httpx.Client, route: str, body: dict, message: str
) -> None:
    if route.endswith("?stream"):
        route, body = "/v1/query", {**body, "stream": True}
    response = client.post(route, json=body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert (error["code"], error["message"], error["type"]) == ("invalid_request", message, "invalid_request_error")


def test_limits_at_their_bounds_are_accepted(client: httpx.Client) -> None:
    body = {"question": "q" * MAX_QUESTION_CHARS, "top_k": MAX_TOP_K, "token_budget": MAX_TOKEN_BUDGET}
    response = client.post("/v1/retrieve", json=body)
    assert response.status_code == 200, response.text


# --- bodies that are not what the schema says ----------------------------------------------------------


@pytest.mark.parametrize(
    ("route", "content", "content_type"),
    [
        ("/v1/retrieve", b"\xff\xfe{", "application/json"),
        ("/v1/query", b'{"question": "unterminated', "application/json"),
        ("/v1/documents", b"--b\r\nFalse--b--\r\n", "multipart/form-data; boundary=b"),
        ("/v1/documents", b"no multipart at all", "multipart/form-data"),
    ],
)
def test_unreadable_bodies_are_422_in_the_error_format(
    client: httpx.Client, route: str, content: bytes, content_type: str
) -> None:
    response = client.post(route, content=content, headers={"content-type": content_type})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_request"
    assert_healthy(client)


@pytest.mark.parametrize(
    "body",
    [
        {"question": "why?", "stream": 0},
        {"question": "why?", "top_k": "5"},
        {"question": "why?", "token_budget": 100.5},
        {"question": ["why?"]},
    ],
)
def test_wrong_json_types_are_422_not_coerced(client: httpx.Client, body: dict) -> None:
    response = client.post("/v1/query", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_request"


def test_a_question_that_is_not_valid_unicode_is_422(client: httpx.Client) -> None:
    """JSON may carry a lone surrogate; the tokenizers cannot encode one (this was a 500)."""
    for route in ("/v1/retrieve", "/v1/query"):
        response = client.post(
            route,
            content=b'{"question": "caf\\u00e9 \\ud800?"}',
            headers={"content-type": "application/json"},
        )
        assert response.status_code == 422, response.text
        assert response.json()["error"]["message"] == (
            "question is not valid Unicode (unpaired surrogate U+D800 at character 5)"
        )


def test_unknown_routes_and_methods_answer_in_the_error_format(client: httpx.Client) -> None:
    missing = client.get("/v1/nothing-here")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    wrong = client.put("/v1/query", json={})
    assert wrong.status_code == 405 and wrong.json()["error"]["code"] == "method_not_allowed"
    assert "POST" in wrong.headers["allow"]
