"""Hard-negative mining at corpus scale: the Ray pipeline's mine stage against single-process
pyserini `batch_search` and single-process bm25s, on MedQuAD (16k documents) and on MedQuAD
enlarged with perturbed copies (100k), for the same 10k queries.

    .venv/bin/python bench/mine.py                       # 16k and 100k documents, 10k queries
    .venv/bin/python bench/mine.py --docs 16000 --queries 2000 --ray-backends bm25s

What is timed: `index_s` builds the index (the pipeline's once-per-corpus build; each single-process
baseline builds its own). `queries_per_s` for the pipeline is the whole mine stage (actor start,
index load, search, negative sampling with near-duplicate exclusion, pairs written with their text)
over a Ray already started (`ray_init_s` reported apart); for the baselines it is the search alone
plus opening the searcher. `peak_rss_mb` is the driver plus Ray's worker processes, sampled every
0.2 s, for the pipeline, and the process's own peak for the baselines (the JVM included).
The queries are the documents' titles (questions) and 4-word keyword queries from their text,
whose seed document is the one they came from. The last line is one JSON object.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import re
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
MEDQUAD = ROOT.parent / "shared" / "data" / "medquad" / "corpus.jsonl.gz"


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------ data
def base_docs() -> list[dict]:
    if MEDQUAD.is_file():
        with gzip.open(MEDQUAD, "rt") as fh:
            docs = {r["doc_id"]: {"doc_id": r["doc_id"], "title": r["title"], "text": r["text"], "space": r.get("source")}
                    for r in map(json.loads, fh) if len(r["text"].strip()) >= 20}
        return list(docs.values())  # MedQuAD repeats some ids: the last of each is kept
    log(f"{MEDQUAD} is absent: generating a corpus")
    rng = random.Random(0)
    vocab = [f"w{i}" for i in range(50_000)]
    weights = [1 / (i + 1) for i in range(len(vocab))]
    return [{"doc_id": f"g{i}", "title": " ".join(rng.choices(vocab, weights, k=6)),
             "text": " ".join(rng.choices(vocab, weights, k=rng.randint(80, 400)))} for i in range(16_000)]


def perturb(text: str, rng: random.Random, vocab: list[str]) -> str:
    """Sentences shuffled, ~8% of words dropped and ~4% replaced: near, not exact, copies."""
    sents = re.split(r"(?<=[.?!])\s+", text)
    rng.shuffle(sents)
    out = []
    for w in " ".join(sents).split():
        r = rng.random()
        if r < 0.08:
            continue
        out.append(rng.choice(vocab) if r < 0.12 else w)
    return " ".join(out)


def make_corpus(n: int, path: Path) -> list[dict]:
    docs = base_docs()
    rng = random.Random(n)
    vocab = list({w for d in docs[:2000] for w in d["text"].split()})
    out = docs[:n]
    j = 0
    while len(out) < n:
        d = docs[j % len(docs)]
        out.append({**d, "doc_id": f"{d['doc_id']}~{j // len(docs) + 1}", "title": perturb(d["title"], rng, vocab),
                    "text": perturb(d["text"], rng, vocab)})
        j += 1
    with open(path, "w", encoding="utf-8") as fh:
        for d in out:
            fh.write(json.dumps(d, ensure_ascii=False) + "\n")
    return out


def make_queries(docs: list[dict], n: int) -> list[dict]:
    rng = random.Random(7)
    originals = [d for d in docs if "~" not in d["doc_id"]]
    out = []
    for i in range(n):
        d = rng.choice(originals)
        if i % 2 == 0 and d["title"]:
            q = d["title"]
        else:
            words = [w for w in re.findall(r"[A-Za-z]{4,}", d["text"])]
            q = " ".join(rng.sample(words, min(4, len(words)))) or d["title"]
        out.append({"query_id": f"q{i}", "query": q, "seed_doc_id": d["doc_id"]})
    return out


# ------------------------------------------------------------------------- measurement
class RssSampler:
    """Peak of the driver's resident memory plus the private memory of Ray's busy workers.

    `everything`: every process under the driver instead (Ray's own daemons and the engine
    processes a worker starts, such as vLLM's EngineCore and Worker), still without idle Ray
    workers and without shared pages (the driver's too: the object-store pages it reads results
    from are Ray's, and they fill up to the store's size however long the run); `by_process` then
    keeps each process's own peak, so what grows with the input can be named.
    """

    def __init__(self, everything: bool = False, root: Optional[int] = None, step_s: float = 1.0):
        """`root`: the driver's pid when it is not this process (a command the benchmark started);
        `step_s`: the time series' resolution."""
        import psutil

        self.psutil, self.peak, self._stop, self.everything = psutil, 0, threading.Event(), everything
        self.root = root
        self.by_process: dict[int, int] = {}   # pid -> that process's own peak
        self.at_peak: dict[int, int] = {}      # pid -> what it held when the sum peaked
        self.names: dict[int, str] = {}        # pid -> its latest name (vLLM's start as "python")
        # pid -> {step of the run: that process's largest sample in it}: when a process peaked,
        # so that a peak that grows with the run is told from one reached at start.
        self.series: dict[int, dict[int, int]] = {}
        self.t0, self.step_s = time.monotonic(), step_s
        self.t = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _label(p) -> str:
        """`ray::MapWorker(MapBatches(EngineWorker))` for a Ray worker whatever task it runs now, else the name."""
        name = p.name()
        if name.startswith("ray::"):
            cmd = (p.cmdline() or [None])[0]
            if cmd is None:  # exiting: its full title is gone, only the kernel's 15 characters
                return None
            return cmd.rsplit(").", 1)[0] + ")" if ")." in cmd else cmd.split(".")[0]
        return name

    def _run(self):
        me = self.psutil.Process(self.root)
        self.names[me.pid] = "driver"
        while not self._stop.is_set():
            try:
                mine = me.memory_info()
                kids = me.children(recursive=True)
            except self.psutil.Error:  # the command ended
                break
            now = {me.pid: mine.rss - (getattr(mine, "shared", 0) if self.everything else 0)}
            # Only this driver's own Ray (its raylet's workers): other Ray sessions on the machine are not ours.
            for p in kids:
                try:
                    name, mem = p.name(), p.memory_info()
                    if "IDLE" in name or not (self.everything or name.startswith("ray::")):
                        continue
                    # Object-store pages mapped into every worker are shared, not theirs.
                    now[p.pid] = mem.rss - getattr(mem, "shared", 0)
                    label = self._label(p) if self.everything else None
                    if label:  # none while it exits: it keeps the name it ran under
                        self.names[p.pid] = label
                except self.psutil.Error:
                    pass
            total = sum(now.values())
            if total > self.peak:
                self.peak, self.at_peak = total, now
            step = int((time.monotonic() - self.t0) / self.step_s)
            for pid, v in now.items():
                self.by_process[pid] = max(self.by_process.get(pid, 0), v)
                at = self.series.setdefault(pid, {})
                at[step] = max(at.get(step, 0), v)
            self._stop.wait(0.2)

    def per_process(self, table: dict, min_bytes: int = 50 << 20) -> dict:
        """MB per process ("name[pid]", the driver as "driver"), largest first."""
        named = {}
        for pid, v in table.items():
            role = self.names.get(pid, "?")
            named[role if role == "driver" else f"{role}[{pid}]"] = v
        return {k: round(v / 2**20, 1) for k, v in sorted(named.items(), key=lambda kv: -kv[1]) if v >= min_bytes}

    def by_role(self, table: dict) -> dict:
        """MB per kind of process (the name without its pid; the largest of a kind), so that two
        runs' processes can be compared."""
        out: dict = {}
        for pid, v in table.items():
            role = self.names.get(pid, "?")
            out[role] = max(out.get(role, 0.0), round(v / 2**20, 1))
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))

    def by_tenth(self, min_bytes: int = 50 << 20) -> dict:
        """MB per kind of process (as `by_role`) per tenth of the sampled time: its largest sample
        in each tenth (None where none of its kind ran), for kinds that reached `min_bytes`."""
        end = 1 + max((s for at in self.series.values() for s in at), default=0)
        out: dict = {}
        for pid, at in self.series.items():
            role = self.names.get(pid, "?")
            if self.by_process.get(pid, 0) < min_bytes:
                continue
            row = out.setdefault(role, [None] * 10)
            for step, v in at.items():
                i = min(9, step * 10 // end)
                row[i] = max(row[i] or 0.0, round(v / 2**20, 1))
        return out

    def __enter__(self):
        self.t.start()
        return self

    def __exit__(self, *a):
        self._stop.set()
        self.t.join()


def single(backend: str, corpus: Path, queries: Path, work: Path, depth: int, threads: int) -> dict:
    """One baseline in a fresh process, so that its peak RSS is its own."""
    cmd = [sys.executable, __file__, "--single", backend, "--corpus", str(corpus), "--query-file", str(queries),
           "--work", str(work), "--depth", str(depth), "--threads", str(threads)]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{backend} baseline failed: {p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def run_single(args) -> None:
    import pyarrow as pa

    from labeler.bm25 import build_index, open_index

    docs = [json.loads(l) for l in open(args.corpus, encoding="utf-8")]
    table = pa.table({"doc_id": [d["doc_id"] for d in docs], "title": [d["title"] for d in docs],
                      "text": [d["text"] for d in docs], "parent_id": [d["doc_id"] for d in docs]})
    qs = [json.loads(l) for l in open(args.query_file, encoding="utf-8")]
    folder = Path(args.work) / f"single-{args.single}"
    t = time.time()
    build_index(table, folder, args.single, threads=args.threads)
    index_s = time.time() - t
    t = time.time()
    ix = open_index(folder, threads=args.threads)
    hits = ix.search([q["query"] for q in qs], args.depth)
    search_s = time.time() - t
    ids = table.column("doc_id").to_pylist()
    found = sum(any(ids[r] == q["seed_doc_id"] for r, _ in h) for q, h in zip(qs, hits))
    print(json.dumps({"docs": len(docs), "queries": len(qs), "index_s": round(index_s, 2),
                      "search_s": round(search_s, 2), "queries_per_s": round(len(qs) / search_s, 1),
                      "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                      "threads": args.threads, "seed_in_top_depth": round(found / len(qs), 4)}))


def run_pipeline(corpus: Path, queries: list[dict], work: Path, backend: str, depth: int, workers) -> dict:
    import pyarrow as pa

    from labeler.config import Config
    from labeler.mining import ensure_index
    from labeler.pipeline import Pipeline
    from labeler.schema import QUERIES

    cfg = Config(name="bench-mine", ray={"num_cpus": os.cpu_count()},
                 corpus={"path": str(corpus), "max_chars": 10_000_000},
                 synthesize={"engine": {"model": "none"}}, judge={"engine": {"model": "none"}},
                 mine={"backend": backend, "depth": depth, "negatives_per_query": 3, "num_workers": workers,
                       "batch_size": 500})
    pipe = Pipeline(cfg, work / f"run-{backend}", log=lambda m: log(m))
    pipe.run(only=["corpus"])
    n_docs = pipe.store.manifest("corpus")["rows_out"]
    rows = [{**q, "kind": "bench", "model": "none", "prompt_tokens": 0, "completion_tokens": 0} for q in queries]
    w = pipe.store.writer("synthesize", pipe.fingerprint("synthesize"), QUERIES)
    w.write(pa.Table.from_pylist(rows, schema=QUERIES))
    w.publish(len(rows), config={}, upstream={})
    t = time.time()
    pipe._ray_up()
    ray_init_s = time.time() - t
    with RssSampler() as rss:
        # The same call the stage makes; the stage then finds the index built and reuses it.
        _, index_s = ensure_index(pipe.store.root, pipe.fingerprint("corpus"), lambda: pipe.store.table("corpus"),
                                  backend, None, 0, threads=os.cpu_count() or 1)
        t = time.time()
        pipe.run(only=["mine"])
        mine_s = time.time() - t
    m = pipe.store.manifest("mine")
    import ray
    ray.shutdown()
    pairs = pipe.store.table("mine", columns=["source", "bm25_rank"])
    seeds = pairs.filter(pa.compute.equal(pairs.column("source"), "seed"))
    return {"backend": backend, "docs": n_docs, "queries": len(queries), "index_s": round(index_s, 2),
            "mine_s": round(mine_s, 2), "queries_per_s": round(len(queries) / mine_s, 1),
            "peak_rss_mb": round(rss.peak / 2**20, 1), "ray_init_s": round(ray_init_s, 2),
            "pairs": m["pairs"], "pairs_by_source": m["pairs_by_source"],
            "seed_in_top_depth": round(1 - seeds.column("bm25_rank").null_count / max(1, seeds.num_rows), 4),
            "workers": workers or "auto"}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--docs", default="16000,100000", help="corpus sizes, comma-separated")
    ap.add_argument("--queries", type=int, default=10_000)
    ap.add_argument("--depth", type=int, default=30)
    ap.add_argument("--ray-backends", default="bm25s,pyserini")
    ap.add_argument("--workers", type=int, default=None, help="mining actors; default sized from the CPUs")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="threads of the single-process baselines")
    ap.add_argument("--work", default=None)
    ap.add_argument("--single", help=argparse.SUPPRESS)
    ap.add_argument("--corpus", help=argparse.SUPPRESS)
    ap.add_argument("--query-file", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.single:
        return run_single(args)

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("LABELER_CACHE", str(Path(tempfile.gettempdir()) / "labeler-bench-cache"))
    base = Path(args.work or tempfile.mkdtemp(prefix="bench-mine-"))
    runs = []
    for n in [int(x) for x in args.docs.split(",")]:
        work = base / f"docs{n}"
        work.mkdir(parents=True, exist_ok=True)
        corpus = work / "corpus.jsonl"
        docs = make_corpus(n, corpus)
        queries = make_queries(docs, args.queries)
        qfile = work / "queries.jsonl"
        qfile.write_text("".join(json.dumps(q) + "\n" for q in queries))
        log(f"{len(docs):,} documents, {len(queries):,} queries in {work}")
        run = {"docs": len(docs), "queries": len(queries), "cpus": os.cpu_count()}
        for be in ["pyserini", "bm25s"]:
            log(f"single-process {be}")
            run[f"single_{be}"] = single(be, corpus, qfile, work, args.depth, args.threads)
            log(json.dumps(run[f"single_{be}"]))
        for be in args.ray_backends.split(","):
            log(f"Ray pipeline, {be}")
            run[f"ray_{be}"] = run_pipeline(corpus, queries, work, be, args.depth, args.workers)
            log(json.dumps(run[f"ray_{be}"]))
        main_be = args.ray_backends.split(",")[0]
        best = max((run[f"ray_{be}"] for be in args.ray_backends.split(",")), key=lambda r: r["queries_per_s"])
        run.update({k: run[f"ray_{main_be}"][k] for k in ("index_s", "queries_per_s", "peak_rss_mb")})
        run["pipeline_backend"] = main_be
        run["ratios"] = {
            f"ray_{be}_vs_single_{s}_qps": round(run[f"ray_{be}"]["queries_per_s"] / run[f"single_{s}"]["queries_per_s"], 2)
            for be in args.ray_backends.split(",") for s in ("pyserini", "bm25s")}
        run["ratios"]["best_ray_vs_single_pyserini_qps"] = round(
            best["queries_per_s"] / run["single_pyserini"]["queries_per_s"], 2)
        run["ratios"]["index_s_pyserini_vs_bm25s"] = round(
            run["single_pyserini"]["index_s"] / max(run["single_bm25s"]["index_s"], 1e-9), 2)
        runs.append(run)
    out = {**{k: runs[-1][k] for k in ("docs", "queries", "index_s", "queries_per_s", "peak_rss_mb")}, "runs": runs}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
