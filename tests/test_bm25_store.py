"""BM25Store against reference implementations on real corpora, its store contract, and the analyzer."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import bm25s
import numpy as np
import pytest
from rank_bm25 import BM25Okapi

from indexing.stores.base import LexicalStore
from indexing.stores.bm25 import BM25Store
from rag.database.sql import PostgresSql, Sql
from rag.types import Chunk
from retrieval.tokenize import tokenize
from tests.conftest import DATASETS, REPO, load_jsonl


def chunk(chunk_id: str, document_id: str = "doc", tenant: str = "t1") -> Chunk:
    return Chunk(chunk_id, document_id, tenant, 0, "", 0, 0, "", 0)


def hits(store: BM25Store, query: str, top_k: int = 10, tenant: str = "t1") -> list[str]:
    return [h.chunk_id for h in store.search(tenant, query, top_k)]


@pytest.fixture(scope="module")
def scifact_slice() -> tuple[list[str], list[str], list[str]]:
    """The gold abstracts of 30 claims, topped up to 300 abstracts in corpus order: (ids, texts, claims)."""
    corpus = {d["id"]: d for d in load_jsonl(DATASETS / "scifact" / "corpus.jsonl")}
    claims = load_jsonl(DATASETS / "scifact" / "queries.jsonl")[:30]
    ids = list(dict.fromkeys(g for q in claims for g in q["gold_doc_ids"]))
    chosen = set(ids)
    ids += [i for i in corpus if i not in chosen][: 300 - len(ids)]
    texts = [f"{corpus[i]['title']}\n{corpus[i]['text']}" for i in ids]
    return ids, texts, [q["question"] for q in claims]


@pytest.fixture(params=["embedded", "postgres"])
def rows(request: pytest.FixtureRequest) -> Iterator[Sql | None]:
    """Where the store's rows live: None = its own SQLite file, or a fresh PostgreSQL database (server
    mode). The same tests, the rank-bm25 oracle's included, run on both."""
    if request.param == "embedded":
        yield None
        return
    yield PostgresSql(request.getfixturevalue("postgres_pool"))


@pytest.fixture
def store(tmp_path: Path, rows: Sql | None) -> BM25Store:
    s = BM25Store(tmp_path / "lexical", sql=rows)
    yield s
    s.close()


# --- (a) reference oracles ---------------------------------------------------------------------------


def test_matches_rank_bm25_okapi_exactly(tmp_path: Path, scifact_slice, rows: Sql | None) -> None:
    """bm25s "atire" term frequency is Okapi's tf*(k1+1)/(tf+k1*(1-b+b*dl/avgdl)); bm25s "robertson" idf is
    Okapi's log((N-df+0.5)/(df+0.5)), floored at 0 where it would be negative (df > N/2). rank_bm25's
    BM25Okapi floors those at epsilon * mean idf instead, so with epsilon=0 the two are the same function.
    (Plain bm25s "robertson" drops the (k1+1) factor; "lucene" uses log(1 + ...) idf, which no rank_bm25
    class has.)"""
    ids, texts, claims = scifact_slice
    store = BM25Store(tmp_path, sql=rows, method="atire", idf_method="robertson", k1=1.2, b=0.75)
    store.add([chunk(i) for i in ids], texts)
    oracle = BM25Okapi([tokenize(t) for t in texts], k1=1.2, b=0.75, epsilon=0)
    for claim in claims:
        scores = oracle.get_scores(tokenize(claim))
        top = [i for i in np.argsort(-scores, kind="stable")[:10] if scores[i] > 0]
        got = store.search("t1", claim, 10)
        assert [h.chunk_id for h in got] == [ids[i] for i in top], claim
        np.testing.assert_allclose([h.score for h in got], scores[top], rtol=1e-4)


def test_matches_okapi_when_terms_occur_in_most_documents(tmp_path: Path) -> None:
    """The idf floor: "cell" is in 4 of 5 documents, so its Okapi idf is negative and both floor it at 0."""
    texts = ["cell cell growth", "cell death", "cell membrane protein", "cell", "protein folding"]
    store = BM25Store(tmp_path, method="atire", idf_method="robertson")
    store.add([chunk(str(i)) for i in range(5)], texts)
    oracle = BM25Okapi([tokenize(t) for t in texts], k1=1.2, b=0.75, epsilon=0)
    scores = oracle.get_scores(tokenize("cell protein"))
    got = store.search("t1", "cell protein", 10)
    assert [h.chunk_id for h in got] == ["4", "2"]  # "cell" alone scores 0: those chunks are not hits
    np.testing.assert_allclose([h.score for h in got], scores[[4, 2]], rtol=1e-4)


@pytest.mark.parametrize("method", ["lucene", "robertson", "atire"])
def test_matches_bm25s_own_index(tmp_path: Path, scifact_slice, method: str) -> None:
    """The store builds bm25s's matrix itself (faster); it must equal ``BM25.index`` on the same terms."""
    ids, texts, claims = scifact_slice
    store = BM25Store(tmp_path, method=method)
    store.add([chunk(i) for i in ids], texts)
    reference = bm25s.BM25(method=method, k1=1.2, b=0.75)
    reference.index([tokenize(t) for t in texts], show_progress=False)
    for claim in claims:
        scores = reference.get_scores(tokenize(claim))
        top = [i for i in np.argsort(-scores, kind="stable")[:10] if scores[i] > 0]
        got = store.search("t1", claim, 10)
        assert [h.chunk_id for h in got] == [ids[i] for i in top], claim
        np.testing.assert_allclose([h.score for h in got], scores[top], rtol=1e-4)


# --- (b) store contract ------------------------------------------------------------------------------


def test_implements_protocol_and_validates(tmp_path: Path, store: BM25Store) -> None:
    assert isinstance(store, LexicalStore)
    with pytest.raises(ValueError):
        BM25Store(tmp_path / "x", method="bm25+")
    with pytest.raises(ValueError):
        store.add([chunk("a")], [])


def test_add_search_delete_count(store: BM25Store) -> None:
    store.add([chunk("a1", "A"), chunk("a2", "A")], ["Cats chase mice.", "Mice eat cheese."])
    store.add([chunk("b1", "B")], ["Dogs chase cats and cats run."])
    assert store.count() == 3 and store.count(document_id="A") == 2 and store.count("t1", "B") == 1
    assert hits(store, "cat") == ["b1", "a1"]  # stemmed match; zero-score chunk a2 is not returned
    assert all(h.score > 0 for h in store.search("t1", "cats", 10))
    assert hits(store, "cats", top_k=1) == ["b1"]
    assert store.delete_document("t1", "B") == 1
    assert store.delete_document("t1", "B") == 0
    assert store.delete_document("other-tenant", "A") == 0
    assert hits(store, "cat") == ["a1"] and store.count() == 2


def test_score_matches_search_for_named_chunks(store: BM25Store) -> None:
    texts = ["the cat sat on the mat", "a dog chased the cat", "birds fly south", "the mat was red"]
    store.add([chunk(f"c{i}") for i in range(len(texts))], texts)
    searched = {hit.chunk_id: hit.score for hit in store.search("t1", "cat mat", 10)}
    scored = store.score("t1", "cat mat", ["c0", "c1", "c2", "c3", "unknown"])
    assert set(scored) == {"c0", "c1", "c2", "c3"}
    assert scored["c2"] == 0.0  # no term matches
    for chunk_id, value in searched.items():
        assert scored[chunk_id] == pytest.approx(value)
    assert store.score("other-tenant", "cat mat", ["c0"]) == {}
    assert store.score("t1", "the", ["c0"]) == {"c0": 0.0}  # only stopwords: nothing to match


def test_queries_that_cannot_match(store: BM25Store) -> None:
    assert store.search("t1", "cheese", 5) == []  # empty store
    store.add([chunk("a")], ["Mice eat cheese."])
    assert store.search("t1", "the of and, is it?", 5) == []  # nothing left after tokenization
    assert store.tokenize_query("the of and, is it?") == []
    assert store.search("t1", "zebra", 5) == []
    assert store.search("t1", "cheese", 0) == []
    assert store.search("nobody", "cheese", 5) == []


def test_tenant_isolation_and_tenant_top_k(store: BM25Store) -> None:
    # Tenant t2's chunks outscore t1's, so a global top-k would hold none of t1's.
    store.add([chunk(f"t2-{i}", "D", "t2") for i in range(20)], ["vaccine vaccine vaccine trial"] * 20)
    store.add(
        [chunk(f"t1-{i}", "D", "t1") for i in range(3)],
        [f"vaccine study number {i} of many" for i in range(3)],
    )
    assert sorted(hits(store, "vaccine", 3, "t1")) == ["t1-0", "t1-1", "t1-2"]
    assert all(h.startswith("t2-") for h in hits(store, "vaccine", 50, "t2"))
    assert store.delete_document("t1", "D") == 3 and store.count("t2") == 20
    assert hits(store, "vaccine", 5, "t1") == []


def test_readding_chunk_ids_replaces(store: BM25Store) -> None:
    store.add([chunk("a", "A")], ["cats"])
    store.add([chunk("a", "B")], ["dogs"])
    assert store.count() == 1 and store.count(document_id="B") == 1
    assert hits(store, "cats") == [] and hits(store, "dogs") == ["a"]


def test_persistence_loads_saved_index_and_rebuilds_after_change(tmp_path: Path) -> None:
    path = tmp_path / "lexical"
    first = BM25Store(path)
    first.add([chunk("a"), chunk("b")], ["Vitamin D deficiency", "Vitamin C and the common cold"])
    expected = first.search("t1", "vitamin deficiency", 5)
    assert first.rebuilds == 1
    first.close()

    second = BM25Store(path)
    assert (second.loads, second.rebuilds) == (1, 0)
    assert second.search("t1", "vitamin deficiency", 5) == expected
    assert second.rebuilds == 0
    second.add([chunk("c")], ["Vitamin D and bone density"])
    assert hits(second, "vitamin d") == ["a", "c", "b"]
    assert second.rebuilds == 1
    second.close()

    third = BM25Store(path)  # the saved index followed the change
    assert third.loads == 1 and set(hits(third, "vitamin")) == {"a", "b", "c"} and third.rebuilds == 0
    third.close()

    other_params = BM25Store(path, k1=0.9)  # a saved index built with other parameters is not used
    assert other_params.loads == 0 and set(hits(other_params, "vitamin")) == {"a", "b", "c"}
    assert other_params.rebuilds == 1
    other_params.close()


def test_torn_saved_index_is_rebuilt(tmp_path: Path) -> None:
    first = BM25Store(tmp_path)
    first.add([chunk("a")], ["cheese"])
    first.search("t1", "cheese", 1)
    first.close()
    (tmp_path / "index" / "data.csc.index.npy").write_bytes(b"torn")
    second = BM25Store(tmp_path)
    assert second.loads == 0 and hits(second, "cheese") == ["a"] and second.rebuilds == 1
    second.close()


def test_sees_writes_of_another_instance(tmp_path: Path, rows: Sql | None) -> None:
    """Two processes on one directory, or two workers (each its own directory) on one database: the
    reader's next search notices the writer's generation."""
    reader, writer = BM25Store(tmp_path / "r", sql=rows), BM25Store(tmp_path / ("r" if rows is None else "w"), sql=rows)
    writer.add([chunk("a")], ["cheese"])
    assert hits(reader, "cheese") == ["a"]
    writer.delete_document("t1", "doc")
    assert hits(reader, "cheese") == []
    reader.close()
    writer.close()


def test_concurrent_adds_and_searches(store: BM25Store) -> None:
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            for i in range(20):
                store.add([chunk(f"{worker}-{i}", f"d{worker}")], [f"protein folding step {i}"])
                store.search("t1", "protein folding", 5)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and store.count() == 80 and len(hits(store, "protein", 100)) == 80


# --- (c) Chinese --------------------------------------------------------------------------------------


def test_chinese_retrieval_on_cmrc2018(tmp_path: Path) -> None:
    """50 questions with distinct gold passages, among 200 passages. Measured recall@5: 1.00 (@1: 1.00)."""
    corpus = {d["id"]: d for d in load_jsonl(DATASETS / "cmrc2018" / "corpus.jsonl")}
    questions = list(
        {q["gold_doc_ids"][0]: q for q in load_jsonl(DATASETS / "cmrc2018" / "queries.jsonl")}.values()
    )
    questions = questions[:: len(questions) // 50][:50]
    ids = [q["gold_doc_ids"][0] for q in questions]
    chosen = set(ids)
    ids += [i for i in corpus if i not in chosen][: 200 - len(ids)]
    store = BM25Store(tmp_path)
    store.add([chunk(i) for i in ids], [f"{corpus[i]['title']}\n{corpus[i]['text']}" for i in ids])

    terms = tokenize(questions[0]["question"])
    assert terms and any(len(t) >= 2 for t in terms) and "什么" not in terms
    found = [q["gold_doc_ids"][0] in hits(store, q["question"], 5) for q in questions]
    assert np.mean(found) >= 0.9


# --- (d) analyzer ---------------------------------------------------------------------------------------


def test_english_stemming_and_stopwords() -> None:
    assert tokenize("The patients were running and they ran studies.") == ["patient", "run", "ran", "studi"]
    assert tokenize("Alzheimer's patients don't respond") == ["alzheim", "patient", "respond"]
    assert tokenize("") == [] and tokenize("the of, and!") == []


def test_digits_and_identifiers() -> None:
    terms = tokenize("COVID-19 lowered IL-6 by 3.5% (p<0.05) in BRCA1 T cells; state-of-the-art")
    assert {
        "covid",
        "19",
        "covid-19",
        "il",
        "6",
        "il-6",
        "3.5",
        "0.05",
        "brca1",
        "t",
        "cell",
        "state",
        "art",
    } <= set(terms)
    assert "the" not in terms and "of" not in terms
    assert tokenize("p53-dependent") == tokenize("p53-dependence") == ["p53", "depend", "p53-depend"]


def test_mixed_and_other_scripts() -> None:
    assert tokenize("２０１９年，ＡＩ在中国的发展很快。") == ["2019", "年", "ai", "中国", "发展", "很快"]
    assert tokenize("锣鼓经是什么？") == ["锣鼓", "经"]
    assert tokenize("使用BERT模型和GPT-4") == ["使用", "bert", "模型", "gpt", "4", "gpt-4"]
    # Kanji go to jieba (whose dictionary is Simplified Chinese); kana and Hangul become bigrams.
    assert tokenize("東京に行きました 한국어") == [
        "東",
        "京",
        "に",
        "行",
        "きま",
        "まし",
        "した",
        "한국",
        "국어",
    ]
    assert tokenize("Привет мир café") == ["привет", "мир", "café"]
    assert tokenize("中华人民共和国") == ["中华", "华人", "人民", "共和", "共和国", "中华人民共和国"]


def test_terms_never_hold_whitespace() -> None:
    text = "Mixed\ttext 中文 文本\n with  spaces　全角空格 and tabs"
    assert all(t and not any(c.isspace() for c in t) for t in tokenize(text))


def test_jieba_loads_lazily_and_quietly() -> None:
    code = (
        "import sys\nfrom retrieval.tokenize import tokenize\nassert 'jieba' not in sys.modules\n"
        "assert tokenize('中文分词') == ['中文', '分词']"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], check=False, cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    assert run.stderr == ""
