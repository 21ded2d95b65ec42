"""The teacher-judgment fixture: MedQuAD queries, mined pairs and the teacher's grades, made once
with the project's own stages and kept in bench/data/medquad-teacher/ (no document text: it is
joined from the MedQuAD corpus by doc_id when read, read_judgments below).

    .venv/bin/python bench/fixture.py build            # synthesize -> mine -> judge, + LiveQA-Med dev
    .venv/bin/python bench/fixture.py export           # write bench/data from what is finished so far
    .venv/bin/python bench/fixture.py status

Teacher time is hours on a CPU, so the build continues from the committed part: before a stage
runs, the rows the fixture already holds are put back into that stage's work folder, where the
stage's own resume (labeler.store) finds them and does only the rest. `export` can run while a
build runs (it reads finished parts only), so what is finished can be committed at any time.

Files (bench/data/medquad-teacher/):
  queries.parquet          query_id, query, kind, seed_doc_id, model, token counts
  queries_rejected.parquet synthesis requests that gave no query, with their reason
  judgments.parquet        query_id, doc_id, source, bm25_rank, bm25_score, split, status, error,
                           grade, expected_grade, grade_probs, grade_mass, truncated, prompt_tokens
  liveqa_dev.parquet       the teacher's grades of every LiveQA-Med dev pair (same columns, no split)
  manifest.json            teacher, prompt template and its hash, the config, fingerprints, counts
The last line of `build` and `status` is one JSON object.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from labeler.config import identity, load_config  # noqa: E402
from labeler.judgments_reader import complete_judgments  # noqa: E402
from labeler.judgments_reader import read_judgments as read_other_judgments  # noqa: E402
from labeler.schema import JUDGMENTS, QUERIES, REJECTED  # noqa: E402
from labeler.store import RunStore, read_parts, write_json_atomic  # noqa: E402

log = logging.getLogger("fixture")
FIXTURE = ROOT / "bench" / "data" / "medquad-teacher"
CONFIG = ROOT / "configs" / "medquad.yaml"
DEV = ROOT.parent / "shared" / "data" / "liveqa-med-dev"
GRADE_COLS = ["status", "error", "grade", "expected_grade", "grade_probs", "grade_mass", "truncated", "prompt_tokens"]
PAIR_COLS = ["query_id", "doc_id", "source", "bm25_rank", "bm25_score", "split"]
SEEDED = "part-00000000000000000000-fixture.parquet"  # sorts first; one per restore


def _pipeline(cfg, work: Path):
    from labeler.pipeline import Pipeline

    return Pipeline(cfg, work, log=lambda m: log.info(m))


def _read(fixture: Path, name: str):
    p = fixture / name
    return pq.read_table(p) if p.is_file() else None


def _manifest(fixture: Path) -> dict:
    p = fixture / "manifest.json"
    return json.loads(p.read_text()) if p.is_file() else {}


def _work_dir(store: RunStore, stage: str, fp: str) -> Path:
    return store.root / ".work" / f"{stage}-{fp}"


def _seed(work: Path, data: pa.Table | None, rejected: pa.Table | None, key) -> int:
    """Put fixture rows into a stage's work folder, leaving out keys an earlier attempt there has."""
    if data is None and rejected is None:
        return 0
    (work / "data").mkdir(parents=True, exist_ok=True)
    (work / "rejected").mkdir(parents=True, exist_ok=True)
    if (work / "data" / SEEDED).exists() or (work / "rejected" / SEEDED).exists():
        return 0
    have = set()
    for part in ("data", "rejected"):
        t = read_parts(work / part)
        if t is not None:
            have.update(key(t, part))
    n = 0
    for part, t in (("data", data), ("rejected", rejected)):
        if t is None:
            continue
        keep = pa.array([k not in have for k in key(t, part)], pa.bool_())
        t = t.filter(keep)
        if t.num_rows:
            pq.write_table(t, work / part / SEEDED)
            n += t.num_rows
    return n


def _pair_key(t: pa.Table, part: str) -> list:
    if part == "rejected":
        return t.column("key").to_pylist()
    return [f"{q}\t{d}" for q, d in zip(t.column("query_id").to_pylist(), t.column("doc_id").to_pylist())]


def _query_key(t: pa.Table, part: str) -> list:
    return t.column("key" if part == "rejected" else "query_id").to_pylist()


def _with_text(grades: pa.Table, pairs: pa.Table) -> tuple[pa.Table, pa.Table]:
    """Fixture grade rows -> JUDGMENTS rows (text from the run's pairs) and their REJECTED rows;
    rows whose pair the run did not mine are left out."""
    cols = [c for c in JUDGMENTS.names if c not in GRADE_COLS and c not in ("model", "model_version")]
    g = grades.select(["query_id", "doc_id", "model", "model_version", *GRADE_COLS])
    # Acero joins no list columns (grade_probs): join on the keys and a row number, then take.
    idx = g.select(["query_id", "doc_id"]).append_column("_g", pa.array(range(g.num_rows), pa.int64()))
    t = pairs.select(cols).join(idx, keys=["query_id", "doc_id"], join_type="inner")
    picked = g.take(t.column("_g"))
    for c in ("model", "model_version", *GRADE_COLS):
        t = t.append_column(c, picked.column(c))
    t = t.select(JUDGMENTS.names).cast(JUDGMENTS)
    bad = t.filter(pc.not_equal(t.column("status"), "ok"))
    rej = pa.table({"key": _pair_key(bad, "data"), "reason": bad.column("error"),
                    "detail": pa.array(["restored from the fixture"] * bad.num_rows, pa.string()),
                    "record": pa.nulls(bad.num_rows, pa.string())}, schema=REJECTED)
    return t, rej


# ---------------------------------------------------------------------------- judgments read
def is_fixture(path) -> bool:
    """A folder in this fixture's layout (manifest.json and judgments.parquet)."""
    p = Path(path)
    return (p / "manifest.json").is_file() and (p / "judgments.parquet").is_file()


def judgments(fixture: Path) -> pa.Table:
    """The fixture's grade rows with their query text: the table labeler.judgments_reader.
    complete_judgments takes (no document text: it is joined from a corpus by doc_id)."""
    t = pq.read_table(fixture / "judgments.parquet")
    q = pq.read_table(fixture / "queries.parquet", columns=["query_id", "query"])
    # by position, not Table.join: Acero cannot carry the list column grade_probs through a join
    at = pc.index_in(t.column("query_id"), value_set=q.column("query_id"))
    return t.append_column("query", pc.take(q.column("query"), at))


def read_judgments(path, *, queries: str | None = None, corpus: str | None = None,
                   default_corpus: str | None = None, strict: bool = True) -> pa.Table:
    """labeler.judgments_reader.read_judgments, which reads this fixture's folder too: its grades,
    with the document text joined from `corpus`, else `default_corpus`, else the corpus its
    manifest names."""
    p = Path(path)
    if not is_fixture(p):
        return read_other_judgments(str(path), queries=queries, corpus=corpus, strict=strict)
    corpus = corpus or default_corpus or _manifest(p).get("corpus")
    return complete_judgments(judgments(p), f"{p}/judgments.parquet", queries, corpus, strict)


# ------------------------------------------------------------------------------------ dev pairs
def dev_pairs() -> pa.Table:
    """Every distinct judged LiveQA-Med dev pair (no grades), sorted by query."""
    from labeler.schema import PAIRS

    queries = {q["qid"]: q for q in map(json.loads, (DEV / "queries.jsonl").read_text().splitlines())}
    docs = {d["doc_id"]: d for d in map(json.loads, (DEV / "docs.jsonl").read_text().splitlines())}
    seen, rows = set(), []
    for line in (DEV / "qrels.txt").read_text().splitlines():
        q, _, d, _ = line.split()
        if (q, d) in seen:
            continue
        seen.add((q, d))
        rows.append({"query_id": q, "query": queries[q]["query"], "doc_id": d, "title": docs[d]["title"],
                     "text": docs[d]["text"], "doc_meta": None, "source": "qrels", "bm25_rank": None,
                     "bm25_score": None, "split": "heldout"})
    return pa.Table.from_pylist(rows, schema=PAIRS)


def _dev_fingerprint(cfg) -> str:
    from labeler.prompts import template_hash

    blob = [identity(cfg.judge.engine), cfg.judge.grading.model_dump(mode="json"),
            template_hash(cfg.judge.grading.prompt), hashlib.sha256((DEV / "qrels.txt").read_bytes()).hexdigest()]
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------- build
def build(cfg_path: Path, work: Path, fixture: Path, dev: bool, until: str, dev_first: bool = False) -> dict:
    """synthesize -> mine -> judge, then the LiveQA-Med dev pairs (before the judge stage with
    dev_first: the dev grades are few and every student comparison needs them)."""
    cfg = load_config(cfg_path)
    pipe = _pipeline(cfg, work)
    man = _manifest(fixture)
    fps = man.get("fingerprints", {})
    # synthesize: the committed queries (and rejected requests) when their fingerprint matches
    fp = pipe.fingerprint("synthesize")
    if not pipe.store.is_done("synthesize", fp) and fps.get("synthesize") == fp:
        n = _seed(_work_dir(pipe.store, "synthesize", fp), _read(fixture, "queries.parquet"),
                  _read(fixture, "queries_rejected.parquet"), _query_key)
        log.info("synthesize: restored %d rows from %s", n, fixture)
    pipe.run(until="mine")
    with_dev = dev and until == "dev"
    if with_dev and dev_first:
        _build_dev(cfg, pipe, work, fixture, man)
    if until != "mine":
        _build_judge(pipe, fixture, fps)
    if with_dev and not dev_first:
        _build_dev(cfg, pipe, work, fixture, man)
    return export(cfg_path, work, fixture)


def _build_judge(pipe, fixture: Path, fps: dict) -> None:
    store = pipe.store
    fp = pipe.fingerprint("judge")
    grades = _read(fixture, "judgments.parquet")
    if not store.is_done("judge", fp) and fps.get("judge") == fp and grades is not None:
        data, rej = _with_text(grades, store.table("mine"))
        n = _seed(_work_dir(store, "judge", fp), data, rej, _pair_key)
        log.info("judge: restored %d graded pairs from %s", n, fixture)
    pipe.run(until="judge")


def _build_dev(cfg, pipe, work: Path, fixture: Path, man: dict) -> None:
    from labeler.stages.grade_stream import grade as grade_pairs

    dstore = RunStore(work / "liveqa-dev")
    fp = _dev_fingerprint(cfg)
    if dstore.is_done("judge", fp):
        return
    grades = _read(fixture, "liveqa_dev.parquet")
    if grades is not None and man.get("liveqa_dev", {}).get("fingerprint") == fp:
        data, rej = _with_text(grades, dev_pairs())
        n = _seed(_work_dir(dstore, "judge", fp), data, rej, _pair_key)
        log.info("liveqa dev: restored %d graded pairs", n)
    pipe.ray_up()
    w = dstore.writer("judge", fp, JUDGMENTS)
    n = grade_pairs(w, dev_pairs(), cfg.judge.engine, cfg.judge.grading, cfg.seed)
    w.publish(n, config={"engine": cfg.judge.engine.model_dump(mode="json"),
                         "grading": cfg.judge.grading.model_dump(mode="json")}, upstream={})


# --------------------------------------------------------------------------------------- export
def _stage_rows(store: RunStore, stage: str, fp: str, part: str):
    """Rows of a stage: its published output when it is done, else its work folder's finished parts."""
    folder = store.path(stage) / part if store.is_done(stage, fp) else _work_dir(store, stage, fp) / part
    return read_parts(folder), store.is_done(stage, fp)


def export(cfg_path: Path, work: Path, fixture: Path) -> dict:
    from labeler.prompts import template_hash

    cfg = load_config(cfg_path)
    pipe = _pipeline(cfg, work)
    store = pipe.store
    fixture.mkdir(parents=True, exist_ok=True)
    put = lambda t, name: _write(t, fixture / name)  # noqa: E731
    fps = {s: pipe.fingerprint(s) for s in ("corpus", "synthesize", "mine", "judge")}
    status: dict = {}
    q, done = _stage_rows(store, "synthesize", fps["synthesize"], "data")
    if q is not None:
        qr, _ = _stage_rows(store, "synthesize", fps["synthesize"], "rejected")
        put(q.select(QUERIES.names).sort_by("query_id"), "queries.parquet")
        if qr is not None:
            put(qr.sort_by("key"), "queries_rejected.parquet")
        status["synthesize"] = {"complete": done, "queries": q.num_rows,
                                "rejected": 0 if qr is None else qr.num_rows,
                                "kinds": _counts(q.column("kind").to_pylist())}
    j, done = _stage_rows(store, "judge", fps["judge"], "data")
    if j is not None:
        put(_grades(j, PAIR_COLS), "judgments.parquet")
        ok = j.filter(pc.equal(j.column("status"), "ok"))
        status["judge"] = {"complete": done, "pairs": j.num_rows, "graded": ok.num_rows,
                           "grades": _counts(ok.column("grade").to_pylist()),
                           "queries": len(set(j.column("query_id").to_pylist()))}
        if store.manifest("mine") is not None:
            status["judge"]["mine_pairs"] = store.manifest("mine")["rows_out"]
        jm = store.manifest("judge") if done else None
        if jm:  # the teacher's rate in the judge stage, start-up included: what a student is compared with
            status["judge"]["pairs_per_s"] = round(jm["rows_in"] / jm["wall_s"], 4)
            status["teacher_pairs_per_s"] = status["judge"]["pairs_per_s"]
    dstore = RunStore(work / "liveqa-dev")
    dfp = _dev_fingerprint(cfg)
    d, done = _stage_rows(dstore, "judge", dfp, "data")
    if d is not None:
        put(_grades(d, ["query_id", "doc_id"]), "liveqa_dev.parquet")
        status["liveqa_dev"] = {"complete": done, "pairs": d.num_rows, "fingerprint": dfp,
                                "graded": int(pc.sum(pc.equal(d.column("status"), "ok")).as_py() or 0)}
        dm = dstore.manifest("judge") if done else None
        if dm and dm.get("wall_s"):  # wall_s counts the last attempt only when the grading was resumed
            status["liveqa_dev"]["pairs_per_s"] = round(dm["rows_in"] / dm["wall_s"], 4)
            status["liveqa_dev"]["engine"] = dm.get("engine")
            steady = (dm.get("engine") or {}).get("steady_pairs_per_s")  # the engines' own rate, no start-up
            status.setdefault("teacher_pairs_per_s", steady or status["liveqa_dev"]["pairs_per_s"])
    man = {**_manifest(fixture), **status,
           "teacher": cfg.judge.engine.model, "query_writer": cfg.synthesize.engine.model,
           "grading": {**cfg.judge.grading.model_dump(mode="json"), "template_hash": template_hash(cfg.judge.grading.prompt)},
           "synthesize_template": {"name": cfg.synthesize.prompt, "hash": template_hash(cfg.synthesize.prompt)},
           "config_file": str(cfg_path.relative_to(ROOT)) if cfg_path.is_relative_to(ROOT) else str(cfg_path),
           "config": cfg.model_dump(mode="json", exclude={"base_dir"}),
           "fingerprints": fps, "corpus": cfg.corpus.path, "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "commit": _git_head()}
    if (fixture / "judgments.parquet").is_file():
        mv = pq.read_table(fixture / "judgments.parquet", columns=["model_version"]).column("model_version")
        man["teacher_version"] = mv[0].as_py() if len(mv) else None
    write_json_atomic(man, fixture / "manifest.json")
    return {k: man.get(k) for k in ("synthesize", "judge", "liveqa_dev", "teacher", "grading")}


def _grades(t: pa.Table, keys: list[str]) -> pa.Table:
    cols = keys + ["model", "model_version"] + GRADE_COLS
    return t.select(cols).sort_by([("query_id", "ascending"), ("doc_id", "ascending")])


def _write(t: pa.Table, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(t, tmp, compression="zstd")
    tmp.replace(path)


def _counts(values) -> dict:
    out: dict = {}
    for v in values:
        out[str(v)] = out.get(str(v), 0) + 1
    return dict(sorted(out.items()))


def _git_head() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip() or None
    except OSError:
        return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("action", choices=["build", "export", "status"])
    ap.add_argument("--config", default=str(CONFIG))
    ap.add_argument("--work", default=str(ROOT / "out" / "medquad"), help="the run folder the stages work in")
    ap.add_argument("--until", choices=["mine", "judge", "dev"], default="dev",
                    help="mine: queries and pairs only; judge: + teacher grades; dev: + LiveQA-Med dev grades")
    ap.add_argument("--no-dev", action="store_true", help="leave out the LiveQA-Med dev pairs")
    ap.add_argument("--dev-first", action="store_true", help="grade the LiveQA-Med dev pairs before the mined ones")
    ap.add_argument("--fixture", default=str(FIXTURE), help="where the fixture is kept")
    a = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    cfg_path, work, fixture = Path(a.config).resolve(), Path(a.work).resolve(), Path(a.fixture).resolve()
    if a.action == "build":
        out = build(cfg_path, work, fixture, dev=not a.no_dev and DEV.is_dir(), until=a.until,
                    dev_first=a.dev_first)
    elif a.action == "export":
        out = export(cfg_path, work, fixture)
    else:
        out = {k: v for k, v in _manifest(fixture).items() if k in ("synthesize", "judge", "liveqa_dev", "teacher", "grading")}
    print(json.dumps(out, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
