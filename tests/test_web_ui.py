"""The web page in a real browser (Debian's Chromium, driven by Playwright) against a running service: a
person's whole path, from signing in to deleting a document. With RAG_UI_SCREENSHOTS=DIR the main views
are saved there (the README's screenshots come from `RAG_UI_SCREENSHOTS=docs/ui`)."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import LiveServer, as_text_file, make_settings

QUESTION_ID = "57115ff82419e314009555c4"  # "In a steam turbine, what are rotors mounted on?"
OTHER_DOC = "Super_Bowl_50#0"
# The flags Chromium needs on a machine with no network beyond the package registries and no GPU.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _chromium() -> str:
    """Debian's Chromium (`make test` installs it as root); CI must run these tests, so there it is an error."""
    path = os.environ.get("RAG_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if path:
        return path
    reason = "no Chromium: `apt-get install chromium` (as root; `make test` does it) or set RAG_CHROMIUM"
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    settings = make_settings(tmp_path_factory.mktemp("data"), budget_usd_per_day=0.05)
    with LiveServer(settings) as live:
        yield live


@pytest.fixture(scope="module")
def browser() -> Iterator:
    executable = _chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture()
def page(browser) -> Iterator:
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.errors = []  # uncaught script errors: none may happen
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    yield page
    context.close()


@pytest.fixture()
def shots(tmp_path: Path) -> Path:
    target = Path(os.environ.get("RAG_UI_SCREENSHOTS") or tmp_path)
    target.mkdir(parents=True, exist_ok=True)
    return target


def _dollars(text: str) -> float:
    return float(re.search(r"\$(\d+\.\d+)", text).group(1))


def _file(doc: dict) -> dict:
    name, data = as_text_file(doc)
    return {"name": name, "mimeType": "text/markdown", "buffer": data}


def test_a_person_signs_in_uploads_asks_reads_the_source_sees_the_cost_and_deletes(
    server: LiveServer, page, shots: Path, xquad
) -> None:
    from playwright.sync_api import expect

    corpus, queries = xquad
    query = next(q for q in queries if q["id"] == QUESTION_ID)
    gold, other = corpus[query["gold_doc_ids"][0]], corpus[OTHER_DOC]

    # Sign in with the keyboard only: the key field has the focus; a wrong key is refused in words.
    page.goto(server.url)
    expect(page.locator("#api-key")).to_be_focused()
    page.keyboard.type("rag_not-a-key")
    page.keyboard.press("Enter")
    expect(page.locator("#sign-in-error")).to_contain_text("refused")
    page.screenshot(path=shots / "sign-in.png")
    page.locator("#api-key").fill(server.key)
    page.keyboard.press("Enter")
    expect(page.locator("#tenant-name")).to_have_text("tenant default")
    assert page.evaluate("document.cookie") == ""  # the key lives in the tab's session storage only
    assert page.evaluate("sessionStorage.getItem('costrag.apiKey')") == server.key

    # Costs before: the spend tile.
    page.goto(f"{server.url}/#costs")
    spend_before = _dollars(page.locator("#tile-spend .value").inner_text())

    # Two files: the estimate first, nothing written yet.
    page.goto(f"{server.url}/#documents")
    page.locator("#file-input").set_input_files([_file(gold), _file(other)])
    rows = page.locator("#estimate-table tbody tr")
    expect(rows).to_have_count(2)
    planned = {}
    for i in range(2):
        cells = rows.nth(i).locator("td")
        assert cells.nth(1).inner_text() == "indexed"
        planned[cells.nth(0).inner_text()] = int(cells.nth(2).inner_text())
    expect(page.locator("#estimate-summary")).to_contain_text(f"{sum(planned.values())} chunks")
    page.screenshot(path=shots / "upload-estimate.png", full_page=True)
    with httpx.Client(base_url=server.url, headers=server.auth_headers) as http:
        assert http.get("/v1/documents").json()["documents"] == []  # the dry run wrote nothing

    # Upload: each file's own progress and status; the chunk counts are the estimate's.
    page.locator("#upload-confirm").click()
    progress = page.locator("#upload-progress li")
    expect(progress.nth(1).locator(".state")).to_contain_text("indexed", timeout=180_000)
    for i in range(2):
        name = progress.nth(i).locator(".file").inner_text()
        expect(progress.nth(i).locator(".state")).to_have_text(f"indexed, {planned[name]} chunks")
    expect(page.locator("#doc-table tbody tr")).to_have_count(2)
    page.screenshot(path=shots / "documents.png", full_page=True)

    # Ask: the answer streams in (text appended while it is pending), then its citation and usage line.
    page.locator("#tabs a[data-view=ask]").click()
    expect(page.locator("#question")).to_be_focused()
    page.evaluate(
        """() => { window.streamed = 0; new MutationObserver((changes) => { for (const c of changes)
             if (c.target.classList && c.target.classList.contains('pending') && c.addedNodes.length) window.streamed++; })
           .observe(document.querySelector('#turns'), {childList: true, subtree: true}); }"""
    )
    page.keyboard.type(query["question"])
    page.keyboard.press("Enter")
    turn = page.locator(".turn").first
    expect(turn.locator(".meta")).to_be_visible(timeout=180_000)
    assert page.evaluate("window.streamed") >= 1
    answer = turn.locator(".answer").inner_text()
    assert "drive shaft" in answer.lower(), answer
    citation = turn.locator(".citations li").first
    expect(citation.locator("blockquote")).to_be_hidden()
    citation.locator("summary").click()
    passage = citation.locator("blockquote")
    expect(passage).to_be_visible()
    assert passage.inner_text().strip() in gold["text"]
    assert "drive shaft" in passage.inner_text()
    meta = turn.locator(".meta").inner_text()
    assert re.search(r"tier\s+(cheap|strong)", meta) and re.search(r"cache\s+miss", meta), meta
    cost = _dollars(re.search(r"cost\s+(\$\S+)", meta).group(1))
    assert cost > 0
    page.screenshot(path=shots / "ask.png", full_page=True)

    # The dashboard's spend rose by exactly the answer's cost (both shown to the micro-dollar).
    page.locator("#tabs a[data-view=costs]").click()
    expect(page.locator("#tile-queries .value")).to_have_text("1")
    spend_after = _dollars(page.locator("#tile-spend .value").inner_text())
    assert spend_after - spend_before == pytest.approx(cost, abs=1.5e-6)
    expect(page.locator("#budget")).to_contain_text("of $0.050000 used today")
    expect(page.locator("#chart-hourly svg rect")).not_to_have_count(0)
    page.screenshot(path=shots / "costs.png", full_page=True)

    # Delete one document, confirmed in a dialog; the list and the API agree.
    page.locator("#tabs a[data-view=documents]").click()
    other_name = as_text_file(other)[0]
    page.locator("#doc-search").fill("super")
    expect(page.locator("#doc-table tbody tr")).to_have_count(1)
    page.get_by_role("button", name=f"Delete {other_name}").click()
    dialog = page.locator("#confirm-delete")
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name="Delete").click()
    expect(page.locator("#doc-table tbody tr")).to_have_count(0)
    page.locator("#doc-search").fill("")
    expect(page.locator("#doc-table tbody tr")).to_have_count(1)
    with httpx.Client(base_url=server.url, headers=server.auth_headers) as http:
        assert [d["name"] for d in http.get("/v1/documents").json()["documents"]] == [as_text_file(gold)[0]]

    # A phone's width: nothing wider than the screen.
    page.set_viewport_size({"width": 360, "height": 780})
    for view in ("documents", "ask", "costs"):
        page.locator(f"#tabs a[data-view={view}]").click()
        assert page.evaluate("document.documentElement.scrollWidth") <= 360, view
    page.locator("#tabs a[data-view=ask]").click()
    page.screenshot(path=shots / "ask-phone.png", full_page=True)
    assert page.errors == []


def test_api_errors_read_as_messages(server: LiveServer, page) -> None:
    from playwright.sync_api import expect

    page.goto(server.url)
    page.locator("#api-key").fill(server.key)
    page.keyboard.press("Enter")
    expect(page.locator("#tenant-name")).to_be_visible()
    page.locator("#file-input").set_input_files(
        [{"name": "program.exe", "mimeType": "application/octet-stream", "buffer": b"MZ\x90\x00" * 64}]
    )
    row = page.locator("#estimate-table tbody tr")
    expect(row).to_have_count(1)
    expect(row.locator("td").nth(1)).to_contain_text("rejected: ")
    expect(page.locator("#upload-confirm")).to_be_disabled()

    # A key revoked while the page is open: the next call signs out with a message, not a stack trace.
    page.evaluate("sessionStorage.setItem('costrag.apiKey', 'rag_revoked')")
    page.locator("#tabs a[data-view=costs]").click()
    expect(page.locator("#sign-in-error")).to_contain_text("refused")
    expect(page.locator("#view-sign-in")).to_be_visible()
    assert page.errors == []


def test_a_late_answer_to_the_load_time_probe_does_not_undo_a_sign_in(server: LiveServer, page) -> None:
    """The page asks /v1/usage without a key when it loads (a server with auth off lets it in); if that
    401 arrives after the person has signed in, it must not sign them out."""
    from playwright.sync_api import expect

    held = []
    page.route(
        "**/v1/usage",
        lambda route: held.append(route) if "authorization" not in route.request.headers else route.continue_(),
    )
    page.goto(server.url)
    page.locator("#api-key").fill(server.key)
    page.keyboard.press("Enter")
    expect(page.locator("#view-documents")).to_be_visible()
    assert len(held) == 1
    with page.expect_response(lambda response: response.url.endswith("/v1/usage") and response.status == 401):
        held[0].continue_()
    page.locator("#doc-search").fill("")  # one more round trip through the page's event loop
    expect(page.locator("#view-documents")).to_be_visible()
    expect(page.locator("#view-sign-in")).to_be_hidden()
    assert page.evaluate("sessionStorage.getItem('costrag.apiKey')") == server.key
    assert page.errors == []
