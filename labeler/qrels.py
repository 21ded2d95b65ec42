"""TREC qrels and run files: the interchange formats that trec_eval and every IR toolkit read.

Readers fail on the first malformed line with `file:line` in the message, because a silently
skipped judgment changes every metric computed downstream.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator, Mapping, Optional

import pyarrow as pa

QRELS_SCHEMA = pa.schema([
    ("query_id", pa.string()),
    ("doc_id", pa.string()),
    ("grade", pa.int8()),
])

Run = dict[str, dict[str, float]]


def _lines(path: Path) -> Iterator[tuple[int, list[str]]]:
    """Numbered, split, non-blank lines; '#' lines are comments so hand-written fixtures can explain themselves."""
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            fields = line.split()
            if fields and not fields[0].startswith("#"):
                yield lineno, fields


def _int(value: str, what: str, where: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{where}: {what} must be an integer, got {value!r}") from None


CONFLICT_POLICIES = ("max", "min", "first", "error")


def read_qrels(path: str | Path, on_conflict: str = "max", grades: Optional[Iterable[int]] = None) -> pa.Table:
    """Read `qid iter docid grade` lines into (query_id, doc_id, grade).

    A pair judged twice with the same grade is kept once. Real judgment sets also judge some
    pairs twice with different grades (LiveQA-Med dev: 89 of 1,147 pairs), so contradictions
    are resolved by `on_conflict` (the higher grade by default: some assessor found that much
    in the document) and counted in a warning; "error" refuses them instead. The count is kept
    in the table's schema metadata (`conflicts`).
    """
    if on_conflict not in CONFLICT_POLICIES:
        raise ValueError(f"on_conflict must be one of {CONFLICT_POLICIES}, got {on_conflict!r}")
    path = Path(path)
    allowed = None if grades is None else set(grades)
    seen: dict[tuple[str, str], tuple[int, int]] = {}
    conflicts = 0
    for lineno, fields in _lines(path):
        where = f"{path}:{lineno}"
        if len(fields) != 4:
            raise ValueError(f"{where}: expected 4 fields 'qid iter docid grade', got {len(fields)}: "
                             f"{' '.join(fields)!r}")
        qid, _, docid, grade_s = fields
        grade = _int(grade_s, "grade", where)
        if not -128 <= grade <= 127:
            raise ValueError(f"{where}: grade {grade} is out of range")
        if allowed is not None and grade not in allowed:
            raise ValueError(f"{where}: grade {grade} is not one of {', '.join(map(str, sorted(allowed)))}")
        key = (qid, docid)
        if key in seen and seen[key][0] != grade:
            if on_conflict == "error":
                raise ValueError(f"{where}: query {qid!r} doc {docid!r} judged {grade} here but "
                                 f"{seen[key][0]} on line {seen[key][1]}")
            conflicts += 1
            if (on_conflict == "max" and grade > seen[key][0]) or (on_conflict == "min" and grade < seen[key][0]):
                seen[key] = (grade, lineno)
        seen.setdefault(key, (grade, lineno))
    if conflicts:
        import warnings
        warnings.warn(f"{path}: {conflicts} judgments contradict an earlier grade of the same pair; kept the "
                      f"{'first' if on_conflict == 'first' else on_conflict} grade (on_conflict={on_conflict!r})",
                      stacklevel=2)
    table = pa.table({
        "query_id": [k[0] for k in seen],
        "doc_id": [k[1] for k in seen],
        "grade": [v[0] for v in seen.values()],
    }, schema=QRELS_SCHEMA)
    return table.replace_schema_metadata({"conflicts": str(conflicts), "on_conflict": on_conflict})


def _check_id(value, what: str, row: int) -> str:
    if value is None or value == "" or any(c.isspace() for c in str(value)):
        raise ValueError(f"row {row}: {what} {value!r} cannot be written to a whitespace-separated TREC file")
    return str(value)


def _labeled_rows(table: pa.Table) -> Iterable[tuple[int, dict]]:
    """Rows that carry a usable grade: a failed or ungraded pair is absent, never grade 0."""
    cols = [c for c in ("query_id", "doc_id", "grade", "status") if c in table.column_names]
    for i, row in enumerate(table.select(cols).to_pylist()):
        if row.get("status", "ok") in (None, "ok") and row["grade"] is not None:
            yield i, row


def write_qrels(table: pa.Table, path: str | Path) -> int:
    """Write a labels (or qrels) table as `qid 0 docid grade`; returns the number of lines written."""
    missing = {"query_id", "doc_id", "grade"} - set(table.column_names)
    if missing:
        raise ValueError(f"cannot write qrels: table lacks columns {sorted(missing)}")
    lines = []
    for i, row in _labeled_rows(table):
        lines.append(f"{_check_id(row['query_id'], 'query_id', i)} 0 "
                     f"{_check_id(row['doc_id'], 'doc_id', i)} {int(row['grade'])}\n")
    Path(path).write_text("".join(lines), encoding="utf-8")
    return len(lines)


def read_run(path: str | Path) -> Run:
    """Read `qid Q0 docid rank score tag` lines into {qid: {docid: score}} (the shape pytrec_eval takes)."""
    path = Path(path)
    run: Run = {}
    for lineno, fields in _lines(path):
        where = f"{path}:{lineno}"
        if len(fields) != 6:
            raise ValueError(f"{where}: expected 6 fields 'qid Q0 docid rank score tag', got {len(fields)}: "
                             f"{' '.join(fields)!r}")
        qid, _, docid, rank, score_s, _ = fields
        _int(rank, "rank", where)
        try:
            score = float(score_s)
        except ValueError:
            raise ValueError(f"{where}: score must be a number, got {score_s!r}") from None
        if score != score:
            raise ValueError(f"{where}: score is NaN")
        docs = run.setdefault(qid, {})
        if docid in docs:
            raise ValueError(f"{where}: doc {docid!r} appears twice for query {qid!r}")
        docs[docid] = score
    return run


def write_run(run: Mapping[str, Mapping[str, float]], path: str | Path, tag: str = "labeler") -> int:
    """Write {qid: {docid: score}} as a TREC run, ranked by score (ties by doc id for determinism)."""
    if not tag or any(c.isspace() for c in tag):
        raise ValueError(f"run tag {tag!r} must be a non-empty word")
    lines = []
    for qid in sorted(run):
        ranked = sorted(run[qid].items(), key=lambda kv: (-kv[1], kv[0]))
        for rank, (docid, score) in enumerate(ranked, 1):
            lines.append(f"{_check_id(qid, 'query_id', len(lines))} Q0 {_check_id(docid, 'doc_id', len(lines))} "
                         f"{rank} {float(score):.6g} {tag}\n")
    Path(path).write_text("".join(lines), encoding="utf-8")
    return len(lines)


def qrels_dict(table: pa.Table) -> dict[str, dict[str, int]]:
    """(query_id, doc_id, grade) rows -> {qid: {docid: grade}}, skipping unlabeled rows."""
    out: dict[str, dict[str, int]] = {}
    for _, row in _labeled_rows(table):
        out.setdefault(str(row["query_id"]), {})[str(row["doc_id"])] = int(row["grade"])
    return out


def sniff_format(path: str | Path) -> str:
    """'parquet', 'qrels', 'run' or 'jsonl', from the file's bytes rather than its name."""
    path = Path(path)
    if path.is_dir():
        return "parquet"
    with open(path, "rb") as f:
        head = f.read(4)
    if head == b"PAR1":
        return "parquet"
    for lineno, fields in _lines(path):
        if fields[0].startswith("{"):
            return "jsonl"
        if len(fields) == 4:
            return "qrels"
        if len(fields) == 6:
            return "run"
        raise ValueError(f"{path}:{lineno}: not a qrels (4 fields), run (6 fields) or JSONL line: "
                         f"{' '.join(fields)!r}")
    raise ValueError(f"{path}: file is empty")
