"""`mmsearch eval` and mmsearch.search.evaluate: the measures against values worked by hand, the judgement readers
(JSON Lines, TREC qrels) and their errors, the command, and the judged query set shipped for the demo catalogue."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import EXAMPLE_SCHEMA, VECTOR_DIM
from mmsearch import samples
from mmsearch.cli import app
from mmsearch.errors import InvalidArgument
from mmsearch.search import SearchRequest
from mmsearch.search.evaluate import Judgement, evaluate, load_judgements

SHIPPED = samples.SAMPLES_DIR / "demo_judgements.jsonl"


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


# -- the measures --------------------------------------------------------------------------------------------------


def test_measures_match_the_values_worked_by_hand():
    judgements = [
        Judgement("q1", "graded", {"a": 3, "b": 2, "c": 1, "z": 0}),
        Judgement("q2", "nothing comes back", {"a": 1}),
        Judgement("q3", "nothing relevant", {"a": 0}),  # run and listed, left out of the means
    ]
    rankings = {"graded": ["x", "a", "z", "c", "a"], "nothing comes back": [], "nothing relevant": ["a"]}
    report = evaluate(lambda text: rankings[text], judgements)

    # q1: gains 0, 3, 0, 1 at ranks 1-4 (the repeated "a" counts once); the ideal order is 3, 2, 1
    dcg = 3 / math.log2(3) + 1 / math.log2(5)
    ideal = 3 / math.log2(2) + 2 / math.log2(3) + 1 / math.log2(4)
    q1, q2, q3 = report.queries
    assert q1.metrics == pytest.approx({"ndcg@10": dcg / ideal, "p@10": 2 / 10, "recall@100": 2 / 3, "mrr": 1 / 2})
    assert dcg / ideal == pytest.approx(0.48794, abs=1e-5)
    assert (q1.returned, q1.relevant, q1.found) == (4, 3, 2)
    assert q2.metrics == {"ndcg@10": 0.0, "p@10": 0.0, "recall@100": 0.0, "mrr": 0.0}
    assert q2.returned == 0
    assert q3.metrics is None and q3.returned == 1
    assert report.judged == 2
    assert report.metrics == pytest.approx({"ndcg@10": dcg / ideal / 2, "p@10": 0.1, "recall@100": 1 / 3,
                                            "mrr": 0.25, "zero_result_rate": 0.5})
    assert [q.id for q in report.zero_result_queries] == ["q2"]
    doc = report.as_dict(per_query=True)
    assert doc["queries"] == 3 and doc["judged"] == 2 and doc["zero_result_queries"] == [{"id": "q2",
                                                                                        "query": "nothing comes back"}]
    assert [q["id"] for q in doc["per_query"]] == ["q1", "q2", "q3"]
    assert "per_query" not in report.as_dict()


def test_depth_and_cutoff_bound_what_counts():
    judgements = [Judgement("q", "t", {"a": 2})]
    # "a" at rank 3: inside depth 3, outside depth 2 (then the query counts as answered, but found nothing)
    assert evaluate(lambda _: ["x", "y", "a"], judgements, k=2, depth=3).queries[0].metrics == pytest.approx(
        {"ndcg@2": 0.0, "p@2": 0.0, "recall@3": 1.0, "mrr": 1 / 3})
    shallow = evaluate(lambda _: ["x", "y", "a"], judgements, k=2, depth=2)
    assert shallow.queries[0].metrics == {"ndcg@2": 0.0, "p@2": 0.0, "recall@2": 0.0, "mrr": 0.0}
    assert shallow.metrics["zero_result_rate"] == 0.0
    with pytest.raises(InvalidArgument, match="k <= depth"):
        evaluate(lambda _: [], judgements, k=10, depth=5)


def test_ties_in_trec_eval_never_reorder_a_ranking():
    """trec_eval sorts by score and breaks ties by document id; the ranking given must stand as it is."""
    judgements = [Judgement("q", "t", {"a": 1})]
    report = evaluate(lambda _: ["z", "y", "a"], judgements)  # "a" sorts first by id, but is third
    assert report.queries[0].metrics["mrr"] == pytest.approx(1 / 3)


def test_a_search_over_a_small_catalogue(mm, product_items):
    """The engine as run_query: a query only one title answers, one several do, one nothing does."""
    mm.create_dataset("products", EXAMPLE_SCHEMA, vector_dim=VECTOR_DIM)
    assert mm.import_items("products", product_items).rejected == 0
    judgements = [
        Judgement("bag", "handbag", {"p04": 3, "p05": 1}),
        Judgement("shoe", "shoe", {"p01": 3, "p06": 3, "p10": 3, "p12": 3}),
        Judgement("none", "zzqx", {"p01": 1}),
    ]
    report = evaluate(lambda text: [h.id for h in mm.search("products", SearchRequest(text=text, page_size=100)).hits],
                      judgements)
    bag, shoe, none = report.queries
    # handbag: only p04 says it, and it comes first; the tote (graded 1) is not found
    ideal = 3 + 1 / math.log2(3)
    assert bag.metrics == pytest.approx({"ndcg@10": 3 / ideal, "p@10": 0.1, "recall@100": 0.5, "mrr": 1.0})
    assert shoe.found == 4 and shoe.metrics["recall@100"] == 1.0
    assert shoe.metrics["ndcg@10"] == pytest.approx(1.0) and shoe.metrics["p@10"] == pytest.approx(0.4)
    assert none.returned == 0 and report.metrics["zero_result_rate"] == pytest.approx(1 / 3)


# -- reading judgements --------------------------------------------------------------------------------------------


def test_jsonl_judgements(tmp_path):
    path = write(tmp_path / "j.jsonl", "\n" + jsonl([
        {"query": "女鞋", "relevant": {"P0000": 3, "P0002": 0}},
        {"id": "en", "query": "running shoes", "relevant": {"P0000": 2}, "note": "why the grades"},
        {"query": "unjudged", "relevant": {}},
    ]))
    got = load_judgements(path)
    assert got == [Judgement("q1", "女鞋", {"P0000": 3, "P0002": 0}), Judgement("en", "running shoes", {"P0000": 2}),
                   Judgement("q3", "unjudged", {})]
    assert [j.judged for j in got] == [True, True, False]


@pytest.mark.parametrize(("line", "message"), [
    ('{"query": "a", "relevant": {"x": 1}', "line 2: not valid JSON"),
    ('["a"]', "line 2: must be a JSON object"),
    ('{"query": "", "relevant": {"x": 1}}', "line 2: query must be a non-empty string"),
    ('{"query": "a", "relevant": ["x"]}', "line 2: relevant must be an object"),
    ('{"query": "a", "relevant": {"x": 4}}', "line 2: grade of 'x' must be an integer 0..3, got 4"),
    ('{"query": "a", "relevant": {"x": 1.5}}', "line 2: grade of 'x' must be an integer 0..3, got 1.5"),
    ('{"query": "a", "relevant": {"x": true}}', "line 2: grade of 'x' must be an integer 0..3, got true"),
    ('{"query": "a", "relevant": {"x": -1}}', "line 2: grade of 'x' must be an integer 0..3"),
    ('{"query": "a", "relevant": {"": 1}}', "line 2: relevant: an item id must be a non-empty string"),
    ('{"query": "a", "relevent": {"x": 1}}', "line 2: unknown key 'relevent'"),
    ('{"id": 7, "query": "a", "relevant": {"x": 1}}', "line 2: id must be a non-empty string"),
    ('{"id": "one", "query": "b", "relevant": {"x": 1}}', "line 2: id 'one' is used by an earlier line"),
])
def test_bad_jsonl_lines_are_named(tmp_path, line, message):
    path = write(tmp_path / "j.jsonl", '{"id": "one", "query": "a", "relevant": {"x": 1}}\n' + line + "\n")
    with pytest.raises(InvalidArgument) as exc:
        load_judgements(path)
    assert exc.value.message.startswith(f"judgements: j.jsonl {message}")
    assert exc.value.field == "judgements"


def test_trec_qrels_with_a_queries_file(tmp_path):
    qrels = write(tmp_path / "qrels.txt", "# qid iter docid grade\n1 0 P0000 3\n1 0 P0002 1\n2 Q0 P0007 2\n")
    queries = write(tmp_path / "queries.tsv", "1\t女鞋 春夏\n2\t4k tv\n3\tno qrels for this one\n")
    assert load_judgements(qrels, queries) == [
        Judgement("1", "女鞋 春夏", {"P0000": 3, "P0002": 1}),
        Judgement("2", "4k tv", {"P0007": 2}),
        Judgement("3", "no qrels for this one", {}),
    ]


@pytest.mark.parametrize(("qrels", "message"), [
    ("1 0 P0000 3\n1 0 P0001\n",
     "judgements: qrels.txt line 2: a qrels line is 'qid iter docid grade' (4 fields), got 3"),
    ("1 0 P0000 3\n9 0 P0001 1\n", "judgements: qrels.txt line 2: qid '9' is not in the queries file queries.tsv"),
    ("1 0 P0000 high\n", "judgements: qrels.txt line 1: grade of 'P0000' must be an integer 0..3, got 'high'"),
    ("1 0 P0000 5\n", "judgements: qrels.txt line 1: grade of 'P0000' must be an integer 0..3, got 5"),
    ("1 0 P0000 3\n1 0 P0000 2\n", "judgements: qrels.txt line 2: item 'P0000' is graded twice for qid '1'"),
])
def test_bad_qrels_lines_are_named(tmp_path, qrels, message):
    queries = write(tmp_path / "queries.tsv", "1\t女鞋\n")
    with pytest.raises(InvalidArgument) as exc:
        load_judgements(write(tmp_path / "qrels.txt", qrels), queries)
    assert exc.value.message == message


def test_file_level_errors(tmp_path):
    qrels = write(tmp_path / "qrels.txt", "1 0 P0000 3\n")
    with pytest.raises(InvalidArgument, match=r"reads as TREC qrels .* \(--queries\)") as exc:
        load_judgements(qrels)
    assert exc.value.field == "queries"
    with pytest.raises(InvalidArgument, match=r"queries: queries.tsv line 2: must be qid<TAB>query text"):
        load_judgements(qrels, write(tmp_path / "queries.tsv", "1\tok\n2 no tab\n"))
    with pytest.raises(InvalidArgument, match="a queries file goes with TREC qrels"):
        load_judgements(write(tmp_path / "j.jsonl", '{"query": "a", "relevant": {}}\n'), qrels)
    with pytest.raises(InvalidArgument, match="holds no queries"):
        load_judgements(write(tmp_path / "empty.jsonl", "\n# nothing\n"))
    with pytest.raises(InvalidArgument, match="not found"):
        load_judgements(tmp_path / "missing.jsonl")
    (tmp_path / "latin1.jsonl").write_bytes('{"query": "caf\u00e9"}'.encode("latin-1"))
    with pytest.raises(InvalidArgument, match="not UTF-8"):
        load_judgements(tmp_path / "latin1.jsonl")


# -- the command ---------------------------------------------------------------------------------------------------


@pytest.fixture
def catalogue(mm, product_items):
    mm.create_dataset("products", EXAMPLE_SCHEMA, vector_dim=VECTOR_DIM)
    assert mm.import_items("products", product_items).rejected == 0
    return mm


def invoke(home: Path, *args: str):
    return CliRunner().invoke(app, ["--home", str(home), "eval", *args])


def test_cli_json(catalogue, tmp_path):
    judgements = write(tmp_path / "j.jsonl", jsonl([
        {"id": "bag", "query": "handbag", "relevant": {"p04": 3}},
        {"id": "none", "query": "zzqx", "relevant": {"p01": 1}},
    ]))
    done = invoke(tmp_path, "products", str(judgements), "--json")
    assert done.exit_code == 0, (done.stdout, done.stderr)
    doc = json.loads(done.stdout)
    assert doc["dataset"] == "products" and doc["app"] is None
    assert (doc["queries"], doc["judged"], doc["k"], doc["depth"]) == (2, 2, 10, 100)
    assert doc["metrics"] == pytest.approx({"ndcg@10": 0.5, "p@10": 0.05, "recall@100": 0.5, "mrr": 0.5,
                                            "zero_result_rate": 0.5})
    assert doc["zero_result_queries"] == [{"id": "none", "query": "zzqx"}]
    assert "per_query" not in doc

    verbose = json.loads(invoke(tmp_path, "products", str(judgements), "--json", "--verbose").stdout)
    assert [(q["id"], q["returned"], q["found"]) for q in verbose["per_query"]] == [("bag", 1, 1), ("none", 0, 0)]

    shown = invoke(tmp_path, "products", str(judgements), "--verbose")
    assert shown.exit_code == 0, shown.stderr
    assert "ndcg@10" in shown.stdout and "zero-result rate" in shown.stdout and "handbag" in shown.stdout
    assert "1 queries returned nothing: zzqx" in shown.stdout


def test_cli_trec_and_errors(catalogue, tmp_path):
    qrels = write(tmp_path / "qrels.txt", "1 0 p04 3\n")
    queries = write(tmp_path / "queries.tsv", "1\thandbag\n")
    done = invoke(tmp_path, "products", str(qrels), "--queries", str(queries), "--json")
    assert done.exit_code == 0, done.stderr
    assert json.loads(done.stdout)["metrics"]["ndcg@10"] == pytest.approx(1.0)

    bad = invoke(tmp_path, "products", str(write(tmp_path / "bad.jsonl", '{"query": "a", "relevant": {"x": 9}}\n')),
                 "--json")
    assert bad.exit_code == 1 and bad.stdout == ""
    assert json.loads(bad.stderr)["error"] == {
        "code": "InvalidArgument", "field": "judgements",
        "message": "judgements: bad.jsonl line 1: grade of 'x' must be an integer 0..3, got 9"}
    unknown = invoke(tmp_path, "nosuch", str(qrels), "--queries", str(queries), "--json")
    assert unknown.exit_code == 1 and json.loads(unknown.stderr)["error"]["code"] == "NotFound"
    lance = invoke(tmp_path, "products", str(qrels), "--queries", str(queries), "--store", "lance", "--json")
    assert lance.exit_code == 0 and json.loads(lance.stdout)["metrics"]["ndcg@10"] == pytest.approx(1.0)
    store = invoke(tmp_path, "products", str(qrels), "--queries", str(queries), "--store", "elastic", "--json")
    assert store.exit_code == 1 and json.loads(store.stderr)["error"]["field"] == "--store"
    assert "'elastic' is not a store" in json.loads(store.stderr)["error"]["message"]


def test_cli_through_an_application_takes_several_pages(catalogue, tmp_path):
    catalogue.catalog.apps.create("shop", ["products"], {"max_page_size": 2, "rerank": False})
    judgements = write(tmp_path / "j.jsonl", jsonl([
        {"id": "shoe", "query": "shoe", "relevant": {"p01": 3, "p06": 3, "p10": 3, "p12": 3}}]))
    done = invoke(tmp_path, "products", str(judgements), "--app", "shop", "--json", "--verbose")
    assert done.exit_code == 0, (done.stdout, done.stderr)
    doc = json.loads(done.stdout)
    assert doc["app"] == "shop"
    assert doc["per_query"][0]["returned"] == 4 and doc["metrics"]["recall@100"] == 1.0  # two pages of two
    logged = sorted(e.request_id for e in catalogue.catalog.query_log.recent("shop"))
    assert logged == ["eval:1:1", "eval:1:2"]


# -- the judged query set shipped for the demo catalogue -----------------------------------------------------------


def test_the_shipped_demo_judgements_are_valid():
    judgements = load_judgements(SHIPPED)
    products = samples.load_products(absolute_images=False)
    known = {p["item_id"] for p in products}
    assert len(judgements) >= 60
    assert all(j.judged for j in judgements), [j.id for j in judgements if not j.judged]
    assert all(set(j.relevant) <= known for j in judgements), [j.id for j in judgements if set(j.relevant) - known]
    chinese = [j for j in judgements if re.search(r"[\u4e00-\u9fff]", j.query)]
    english = [j for j in judgements if re.fullmatch(r"[A-Za-z0-9' -]+", j.query)]
    assert len(chinese) >= 30 and len(english) >= 20
    # queries whose words the catalogue does not store as such (女鞋, 男鞋, 鞋子, 耐克 ...)
    text = "\n".join(" ".join(str(p.get(f, "")) for f in ("title", "description", "brand", "category")).lower()
                     for p in products)
    unstored = [j.query for j in judgements if j.query.replace(" ", "").lower() not in text.replace(" ", "")]
    assert {"女鞋", "男鞋", "鞋子", "running shoes", "女鞋 春夏"} <= set(unstored)
    assert len(unstored) >= 20
    # one readable JSON object a line, sorted by id, Chinese as written
    lines = SHIPPED.read_text(encoding="utf-8").splitlines()
    ids = [json.loads(line)["id"] for line in lines]
    assert ids == sorted(ids) and len(lines) == len(judgements)
    assert "女鞋" in SHIPPED.read_text(encoding="utf-8")
