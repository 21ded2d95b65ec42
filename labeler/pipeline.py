"""The pipeline: corpus -> synthesize -> mine -> judge -> distill -> label -> evaluate.

Each stage (labeler.stages) reads the previous stages' published outputs and publishes its own
(labeler.store). A stage's fingerprint chains its config section with its inputs' fingerprints, so
a rerun skips every stage whose settings and inputs are unchanged and redoes the rest.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Optional

from .config import Config
from .raycluster import init_ray
from .stages import BY_NAME, NAMES
from .models import prepare_models
from .store import RunStore, write_json_atomic

STAGES = NAMES
UPSTREAM = {s: list(BY_NAME[s].upstream) for s in NAMES}


def _h(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


class Pipeline:
    """Runs stages in order, skipping those whose published output has the current fingerprint.
    It is also the context a stage's run step gets (labeler.stages.base)."""

    def __init__(self, cfg: Config, out: str | Path, *, force: bool = False, log=None, on_write=None):
        self.cfg = cfg
        self.store = RunStore(out, on_write=on_write)
        self.force = force
        self.log = log or logging.getLogger(__name__).info
        self._fp: dict[str, str] = {}
        self._ray = False

    # -- fingerprints -------------------------------------------------------------------------
    def section(self, stage: str) -> dict:
        return BY_NAME[stage].section(self.cfg)

    def fingerprint(self, stage: str) -> str:
        if stage not in self._fp:
            s = BY_NAME[stage]
            extra = s.inputs(self.cfg) if s.inputs else None
            self._fp[stage] = _h(stage, self.cfg.seed, self.section(stage), extra,
                                 [self.fingerprint(u) for u in s.upstream])
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
            m = BY_NAME[stage].run(self)
            self.log(f"[{stage}] done: {m['rows_in']} in, {m['rows_out']} out, {m['rows_rejected']} rejected"
                     f"{_reasons(m)}, {m['wall_s']:.1f}s")
            report[stage] = {**_brief(m), "skipped": False}
        summary = {"out": str(self.store.root), "config": self.cfg.name, "wall_s": round(time.time() - t0, 2),
                   "stages": report, "k": self.cfg.evaluate.k}
        ev = self.store.manifest("evaluate")
        if ev is not None and "evaluate" in stages:
            summary["agreement"] = ev.get("metrics")
            summary["baselines"] = {k: ev[k] for k in ("minilm_cosine", "bm25") if ev.get(k)}
        write_json_atomic(summary, self.store.root / "summary.json")
        return summary

    def preflight(self, stages: list[str]) -> None:
        """Models, paths and endpoints of the stages that will run, checked before Ray starts; the
        offline models they use converted here too, in the driver, where the conversion's memory
        is not counted against an engine actor and a killed one is not retried by Ray."""
        from .preflight import check, config_problems

        check(config_problems(self.cfg, ["corpus"]))  # the corpus fingerprint reads it
        todo = [s for s in stages if self.force or not self.store.is_done(s, self.fingerprint(s))]
        check(config_problems(self.cfg, todo))
        prepare_models(model_specs(self.cfg, todo), self.log)

    # -- what a stage's run step uses ---------------------------------------------------------
    def ray_up(self):
        if not self._ray:
            init_ray(self.cfg.ray)
            self._ray = True

    def writer(self, stage: str, fresh: bool = False):
        """The stage's work folder (resumed unless `fresh`), for its schema and current fingerprint."""
        schema = BY_NAME[stage].schema
        w = self.store.writer(stage, self.fingerprint(stage), schema)
        if fresh:
            import shutil
            shutil.rmtree(w.work, ignore_errors=True)
            w = self.store.writer(stage, self.fingerprint(stage), schema)
        elif w.resumed:
            self.log(f"[{stage}] resuming: keeping the parts an earlier attempt finished")
        return w

    def publish(self, w, stage, rows_in, extra=None, one_to_one=True):
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

    def student_dir(self) -> Path:
        return self.store.path("distill") / "artifacts" / "model"


def model_specs(cfg: Config, stages) -> list[str]:
    """The model specs the given stages load (engines and the student's base model)."""
    engines = {"synthesize": cfg.synthesize.engine, "judge": cfg.judge.engine, "label": cfg.label.engine}
    specs = [e.model for s, e in engines.items() if s in stages and e is not None and e.model]
    if "distill" in stages:
        specs.append(cfg.distill.base_model_key()[1])
    return list(dict.fromkeys(specs))


def _brief(m: dict) -> dict:
    return {k: m.get(k) for k in ("rows_in", "rows_out", "rows_rejected", "rejected_by_reason", "wall_s")}


def _reasons(m: dict) -> str:
    r = m.get("rejected_by_reason") or {}
    return f" ({', '.join(f'{k}: {v}' for k, v in r.items())})" if r else ""


# Below this many held-out pairs the summary says the agreement figures are a small sample.
SMALL_SAMPLE = 200


def format_summary(summary: dict) -> str:
    """The table `labeler run` prints: rows and wall time per stage, and the held-out agreement."""
    lines = [f"\nRun {summary['out']}  ({summary['wall_s']:.0f}s)", f"{'stage':<12}{'in':>8}{'out':>8}{'rejected':>10}{'wall s':>9}"]
    for stage, s in summary["stages"].items():
        flag = "  (up to date)" if s.get("skipped") else ""
        lines.append(f"{stage:<12}{s['rows_in']:>8}{s['rows_out']:>8}{s['rows_rejected']:>10}{s['wall_s']:>9.1f}{flag}")
    ag = summary.get("agreement")
    if ag:
        # Ranking agreement first: it is what the free baselines, which have scores and no grades, share.
        keys = ["spearman", "pairwise_accuracy", f"ndcg@{summary.get('k', 10)}", "krippendorff_alpha", "accuracy"]
        lines.append(f"agreement with the teacher on {ag.get('n_labeled')} held-out pairs "
                     "(the student never saw them):")
        lines.append(f"  {'source':<16}" + "".join(f"{k:>20}" for k in keys))
        for name, m in [("student", ag), *(summary.get("baselines") or {}).items()]:
            lines.append(f"  {name:<16}" + "".join(f"{_fmt(m.get(k)):>20}" for k in keys))
        if (ag.get("n_labeled") or 0) < SMALL_SAMPLE:
            lines.append(f"  ({ag.get('n_labeled')} pairs are a small sample: a real run grades thousands of pairs with "
                         "a stronger teacher, and checks the student against human judgments: `labeler evaluate`)")
    out = str(summary["out"])
    lines.append(f"summary: {out.rstrip('/') + '/summary.json' if '://' in out else Path(out) / 'summary.json'}")
    return "\n".join(lines)


def _fmt(v):
    return "n/a" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))
