"""Offline relevance evaluation: judged queries in, nDCG@10, P@10, recall@100, MRR and the zero-result rate out.

The measures come from trec_eval (through `pytrec_eval`, imported on first use), so the figures are the ones the IR
literature reports: nDCG with the grade as the gain (trec_eval's `ndcg_cut`, gain = grade, discount log2(rank + 1)),
P@k over k places even when fewer items came back, recall over the items graded >= 1, and the reciprocal rank of the
first item graded >= 1. Only the zero-result rate is counted here: the share of queries with at least one relevant
item that returned no items at all.

Judgements are read from either
- JSON Lines, one query a line: `{"query": "女鞋", "relevant": {"P0000": 3, "P0002": 2}, "id": "optional"}`
  (an optional `"note"` string documents the grading and is ignored), or
- TREC qrels (`qid iter docid grade`, whitespace-separated; `#` comments) with a queries file of `qid<TAB>text` lines.

Grades are integers 0..3: 0 not relevant, 1 marginal, 2 clearly relevant, 3 exactly what was asked. A query whose
grades are all 0 (or, in TREC form, that no qrels line names) is run and listed, but left out of the means.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmsearch.errors import InvalidArgument

MAX_GRADE = 3
JSONL_KEYS = ("id", "query", "relevant", "note")


@dataclass(frozen=True)
class Judgement:
    """One query and the grade of each judged item (items not listed count as not relevant)."""

    id: str
    query: str
    relevant: dict[str, int]

    @property
    def judged(self) -> bool:
        """At least one item graded relevant (>= 1): the query counts in the means."""
        return any(g > 0 for g in self.relevant.values())


@dataclass(frozen=True)
class QueryResult:
    id: str
    query: str
    returned: int  # items the query returned, up to the evaluation depth
    relevant: int  # items graded >= 1
    found: int  # of those, how many came back within the depth
    metrics: dict[str, float] | None  # None for a query without relevant items (not in the means)

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "query": self.query, "returned": self.returned, "relevant": self.relevant,
                "found": self.found, "metrics": self.metrics}


@dataclass
class Report:
    k: int
    depth: int
    queries: list[QueryResult]
    metrics: dict[str, float]  # means over the judged queries, plus zero_result_rate
    seconds: float = 0.0
    metric_names: list[str] = field(default_factory=list)  # per-query measures in display order

    @property
    def judged(self) -> int:
        return sum(q.metrics is not None for q in self.queries)

    @property
    def zero_result_queries(self) -> list[QueryResult]:
        """Judged queries that returned nothing (what the zero-result rate counts)."""
        return [q for q in self.queries if q.metrics is not None and q.returned == 0]

    def as_dict(self, per_query: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "queries": len(self.queries), "judged": self.judged, "k": self.k, "depth": self.depth,
            "metrics": self.metrics,
            "zero_result_queries": [{"id": q.id, "query": q.query} for q in self.zero_result_queries],
            "seconds": round(self.seconds, 3),
        }
        if per_query:
            out["per_query"] = [q.as_dict() for q in self.queries]
        return out


def metric_names(k: int = 10, depth: int = 100) -> list[str]:
    return [f"ndcg@{k}", f"p@{k}", f"recall@{depth}", "mrr"]


# -- reading judgements ------------------------------------------------------------------------------------------


def load_judgements(path: Path, queries: Path | None = None) -> list[Judgement]:
    """Judgements from JSON Lines, or from TREC qrels plus a `qid<TAB>text` queries file (`queries`).

    The format is told by the first line that is not blank or a `#` comment: `{` starts JSON Lines. Every error is
    an `InvalidArgument` naming the file, the line and the rule."""
    lines = _read_lines(path, "judgements")
    first = next((text.lstrip() for _, text in lines if text.strip() and not text.lstrip().startswith("#")), None)
    if first is None:
        raise InvalidArgument(f"judgements: {path.name} holds no queries", field="judgements")
    if first.startswith("{"):
        if queries is not None:
            raise InvalidArgument("queries: a queries file goes with TREC qrels; JSON Lines judgements carry "
                                  "their query text", field="queries")
        return _load_jsonl(path.name, lines)
    if queries is None:
        raise InvalidArgument(f"queries: {path.name} reads as TREC qrels (qid iter docid grade), which need a "
                              "queries file of qid<TAB>text lines (--queries)", field="queries")
    return _load_trec(path.name, lines, queries)


def _read_lines(path: Path, what: str) -> list[tuple[int, str]]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidArgument(f"{what}: file {str(path)!r} not found", field=what) from None
    except UnicodeDecodeError as exc:
        raise InvalidArgument(f"{what}: {Path(path).name} is not UTF-8 (byte {exc.start})", field=what) from None
    except OSError as exc:
        raise InvalidArgument(f"{what}: cannot read {str(path)!r}: {exc.strerror}", field=what) from None
    return [(n, line) for n, line in enumerate(text.removeprefix("\ufeff").splitlines(), start=1)]


def _bad(name: str, n: int, rule: str, field: str = "judgements") -> InvalidArgument:
    return InvalidArgument(f"{field}: {name} line {n}: {rule}", field=field)


def _grade(value: Any, name: str, n: int, doc: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_GRADE:
        raise _bad(name, n, f"grade of {doc!r} must be an integer 0..{MAX_GRADE}, got {json.dumps(value)}")
    return value


def _load_jsonl(name: str, lines: list[tuple[int, str]]) -> list[Judgement]:
    out: list[Judgement] = []
    seen: set[str] = set()
    for n, text in lines:
        if not text.strip() or text.lstrip().startswith("#"):
            continue
        try:
            row = json.loads(text)
        except json.JSONDecodeError as exc:
            raise _bad(name, n, f"not valid JSON: {exc.msg} (column {exc.colno})") from None
        if not isinstance(row, dict):
            raise _bad(name, n, "must be a JSON object with query and relevant")
        unknown = sorted(set(row) - set(JSONL_KEYS))
        if unknown:
            raise _bad(name, n, f"unknown key {unknown[0]!r} (allowed: {', '.join(JSONL_KEYS)})")
        query = row.get("query")
        if not isinstance(query, str) or not query.strip():
            raise _bad(name, n, "query must be a non-empty string")
        relevant = row.get("relevant")
        if not isinstance(relevant, dict):
            raise _bad(name, n, "relevant must be an object of item id -> grade")
        for doc in relevant:
            if not doc:
                raise _bad(name, n, "relevant: an item id must be a non-empty string")
        grades = {doc: _grade(g, name, n, doc) for doc, g in relevant.items()}
        qid = row.get("id", f"q{len(out) + 1}")
        if not isinstance(qid, str) or not qid:
            raise _bad(name, n, "id must be a non-empty string")
        if "note" in row and not isinstance(row["note"], str):
            raise _bad(name, n, "note must be a string")
        if qid in seen:
            raise _bad(name, n, f"id {qid!r} is used by an earlier line")
        seen.add(qid)
        out.append(Judgement(id=qid, query=query, relevant=grades))
    return out


def _load_trec(name: str, lines: list[tuple[int, str]], queries_path: Path) -> list[Judgement]:
    texts: dict[str, str] = {}
    qname = Path(queries_path).name
    for n, text in _read_lines(queries_path, "queries"):
        if not text.strip() or text.startswith("#"):
            continue
        qid, tab, query = text.partition("\t")
        qid = qid.strip()
        if not tab or not qid or not query.strip():
            raise _bad(qname, n, "must be qid<TAB>query text", field="queries")
        if qid in texts:
            raise _bad(qname, n, f"qid {qid!r} is used by an earlier line", field="queries")
        texts[qid] = query.strip()
    if not texts:
        raise InvalidArgument(f"queries: {qname} holds no queries", field="queries")
    grades: dict[str, dict[str, int]] = {qid: {} for qid in texts}
    for n, text in lines:
        if not text.strip() or text.lstrip().startswith("#"):
            continue
        parts = text.split()
        if len(parts) != 4:
            raise _bad(name, n, f"a qrels line is 'qid iter docid grade' (4 fields), got {len(parts)}")
        qid, _, doc, raw = parts
        if qid not in texts:
            raise _bad(name, n, f"qid {qid!r} is not in the queries file {qname}")
        try:
            grade = int(raw)
        except ValueError:
            raise _bad(name, n, f"grade of {doc!r} must be an integer 0..{MAX_GRADE}, got {raw!r}") from None
        _grade(grade, name, n, doc)
        if doc in grades[qid]:
            raise _bad(name, n, f"item {doc!r} is graded twice for qid {qid!r}")
        grades[qid][doc] = grade
    return [Judgement(id=qid, query=query, relevant=grades[qid]) for qid, query in texts.items()]


# -- running and scoring -----------------------------------------------------------------------------------------


def evaluate(
    run_query: Callable[[str], Sequence[str]], judgements: Sequence[Judgement], k: int = 10, depth: int = 100,
) -> Report:
    """Run every query through `run_query(text) -> ranked item ids` and score the rankings.

    The first `depth` distinct ids count (recall is recall@depth; MRR looks no deeper). Means are over the queries
    with at least one relevant item; the zero-result rate is the share of those that returned nothing."""
    if k < 1 or depth < k:
        raise InvalidArgument(f"k and depth: need 1 <= k <= depth, got k={k}, depth={depth}", field="k")
    started = time.perf_counter()
    rankings: list[list[str]] = []
    for j in judgements:
        ids = list(dict.fromkeys(run_query(j.query)))  # a repeated id counts once, at its first place
        rankings.append(ids[:depth])
    names = metric_names(k, depth)
    scores = _trec_eval(judgements, rankings, k, depth)
    results: list[QueryResult] = []
    for i, (j, ids) in enumerate(zip(judgements, rankings, strict=True)):
        positive = {doc for doc, g in j.relevant.items() if g > 0}
        metrics = None
        if positive:
            # trec_eval leaves out a query with an empty ranking: it scores 0 on every measure
            got = scores.get(str(i), {})
            metrics = {n: float(got.get(m, 0.0)) for n, m in zip(names, _measure_keys(k, depth), strict=True)}
        results.append(QueryResult(id=j.id, query=j.query, returned=len(ids), relevant=len(positive),
                                   found=len(positive.intersection(ids)), metrics=metrics))
    judged = [r for r in results if r.metrics is not None]
    means = {n: (math.fsum(r.metrics[n] for r in judged) / len(judged) if judged else 0.0)  # type: ignore[index]
             for n in names}
    means["zero_result_rate"] = sum(r.returned == 0 for r in judged) / len(judged) if judged else 0.0
    return Report(k=k, depth=depth, queries=results, metrics=means, seconds=time.perf_counter() - started,
                  metric_names=names)


def _measure_keys(k: int, depth: int) -> list[str]:
    """pytrec_eval's result keys for metric_names(k, depth), in the same order."""
    return [f"ndcg_cut_{k}", f"P_{k}", f"recall_{depth}", "recip_rank"]


def _trec_eval(judgements: Sequence[Judgement], rankings: list[list[str]], k: int, depth: int
               ) -> dict[str, dict[str, float]]:
    """Per-query measures from trec_eval. Queries are keyed by position (ids in the file may repeat text or hold
    characters trec_eval would split on); scores fall strictly with rank, so trec_eval's tie-breaking by document id
    never reorders a ranking."""
    import pytrec_eval  # ~0.2 s, most of it numpy: only when evaluating

    qrels = {str(i): dict(j.relevant) for i, j in enumerate(judgements) if j.judged}
    if not qrels:
        return {}
    run = {str(i): {doc: float(len(ids) - r) for r, doc in enumerate(ids)}
           for i, ids in enumerate(rankings) if ids and str(i) in qrels}
    measures = {f"ndcg_cut.{k}", f"P.{k}", f"recall.{depth}", "recip_rank"}
    return pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(run)
