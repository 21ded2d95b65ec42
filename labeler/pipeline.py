"""The pipeline: corpus -> synthesize -> mine -> judge -> distill -> label -> evaluate.

Each stage reads the previous stages' published outputs and publishes its own (labeler.store).
A stage's fingerprint chains its config section with its inputs' fingerprints, so a rerun skips
every stage whose settings and inputs are unchanged and redoes the rest.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Optional

import pyarrow as pa
import pyarrow.compute as pc

from . import corpus as corpus_mod
from .config import Config, EngineConfig, identity
from .raycluster import init_ray
from .schema import DOCS, JUDGMENTS, LABELS, PAIRS, QUERIES
from .store import RunStore, read_parts, write_json_atomic

STAGES = ["corpus", "synthesize", "mine", "judge", "distill", "label", "evaluate"]
UPSTREAM = {
    "corpus": [], "synthesize": ["corpus"], "mine": ["synthesize", "corpus"], "judge": ["mine"],
    "distill": ["judge"], "label": ["distill", "mine"], "evaluate": ["label", "judge"],
}
TRAIN_EXAMPLES = pa.schema([("query_id", pa.string()), ("doc_id", pa.string()), ("grade", pa.int8()),
                            ("n_tokens", pa.int32())])
EMPTY = pa.schema([("key", pa.string())])


def _h(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


class Pipeline:
    def __init__(self, cfg: Config, out: str | Path, *, force: bool = False, log=None):
        self.cfg = cfg
        self.store = RunStore(out)
        self.force = force
        self.log = log or logging.getLogger(__name__).info
        self._fp: dict[str, str] = {}
        self._ray = False

    # -- fingerprints -------------------------------------------------------------------------
    def section(self, stage: str) -> dict:
        from .prompts import template_hash

        c = self.cfg
        dump = identity  # engines without their runtime knobs (config.ENGINE_RUNTIME_FIELDS)
        grade_t = lambda: template_hash(c.judge.grading.prompt)  # noqa: E731
        return {
            # The path is not part of it: the content hash is (a corpus fetched elsewhere is the same corpus).
            "corpus": lambda: {"corpus": {k: v for k, v in dump(c.corpus).items() if k != "path"}},
            "synthesize": lambda: {"synthesize": dump(c.synthesize),
                                   "templates": [template_hash(c.synthesize.prompt),
                                                 template_hash("query_kinds", ".yaml"),
                                                 template_hash(c.synthesize.few_shot, ".yaml") if c.synthesize.few_shot else None]},
            "mine": lambda: {"mine": dump(c.mine)},
            "judge": lambda: {"judge": dump(c.judge), "template": grade_t()},
            "distill": lambda: {"distill": dump(c.distill), "grading": dump(c.judge.grading), "template": grade_t()},
            "label": lambda: {"label": dump(c.label), "grading": dump(c.judge.grading), "template": grade_t()},
            "evaluate": lambda: {"evaluate": dump(c.evaluate)},
        }[stage]()

    def fingerprint(self, stage: str) -> str:
        if stage not in self._fp:
            extra = corpus_mod.fingerprint(self.cfg.resolve_path(self.cfg.corpus.path)) if stage == "corpus" else None
            self._fp[stage] = _h(stage, self.cfg.seed, self.section(stage), extra,
                                 [self.fingerprint(u) for u in UPSTREAM[stage]])
        return self._fp[stage]

    # -- running ------------------------------------------------------------------------------
    def run(self, until: Optional[str] = None, only: Optional[list[str]] = None) -> dict:
        stages = STAGES[: STAGES.index(until) + 1] if until else list(STAGES)
        if only:
            stages = [s for s in stages if s in only]
        t0 = time.time()
        report = {}
        forced = False
        self.preflight(stages)
        for stage in stages:
            fp = self.fingerprint(stage)
            forced = forced or self.force
            if self.store.is_done(stage, fp) and not forced:
                m = self.store.manifest(stage)
                self.log(f"[{stage}] up to date ({m['rows_out']} rows, fingerprint {fp}); skipped")
                report[stage] = {**_brief(m), "skipped": True}
                continue
            self.log(f"[{stage}] running (fingerprint {fp})")
            m = getattr(self, f"_{stage}")(fp)
            self.log(f"[{stage}] done: {m['rows_in']} in, {m['rows_out']} out, {m['rows_rejected']} rejected"
                     f"{_reasons(m)}, {m['wall_s']:.1f}s")
            report[stage] = {**_brief(m), "skipped": False}
        summary = {"out": str(self.store.root), "config": self.cfg.name, "wall_s": round(time.time() - t0, 2),
                   "stages": report}
        ev = self.store.manifest("evaluate")
        if ev is not None and "evaluate" in stages:
            summary["agreement"] = ev.get("metrics")
        write_json_atomic(summary, self.store.root / "summary.json")
        return summary

    def preflight(self, stages: list[str]) -> None:
        """Models, paths and endpoints of the stages that will run, checked before Ray starts."""
        from .preflight import check, config_problems

        check(config_problems(self.cfg, ["corpus"]))  # the corpus fingerprint reads it
        todo = [s for s in stages if self.force or not self.store.is_done(s, self.fingerprint(s))]
        check(config_problems(self.cfg, todo))

    def _ray_up(self):
        if not self._ray:
            init_ray(self.cfg.ray)
            self._ray = True

    def _writer(self, stage, schema, fresh=False):
        w = self.store.writer(stage, self.fingerprint(stage), schema)
        if fresh:
            import shutil
            shutil.rmtree(w.work, ignore_errors=True)
            w = self.store.writer(stage, self.fingerprint(stage), schema)
        elif w.resumed:
            self.log(f"[{stage}] resuming: keeping the parts an earlier attempt finished")
        return w

    def _publish(self, w, stage, rows_in, extra=None, one_to_one=True):
        upstream = {u: self.fingerprint(u) for u in UPSTREAM[stage]}
        return w.publish(rows_in, config=self.section(stage), upstream=upstream,
                         extra={**self._resource_hours(w), **(extra or {})}, one_to_one=one_to_one)

    def _resource_hours(self, w) -> dict:
        """Resources held x wall time: what the stage cost on this cluster, for the cost table."""
        if not self._ray:
            return {"cpu_hours": round((time.time() - w.started) / 3600, 5), "gpu_hours": 0.0}
        import ray
        res = ray.cluster_resources()
        hours = (time.time() - w.started) / 3600
        return {"cpu_hours": round(hours * res.get("CPU", 0), 5), "gpu_hours": round(hours * res.get("GPU", 0), 5)}

    # -- stages -------------------------------------------------------------------------------
    def _corpus(self, fp):
        w = self._writer("corpus", DOCS, fresh=True)  # cheap to redo, so never half-resumed
        n = corpus_mod.ingest(self.cfg.corpus, self.cfg.resolve_path(self.cfg.corpus.path), w)
        return self._publish(w, "corpus", n)

    def _synthesize(self, fp):
        from .chunking import chunk_docs
        from .mine import ensure_index
        from .runner import pending, run_actor_stage
        from .raycluster import pool_args
        from .synthesize import Deduper, RoundTrip, SynthWorker, chain, cost_usd, plan_requests, token_totals

        self._ray_up()
        c = self.cfg.synthesize
        corpus = self.store.table("corpus")
        requests = plan_requests(chunk_docs(corpus, c.chunk_tokens, c.chunk_overlap), c, self.cfg.seed)
        w = self._writer("synthesize", QUERIES)
        done = w.done_keys(lambda t: t.column("query_id").to_pylist())
        prev = w.data()
        dedupe = Deduper(set() if prev is None else set(zip(prev.column("query").to_pylist(),
                                                             prev.column("query_id").to_pylist(),
                                                             prev.column("seed_doc_id").to_pylist())),
                         near_threshold=c.near_duplicate_jaccard)
        round_trip = None
        if c.round_trip_k:
            import os
            index_dir, _ = ensure_index(self.store.root, self.fingerprint("corpus"), lambda: corpus,
                                        c.round_trip_backend, c.chunk_tokens, c.chunk_overlap,
                                        threads=os.cpu_count() or 1, log=lambda m: self.log(f"[synthesize] {m}"))
            round_trip = RoundTrip(index_dir, c.round_trip_k)
        todo = pending(requests, requests.column("query_id"), done)
        run_actor_stage(w, todo, worker=SynthWorker, ctor_kwargs={"cfg": c, "seed": self.cfg.seed},
                        pool=pool_args(c.engine), batch_size=c.engine.batch_size, total=requests.num_rows,
                        on_ok=chain(round_trip, dedupe))
        tokens = token_totals(w.data(), w.rejected())
        return self._publish(w, "synthesize", requests.num_rows,
                             extra={**tokens, "cost_usd": cost_usd(tokens, c.engine), "model": c.engine.model,
                                    "seed_docs": len(set(requests.column("seed_doc_id").to_pylist()))})

    def _mine(self, fp):
        from .mine import MineWorker, index_handle, mine_pool
        from .runner import pending, run_actor_stage

        self._ray_up()
        c = self.cfg.mine
        queries = self.store.table("synthesize")
        w = self._writer("mine", PAIRS)
        index_dir, index_s = self._mine_index()
        done = w.done_keys(lambda t: t.column("query_id").to_pylist())
        todo = pending(queries, queries.column("query_id"), done)
        run_actor_stage(w, todo, worker=MineWorker,
                        ctor_kwargs={"cfg": c, "index": index_handle(index_dir, c.index_transport), "seed": self.cfg.seed},
                        pool=mine_pool(c), batch_size=c.batch_size, total=queries.num_rows)
        self._check_every_input(w, set(queries.column("query_id").to_pylist()), "query_id")
        pairs = read_parts(w.work / "data", ["source", "split"])
        extra = {"queries": queries.num_rows, "pairs": 0 if pairs is None else pairs.num_rows,
                 "pairs_by_source": _counts(pairs, "source"), "pairs_by_split": _counts(pairs, "split"),
                 "index": str(index_dir), "index_backend": c.backend, "index_build_s": round(index_s, 2)}
        return self._publish(w, "mine", queries.num_rows, extra=extra, one_to_one=False)

    def _mine_index(self):
        """The mine stage's BM25 index folder and the seconds spent building it (0 when it exists).
        Built once per corpus content, backend and chunking; reused by later runs and stages."""
        import os

        from .mine import ensure_index

        s = self.cfg.synthesize
        return ensure_index(
            self.store.root, self.fingerprint("corpus"),
            lambda: self.store.table("corpus", columns=["doc_id", "title", "text", "author", "space", "doc_type",
                                                        "last_modified"]),
            self.cfg.mine.backend, s.chunk_tokens, s.chunk_overlap, threads=os.cpu_count() or 1,
            log=lambda m: self.log(f"[mine] {m}"))

    def _check_every_input(self, w, keys: set, key_col: str):
        got = set()
        d = read_parts(w.work / "data", [key_col])
        if d is not None:
            got.update(d.column(key_col).to_pylist())
        r = read_parts(w.work / "rejected", ["key"])
        if r is not None:
            got.update(r.column("key").to_pylist())
        lost = keys - got
        if lost:
            from .store import ReconciliationError
            raise ReconciliationError(f"stage {w.stage}: {len(lost)} inputs produced no output and no rejection, "
                                      f"e.g. {sorted(lost)[:3]}")

    def _judge(self, fp):
        from .judge import grade_pairs

        self._ray_up()
        c = self.cfg.judge
        pairs = self.store.table("mine")
        w = self._writer("judge", JUDGMENTS)
        n = grade_pairs(w, pairs, c.engine, c.grading, self.cfg.seed)
        stats = _grade_stats(w.data())
        return self._publish(w, "judge", n, extra={**stats, "usd": usd(c.engine, stats), "model": c.engine.model})

    def _distill(self, fp):
        from transformers import AutoTokenizer

        from . import models
        from .distill import train, training_examples

        self._ray_up()
        c = self.cfg.distill
        if c.kind == "cross_encoder":
            return self._distill_cross_encoder()
        j = self.store.table("judge")
        ok = pc.equal(j.column("status"), "ok")
        train_rows = j.filter(pc.and_(pc.equal(j.column("split"), "train"), ok))
        w = self._writer("distill", TRAIN_EXAMPLES, fresh=False)
        tok = AutoTokenizer.from_pretrained(models.resolve(c.base_model))
        examples, rejected = training_examples(train_rows, tok, self.cfg.judge.grading, c.max_seq_len)
        # Held-out teacher labels, scored after every epoch (over-long ones are left out of validation).
        heldout, _ = training_examples(j.filter(pc.and_(pc.equal(j.column("split"), "heldout"), ok)), tok,
                                       self.cfg.judge.grading, c.max_seq_len)
        if examples.num_rows < c.num_workers * c.micro_batch_size:
            raise ValueError(f"distill: {examples.num_rows} training examples, fewer than one batch for "
                             f"{c.num_workers} workers x micro_batch_size {c.micro_batch_size}")
        self.log(f"[distill] {examples.num_rows} examples; teacher grades {_counts_list(examples.column('grade').to_pylist())}")
        export = w.artifacts / "model"
        stats = train(c, self.cfg.judge.grading, examples, w.work / "ray_train", export, seed=self.cfg.seed,
                      heldout=heldout, k=self.cfg.evaluate.k)
        import shutil
        # The record of what the student saw; a resumed attempt rewrites it whole.
        for f in [*(w.work / "data").glob("part-*"), *(w.work / "rejected").glob("part-*")]:
            f.unlink()
        w.write(pa.table({"query_id": examples.column("query_id"), "doc_id": examples.column("doc_id"),
                          "grade": examples.column("grade"),
                          "n_tokens": pc.list_value_length(examples.column("input_ids")).cast(pa.int32())},
                         schema=TRAIN_EXAMPLES))
        w.reject(rejected)
        shutil.rmtree(w.work / "ray_train", ignore_errors=True)
        return self._publish(w, "distill", train_rows.num_rows,
                             extra={"model_dir": str(self.store.path("distill") / "artifacts" / "model"),
                                    "grade_counts": stats["grade_counts"], "balance": c.balance,
                                    "train": {k: v for k, v in stats.items() if k != "metrics"}})

    def _distill_cross_encoder(self):
        """The reranker student: LCE groups (a row per query: its positive) or pointwise pairs."""
        import shutil

        from .rerank import train_cross_encoder

        c = self.cfg.distill
        j = self.store.table("judge")
        w = self._writer("distill", TRAIN_EXAMPLES, fresh=False)
        export = w.artifacts / "model"
        titles = None
        if c.cross_encoder.title_groups:
            from .rerank import title_groups

            index_dir, _ = self._mine_index()
            mined = self.store.table("mine", columns=["doc_id", "split"])
            heldout_docs = frozenset(mined.filter(pc.equal(mined.column("split"), "heldout")).column("doc_id").to_pylist())
            titles = title_groups(index_dir, c.cross_encoder, seed=self.cfg.seed, exclude=heldout_docs)
            self.log(f"[distill] title groups: {titles.counts}")
        stats = train_cross_encoder(c, j.filter(pc.equal(j.column("split"), "train")),
                                    j.filter(pc.equal(j.column("split"), "heldout")), w.work / "ray_train", export,
                                    seed=self.cfg.seed, k=self.cfg.evaluate.k, extra_groups=titles)
        data, lce = stats.pop("train_data"), c.cross_encoder.loss == "lce"
        for f in [*(w.work / "data").glob("part-*"), *(w.work / "rejected").glob("part-*")]:
            f.unlink()
        if lce:  # the unit is a query: a group (its positive recorded) or a rejection with its reason
            rows_in = stats["groups"]["queries_in"] + (titles.counts["titles_sampled"] if titles else 0)
            out = pa.table({"query_id": data.column("query_id"),
                            "doc_id": pc.list_element(data.column("doc_ids"), 0),
                            "grade": pc.list_element(data.column("grades"), 0),
                            "n_tokens": pa.nulls(data.num_rows, pa.int32())}, schema=TRAIN_EXAMPLES)
        else:  # the unit is a graded training pair
            rows_in = data.num_rows
            out = pa.table({"query_id": data.column("query_id"), "doc_id": data.column("doc_id"),
                            "grade": data.column("grade"), "n_tokens": pa.nulls(data.num_rows, pa.int32())},
                           schema=TRAIN_EXAMPLES)
        w.write(out)
        w.reject(stats.pop("rejected"))
        shutil.rmtree(w.work / "ray_train", ignore_errors=True)
        stats.pop("metrics", None)
        grades = data.column("grades" if lce else "grade").to_pylist()
        return self._publish(w, "distill", rows_in,
                             extra={"model_dir": str(self.store.path("distill") / "artifacts" / "model"),
                                    "kind": "cross_encoder",
                                    "grade_counts": _counts_list(g for x in grades for g in (x if lce else [x])
                                                                 if g is not None),
                                    "train": stats})

    def student_dir(self) -> Path:
        return self.store.path("distill") / "artifacts" / "model"

    def _label(self, fp):
        from .judge import grade_pairs
        from .qrels import write_qrels
        from .rerank import is_cross_encoder

        self._ray_up()
        pairs = self.store.table("mine")
        heldout = pairs.filter(pc.equal(pairs.column("split"), "heldout"))
        student, teacher = self.student_dir(), self.cfg.judge.engine
        # The student runs where the teacher ran: same batch and actor resources (GPUs on a cluster).
        engine = self.cfg.label.engine or EngineConfig(
            backend="cross_encoder" if is_cross_encoder(student) else "vllm", model=str(student),
            batch_size=teacher.batch_size, max_model_len=teacher.max_model_len, num_actors=teacher.num_actors,
            cpus_per_actor=teacher.cpus_per_actor, gpus_per_actor=teacher.gpus_per_actor)
        w = self._writer("label", LABELS)
        # The student grades exactly as the teacher did (labeler.grading), on the held-out pairs.
        n = grade_pairs(w, heldout, engine, self.cfg.judge.grading, self.cfg.seed)
        extra = _grade_stats(w.data())
        if self.cfg.label.write_qrels and w.data() is not None:
            extra["qrels"] = str(self.store.path("label") / "artifacts" / "labels.qrels")
            write_qrels(w.data(), w.artifacts / "labels.qrels")
        return self._publish(w, "label", n, extra={**extra, "model": engine.model})

    def _evaluate(self, fp):
        from .evaluate import agreement, json_safe
        from .report import stage_costs_from_run, write_report

        j = self.store.table("judge")
        reference = j.filter(pc.and_(pc.equal(j.column("split"), "heldout"), pc.equal(j.column("status"), "ok")))
        reference = reference.select(["query_id", "doc_id", "grade"])
        student = self.store.table("label")
        # BM25's own score is the baseline every labeler has to beat.
        pairs = self.store.table("mine")
        bm25 = pairs.filter(pc.equal(pairs.column("split"), "heldout")).select(["query_id", "doc_id", "bm25_score"])
        bm25 = bm25.rename_columns(["query_id", "doc_id", "score"]).filter(pc.is_valid(bm25.column("bm25_score")))
        k = self.cfg.evaluate.k
        w = self._writer("evaluate", EMPTY, fresh=True)
        metrics = agreement(reference, student, k=k)
        sources = {"student": student}
        by_source = {"student": metrics}
        if bm25.num_rows:
            sources["bm25"] = bm25
            by_source["bm25"] = agreement(reference, bm25, k=k)
        write_report(w.artifacts, by_source, reference, sources,
                              stage_costs=stage_costs_from_run(self.store.root),
                              title="Student vs teacher on held-out pairs")
        return self._publish(w, "evaluate", 0, one_to_one=False,
                             extra={"metrics": json_safe(metrics), "bm25": json_safe(by_source.get("bm25")),
                                    "reference": "teacher grades of the held-out pairs",
                                    "report": str(self.store.path("evaluate") / "artifacts" / "report.html")})


def _counts(t: Optional[pa.Table], col: str) -> dict:
    return {} if t is None else _counts_list(t.column(col).to_pylist())


def _counts_list(values) -> dict:
    out: dict = {}
    for v in values:
        out[str(v)] = out.get(str(v), 0) + 1
    return dict(sorted(out.items()))


def usd(engine: EngineConfig, tokens: dict) -> float:
    """Token cost at the engine's configured prices (zero for local models unless priced)."""
    return round(tokens.get("tokens_in", 0) / 1e6 * engine.usd_per_1m_input_tokens
                 + tokens.get("tokens_out", 0) / 1e6 * engine.usd_per_1m_output_tokens, 6)


def _grade_stats(t: Optional[pa.Table]) -> dict:
    if t is None:
        return {"grade_counts": {}, "tokens_in": 0}
    t = t.filter(pc.equal(t.column("status"), "ok")) if "status" in t.column_names else t
    return {"grade_counts": _counts(t, "grade"),
            "tokens_in": int(pc.sum(t.column("prompt_tokens")).as_py() or 0),
            "tokens_out": t.num_rows,  # one token read per graded pair
            "truncated": int(pc.sum(t.column("truncated").cast(pa.int64())).as_py() or 0)}


def _brief(m: dict) -> dict:
    return {k: m.get(k) for k in ("rows_in", "rows_out", "rows_rejected", "rejected_by_reason", "wall_s")}


def _reasons(m: dict) -> str:
    r = m.get("rejected_by_reason") or {}
    return f" ({', '.join(f'{k}: {v}' for k, v in r.items())})" if r else ""
