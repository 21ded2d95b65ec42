"""Judgments in: graded pairs to train a student on, from a judge export, TREC qrels with their
queries and corpus, an evaluation set's folder, or a table a caller has read itself (bench/fixture.py
reads its own layout so), each completed to the same columns and checked row by row."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import pyarrow as pa

from .corpus_reader import read_corpus
from .pairs_input import PairsInput, file_format
from .reasons import MISSING_FIELD

JUDGED = ("query_id", "query", "doc_id", "title", "text", "grade", "expected_grade", "grade_probs", "status", "error",
          "split", "source", "bm25_rank", "bm25_score")


def read_judgments(path: str, *, queries: Optional[str] = None, corpus: Optional[str] = None,
                   strict: bool = True) -> pa.Table:
    """Graded pairs to train a student on, from any of:

    - a judge export (`labeler judge ... --out`, or a pipeline's judge stage folder): Parquet or
      JSONL rows with query_id, doc_id, grade and, unless `corpus` gives them, query and text;
    - TREC qrels (humans or another LLM) with `queries` (JSONL/Parquet: query_id or qid, query)
      and `corpus` (docs: doc_id, text[, title]);
    - a folder in the layout of an evaluation set: queries.jsonl, docs.jsonl, qrels.txt.

    Every row must be usable: a grade outside 0-3, a doc_id missing from the corpus or a query
    without text is an error naming the file and row, never a row quietly dropped. With `strict`
    off (an evaluation set read for scoring), a pair without query or text is kept as status
    "failed" with error "missing_field", so every source is scored on the same usable pairs.
    A table read some other way is completed and checked the same way by complete_judgments.
    """
    import pyarrow.compute as pc

    from .qrels import read_qrels, sniff_format

    p = Path(path)
    if (p / "qrels.txt").is_file() and (p / "queries.jsonl").is_file():  # an evaluation set's layout
        return read_judgments(str(p / "qrels.txt"), queries=queries or str(p / "queries.jsonl"),
                              corpus=corpus or str(p / "docs.jsonl"), strict=strict)
    if p.is_file() and sniff_format(p) == "qrels":
        t = read_qrels(p)
        where = str(p)
    else:
        src = PairsInput(path)
        blocks = [b for b in src.blocks() if b.num_rows]
        if not blocks:
            raise ValueError(f"judgments {path}: no rows")
        t = pa.concat_tables(blocks, promote_options="permissive")
        bad = t.filter(pc.is_valid(t.column("_reason")))
        if bad.num_rows:
            r = bad.slice(0, 1).to_pylist()[0]
            raise ValueError(f"judgments {r['_detail']}")
        grades = _column_of(src, "grade")
        t = t.append_column("grade", pa.array(grades, pa.int64())) if grades is not None else t
        for name in ("expected_grade", "grade_probs", "status", "error"):
            col = _column_of(src, name)
            if col is not None:
                t = t.append_column(name, pa.array(col))
        where = path
    return complete_judgments(t, where, queries, corpus, strict)


def _column_of(src: PairsInput, name: str) -> Optional[list]:
    """A column the pairs schema does not carry (grade, expected_grade, status), in file order."""
    import pyarrow.parquet as pq

    values: list = []
    found = False
    for f in src.files:
        if file_format(f) == "parquet":
            with src.fs.open_input_file(f) as fh:
                pf = pq.ParquetFile(fh)
                if name in pf.schema_arrow.names:
                    found = True
                    values += pf.read(columns=[name]).column(name).to_pylist()
                else:
                    values += [None] * pf.metadata.num_rows
        else:
            with src.fs.open_input_stream(f, compression="detect") as fh:
                for line in fh.read().split(b"\n"):
                    if line.strip():
                        v = json.loads(line).get(name)
                        found = found or v is not None
                        values.append(v)
    return values if found else None


def complete_judgments(t: pa.Table, where: str, queries: Optional[str], corpus: Optional[str],
                       strict: bool = True) -> pa.Table:
    """Judgments from a table with query_id, doc_id and grade (and what else it has: query, text,
    status, error, expected_grade, grade_probs, ...; input_row names a row's place, else
    `where`[i]): query text joined from `queries` and document text from `corpus` where the table
    has none, checked and cast to read_judgments' columns."""
    import pyarrow.compute as pc

    n = t.num_rows
    loc = t.column("input_row").to_pylist() if "input_row" in t.column_names else [f"{where}[{i}]" for i in range(n)]
    if "grade" not in t.column_names:
        raise ValueError(f"judgments {where}: no grade column")
    status = t.column("status").to_pylist() if "status" in t.column_names else ["ok"] * n
    errors = t.column("error").to_pylist() if "error" in t.column_names else [None] * n
    grades = t.column("grade").to_pylist()
    for i, (g, s) in enumerate(zip(grades, status)):
        if s == "ok" and (g is None or not 0 <= int(g) <= 3):
            raise ValueError(f"judgments {loc[i]}: grade {g!r} is not one of 0, 1, 2, 3")
    cols = {c: t.column(c) for c in t.column_names}
    if queries and ("query" not in cols or cols["query"].null_count == n):
        qt = _read_any(queries)
        qid = "query_id" if "query_id" in qt.column_names else "qid"
        lookup = dict(zip(map(str, qt.column(qid).to_pylist()), qt.column("query").to_pylist()))
        cols["query"] = pa.array([lookup.get(str(q)) for q in cols["query_id"].to_pylist()], pa.string())
    if corpus and ("text" not in cols or cols["text"].null_count == n):
        docs = read_corpus(corpus)
        idx = pc.index_in(cols["doc_id"].cast(pa.string()), value_set=docs.column("doc_id"))
        missing = pc.is_null(idx).to_pylist()
        if any(missing):
            i = missing.index(True)
            raise ValueError(f"judgments {loc[i]}: doc_id {cols['doc_id'][i].as_py()!r} is not in the corpus {corpus}")
        for c in ("text", "title", "doc_meta"):
            cols[c] = docs.column(c).take(idx)
    for c in ("query", "text"):
        if c not in cols:
            need = "--queries" if c == "query" else "--corpus"
            raise ValueError(f"judgments {where}: no {c} column; give {need} to join it by id")
        vals = cols[c].to_pylist()
        for i, v in enumerate(vals):
            if status[i] == "ok" and not (isinstance(v, str) and v.strip()):
                if strict:
                    raise ValueError(f"judgments {loc[i]}: {c} of ({cols['query_id'][i].as_py()}, "
                                     f"{cols['doc_id'][i].as_py()}) is missing or empty")
                status[i], errors[i] = "failed", MISSING_FIELD
    out = {}
    for c in JUDGED:
        if c in cols:
            out[c] = cols[c]
    out["status"] = pa.array(status, pa.string())
    out["error"] = pa.array(errors, pa.string())
    out["grade"] = pa.array([None if g is None else int(g) for g in grades], pa.int8())
    if "expected_grade" not in out:
        out["expected_grade"] = out["grade"].cast(pa.float32())
    for c in ("query_id", "doc_id"):
        out[c] = cols[c].cast(pa.string())
    return pa.table(out)


def _read_any(path: str) -> pa.Table:
    """A small JSONL or Parquet table read whole (queries files)."""
    import pyarrow.json as pj
    import pyarrow.parquet as pq

    if file_format(path) == "parquet":
        return pq.read_table(path)
    with open(path, "rb") as f:
        return pj.read_json(f)
