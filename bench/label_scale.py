"""Offline labeling at scale: the project's label stage (`labeler label ... --pairs`, Ray Data +
vLLM actors) against, on the same prompts, in the same run:

- `vllm_direct`: vLLM `LLM.generate` called directly in one process (the ceiling; the pipeline's
  ratio to it is its overhead). Prompts are built before the clock starts; timed: generate plus
  reading the grade from the logprobs. `pairs_per_s` excludes the engine start, `_incl_start` not.
- `vllm_direct_token_ids`: the same with the prompts tokenized before the clock and given as
  token ids, logprobs not detokenized: the engine alone, what the pipeline's engine actor does.
- `ray_data_llm`: Ray Data's own vLLM processor (`ray.data.llm`, what users would otherwise pick),
  reading the prompts from Parquet and writing its outputs to Parquet, with Ray and engine start.
- `hf_transformers`: the naive way, `generate` per batch of 32, on a sample (`--hf-sample`).
- `encoder_direct` (when `--model` is a cross- or bi-encoder export of `labeler distill`, in
  place of the vLLM peers): the student's own engine in one process without Ray, on the same pairs.
- `teacher`: the embedded teacher (Qwen2.5-Coder-1.5B) through direct vLLM on a sample
  (`--teacher-sample`), with its own chat template: `student_to_teacher` is the direct-vLLM
  student's pairs/s over the teacher's (the paper reports 17x).
- `teacher_pipeline` (opt-in, `--only ...,teacher_pipeline`): the same teacher on the same pairs
  through the grading stage (`labeler label --model <teacher>`: the stream `labeler judge` runs),
  with configs/medquad.yaml's engine settings; `judge_vs_direct_teacher_steady` is its steady rate
  (with fewer than 5 batches, its whole command's rate, start included) over the direct teacher's,
  `judge_vs_direct_teacher_busy` its rate while its engine grades (defined with few batches too).
- `--compare-pairs N`: the pipeline on N pairs as well, first, in the same run; `scale` gives the
  large run's steady rate, its engine's rate while busy (defined with few batches too) and each
  kind of process's peak memory over the small run's.

The pipeline's `wall_s` is the whole command (Ray start, engine start, the keys pre-pass, the
export); `steady_pairs_per_s` is the engines' own count of pairs graded over the middle 80% of
the run (the label manifest's `engine`), with `engine_busy_s` the seconds they spent grading, and
`engine_by_tenth` per tenth of the pairs the run's rate and the engines' rate while busy (the first
falling alone: the engines waited for input; both: the engines or the machine slowed). `peak_rss_mb`
is, for the pipeline, the peak sum over the driver (the `labeler label` process, one per size)
and every process under it (Ray's daemons, its busy workers and the vLLM processes they start;
shared pages not counted; bench/mine.py's RssSampler), with each process's own peak in
`peak_rss_by_process_mb`, and each kind's largest sample per tenth of the run in
`peak_rss_by_tenth_mb` (with `--compare-pairs`, `scale.rss_late_over_early_by_role`: the large
run's second-half peak over its first, to tell memory that grows with the pairs from a peak at
start or at the export); for the single-process baselines, the process's and its largest
child's peak (ru_maxrss).

    .venv/bin/python bench/label_scale.py --pairs 1000000 --compare-pairs 100000 --baseline-pairs 100000
    .venv/bin/python bench/label_scale.py --pairs 10000 --model out/demo/distill/artifacts/model
    .venv/bin/python bench/label_scale.py --pairs 100000 --only pipeline         # memory vs size
    .venv/bin/python bench/label_scale.py --pairs 20000 --model out/ce/model       # an encoder student

The engine runs as the stage runs it on a CPU: in the engine actor's process, with every core
(`cpu_threads: all`: one engine on the machine), and direct vLLM likewise in one process with
every core; `--engine-processes` puts both in vLLM's EngineCore and Worker processes instead.

Pairs are synthetic: short intranet-like titles, 40-80-word texts and 2-6-word queries, ten
documents per query and twenty pairs per document. The last line is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from mine import RssSampler  # noqa: E402  (driver + Ray workers, shared with the mining benchmark)
from labeler.hardware import machine_info, resolve_dtype  # noqa: E402

WORDS = ("vpn access policy expense report travel laptop onboarding payroll benefits security password reset "
         "wiki team project roadmap release incident outage postmortem budget forecast quarterly review hiring "
         "interview contract vendor invoice approval workflow ticket support escalation customer account billing "
         "migration database backup restore cluster deploy pipeline build test staging production monitoring alert "
         "dashboard metrics latency storage network firewall certificate renewal compliance audit training holiday "
         "leave parental remote office desk booking meeting room calendar sync email mobile device enrollment sso "
         "login mfa token api gateway service owner runbook on-call rotation handbook guideline template faq "
         "announcement townhall strategy okr goal feedback promotion salary equity relocation visa insurance "
         "expense card travel booking hotel flight reimbursement receipt procurement purchase order laptop refresh").split()
MODEL_KW = dict(max_model_len=512, max_num_seqs=256, batch_size=1024)
# Every peer runs in the dtype the stages pick on this machine (labeler.hardware): bf16 only where
# the CPU has native bf16, so figures from AVX2 and AVX-512 machines compare like with like.
DTYPE = resolve_dtype("auto", what="bench")
MAX_DOC_TOKENS = 128
# What --only can name.
PARTS = frozenset({"pipeline", "vllm_direct", "ray_data_llm", "hf_transformers", "teacher", "teacher_pipeline"})
# The teacher in the stage as configs/medquad.yaml runs it (`--only ...,teacher_pipeline`).
TEACHER_KW = dict(max_model_len=1024, max_num_seqs=32, batch_size=16, cpu_threads="all")


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def peak_rss_self_mb() -> float:
    """This process's peak plus its largest child's (Linux ru_maxrss is in KiB)."""
    return round((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                  + resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024, 1)


# -- inputs -----------------------------------------------------------------------------------

def make_pairs(n: int, folder: Path, seed: int = 0, rows_per_file: int = 100_000) -> None:
    """n pairs as Parquet files; (query_id, doc_id) unique; built column-wise so 1M takes seconds.

    The same input at every size: queries come in windows of 100 (1,000 pairs), each with its
    own 50 documents, so a document recurs 20 times within 1,000 pairs whatever n is. With one
    pool of n/20 documents (before), a document recurred every n/20 queries: within reach of
    vLLM's prefix cache at 100k pairs (76% of prompt tokens hit) and out of it at 1M (52%, the
    template alone), which made the 1M run's steady rate look a third lower (README.md).
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    layout = {"n": n, "seed": seed, "layout": "windows-100q-50d"}
    if (folder / "_done").is_file() and json.loads((folder / "_done").read_text()) == layout:
        return
    folder.mkdir(parents=True, exist_ok=True)
    for f in folder.glob("*.parquet"):
        f.unlink()
    rng = np.random.default_rng(seed)
    words = np.array(WORDS)
    n_queries = max(1, -(-n // 10))
    wq = min(100, n_queries)           # queries per window
    wd = max(10, wq // 2)              # documents per window: each in 20 pairs
    n_docs = -(-n_queries // wq) * wd
    sent = lambda k: " ".join(words[rng.integers(0, len(words), k)])  # noqa: E731
    docs = pa.table({"doc_id": [f"doc-{i:07d}" for i in range(n_docs)],
                     "title": [sent(int(rng.integers(3, 7))).title() for _ in range(n_docs)],
                     "text": [sent(int(rng.integers(40, 81))).capitalize() + "." for _ in range(n_docs)]})
    queries = [sent(int(rng.integers(2, 7))) for _ in range(n_queries)]
    for start in range(0, n, rows_per_file):
        i = np.arange(start, min(n, start + rows_per_file))
        q, k = i // 10, i % 10
        # ten distinct documents of the query's window
        d = (q // wq) * wd + ((q % wq) * 13 + k * (wd // 10)) % wd
        t = docs.take(pa.array(d))
        t = t.append_column("query_id", pa.array([f"q-{x:07d}" for x in q]))
        t = t.append_column("query", pa.array([queries[x] for x in q]))
        pq.write_table(t.select(["query_id", "query", "doc_id", "title", "text"]), folder / f"pairs-{start // rows_per_file:04d}.parquet")
    (folder / "_done").write_text(json.dumps(layout))


def bench_model(args) -> str:
    from labeler.models import cache_dir, make_random_model, resolve

    if args.model:
        return resolve(args.model)
    shape = f"h{args.hidden}-l{args.layers}-a{args.hidden // 64}"
    return str(make_random_model(cache_dir() / "bench-models" / f"random-llama-{shape}", hidden=args.hidden,
                                 layers=args.layers, heads=args.hidden // 64, intermediate=args.hidden * 4))


def build_prompts(model: str, pairs: Path, dest: Path, limit: int) -> int:
    """The grading prompts of the first `limit` pairs as text (labeler.grading.build_prompt, what
    the pipeline tokenizes), in Parquet, built by two processes."""
    from concurrent.futures import ProcessPoolExecutor

    dest.mkdir(parents=True, exist_ok=True)
    jobs, left = [], limit
    for f in sorted(pairs.glob("*.parquet")):
        if left <= 0:
            break
        import pyarrow.parquet as pq
        rows = min(left, pq.ParquetFile(f).metadata.num_rows)
        jobs.append((model, str(f), str(dest / f.name), rows))
        left -= rows
    with ProcessPoolExecutor(2) as ex:
        return sum(ex.map(_prompts_file, *zip(*jobs)))


def _prompts_file(model: str, src: str, dest: str, rows: int) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from transformers import AutoTokenizer

    from labeler.grading import build_prompt
    from labeler.prompts import load_template

    tok, template = AutoTokenizer.from_pretrained(model), load_template("grade_plain")
    t = pq.read_table(src).slice(0, rows)
    prompts = [build_prompt(tok, template, r, MAX_DOC_TOKENS, as_text=True).prompt for r in t.to_pylist()]
    pq.write_table(t.select(["query_id", "doc_id"]).append_column("prompt", pa.array(prompts)), dest)
    return t.num_rows


def prompt_files(folder: Path, limit: int):
    """Prompt texts of the first `limit` pairs, a file at a time."""
    import pyarrow.parquet as pq

    for f in sorted(folder.glob("*.parquet")):
        if limit <= 0:
            return
        t = pq.read_table(f, columns=["prompt"]).slice(0, limit)
        limit -= t.num_rows
        yield t.column("prompt").to_pylist()


# -- the pipeline -----------------------------------------------------------------------------

def run_pipeline(model: str, pairs: Path, work: Path, n: int, engine_kw: dict = MODEL_KW) -> dict:
    """`labeler label` as a user runs it: its own process (the driver), sampled with every process under it."""
    work.mkdir(parents=True, exist_ok=True)
    cfg = work / "bench.yaml"
    text = (ROOT / "configs" / "tiny.yaml").read_text().replace("TINY", model)
    cfg.write_text(text.replace("data/demo/docs.jsonl", str(ROOT / "data" / "demo" / "docs.jsonl")))
    out = work / "pipeline"
    sets = [f"judge.engine.{k}={v}" for k, v in engine_kw.items()] + [f"judge.grading.max_doc_tokens={MAX_DOC_TOKENS}"]
    # --restart: a killed earlier run's parts are never resumed into a measurement.
    cmd = ["label", str(cfg), "--model", model, "--pairs", str(pairs), "--out", str(out), "--force", "--restart"]
    for s in sets:
        cmd += ["--set", s]
    log("pipeline: labeler " + " ".join(cmd))
    t0 = time.time()
    # stdout (the command's JSON line) is not needed: the manifest holds the counts.
    p = subprocess.Popen([sys.executable, "-m", "labeler.cli", *cmd], cwd=ROOT, stdout=subprocess.DEVNULL)
    with RssSampler(everything=True, root=p.pid) as rss:
        rc = p.wait()
        wall = time.time() - t0
    if rc != 0:
        raise RuntimeError(f"labeler label exited {rc}")
    m = json.loads((out / "_manifest.json").read_text())
    # The engines' own counters (the manifest's "engine"): pairs graded over the middle 80% of the run.
    parts = sorted((out / ".labeler" / "label" / "data").glob("part-*.parquet"))
    steady = m.get("engine", {}).get("steady_pairs_per_s")
    if m["rows_in"] != n or m["rows_out"] + m["rows_rejected"] != n:
        raise RuntimeError(f"pipeline accounted for {m['rows_out']} + {m['rows_rejected']} of {n} pairs")
    return {"pairs": n, "wall_s": round(wall, 2), "pairs_per_s": round(n / wall, 1),
            "steady_pairs_per_s": steady, "engine_busy_s": m.get("engine", {}).get("engine_busy_s"), "stage_wall_s": m["wall_s"],
            "engine_by_tenth": m.get("engine", {}).get("by_tenth"),  # did the run slow, and was it the engine
            "rows_out": m["rows_out"], "rows_rejected": m["rows_rejected"], "parts": len(parts),
            "peak_rss_mb": round(rss.peak / 2**20, 1),
            "rss_at_peak_mb": rss.per_process(rss.at_peak), "peak_rss_by_process_mb": rss.per_process(rss.by_process),
            "peak_rss_by_role_mb": rss.by_role(rss.by_process),
            "peak_rss_by_tenth_mb": rss.by_tenth(),  # when each kind of process peaked
            "command": "labeler " + " ".join(cmd)}


def scale_figures(small: dict, big: dict) -> dict:
    """The large run against the small one: steady rates, time per pair, and each kind of process's
    peak memory (Ray's and vLLM's processes and the driver; compilers that vLLM runs when its kernel
    cache is cold are left out)."""
    def kind(k: str):
        """Ray's and vLLM's processes and the driver by kind (None for others): ReadPairs->SplitBlocks(2)
        and (3) are the same read tasks."""
        return re.sub(r"\(\d+\)$", "", k) if k == "driver" or k.startswith(("ray::", "VLLM::")) else None

    def roles(p):
        out: dict = {}
        for k, v in p["peak_rss_by_role_mb"].items():
            if kind(k) and v >= 50:
                out[kind(k)] = max(out.get(kind(k), 0.0), v)
        return out

    # Within the large run: each kind's largest sample in its second half over its first, so that
    # a peak that grows with the pairs is told from one that differs between runs.
    within: dict = {}
    for k, tenths in (big.get("peak_rss_by_tenth_mb") or {}).items():
        early, late = [v for v in tenths[:5] if v], [v for v in tenths[5:] if v]
        if kind(k) and early and late:
            within[kind(k)] = round(max(late) / max(early), 3)

    rs, rb = roles(small), roles(big)
    # A process seen only as it exited keeps the kernel's 15 characters of its name ("ray::_StatsActo").
    full = set(rs) | set(rb)
    whole = lambda k: next((f for f in sorted(full) if len(k) == 15 and f != k and f.startswith(k)), k)  # noqa: E731
    rs, rb = ({whole(k): v for k, v in r.items()} for r in (rs, rb))
    rss = {k: round(rb[k] / rs[k], 3) for k in rs if k in rb}
    steady = (small["steady_pairs_per_s"], big["steady_pairs_per_s"])
    busy = [p["pairs"] / p["engine_busy_s"] if p.get("engine_busy_s") else None for p in (small, big)]
    return {"pairs": [small["pairs"], big["pairs"]],
            "steady_ratio": round(steady[1] / steady[0], 3) if all(steady) else None,
            "busy_rate_ratio": round(busy[1] / busy[0], 3) if all(busy) else None,
            "wall_per_pair_ratio": round((big["wall_s"] / big["pairs"]) / (small["wall_s"] / small["pairs"]), 3),
            "peak_rss_ratio_by_role": rss, "peak_rss_ratio_max": max(rss.values()) if rss else None,
            "rss_late_over_early_by_role": within}


# -- baselines, each in a fresh process -------------------------------------------------------

def single(kind: str, env: dict | None = None, **kw) -> dict:
    """One baseline in a fresh process; `env`: its malloc, as the stage gives its vLLM engines."""
    cmd = [sys.executable, __file__, "--single", kind] + [f"--{k.replace('_', '-')}={v}" for k, v in kw.items()]
    log(f"{kind}: " + " ".join(f"{k}={v}" for k, v in (env or {}).items()) + " " + " ".join(cmd[2:]))
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env={**os.environ, **(env or {})})
    if p.returncode != 0:
        raise RuntimeError(f"{kind} failed: {p.stderr[-3000:]}")
    # The last JSON line: vLLM may log to stdout while it shuts down.
    return next(json.loads(x) for x in reversed(p.stdout.strip().splitlines()) if x.startswith("{"))


def _grade(top: dict) -> int:
    from labeler.engines.base import grade_from_top_logprobs

    probs, _ = grade_from_top_logprobs(top)
    return -1 if probs is None else max(range(4), key=lambda g: probs[g])


def run_encoder(a) -> dict:
    """An encoder student's own ceiling: its engine (the same class the label stage's actors hold)
    in this one process, fed the pairs in batches of the pipeline's size, with no Ray."""
    import pyarrow.parquet as pq

    from labeler.config import EngineConfig
    from labeler.engines import make_engine

    t0 = time.time()
    eng = make_engine(EngineConfig(model=a.model, batch_size=MODEL_KW["batch_size"]))
    start = time.time() - t0
    rows = []
    for f in sorted(Path(a.pairs_dir).glob("*.parquet")):
        rows += pq.read_table(f).to_pylist()
        if len(rows) >= a.limit:
            break
    rows = [{**r, "doc_meta": None} for r in rows[:a.limit]]
    t = time.time()
    graded = 0
    for i in range(0, len(rows), MODEL_KW["batch_size"]):
        results, _ = eng.grade_pairs(rows[i:i + MODEL_KW["batch_size"]])
        graded += sum(r.error is None for r in results)
    secs = time.time() - t
    return {"pairs": len(rows), "graded": graded, "s": round(secs, 2), "pairs_per_s": round(len(rows) / secs, 1),
            "start_s": round(start, 1), "pairs_per_s_incl_start": round(len(rows) / (secs + start), 1),
            "peak_rss_mb": round(peak_rss_self_mb(), 1)}


def step_kw(a) -> dict:
    """--max-num-batched-tokens for a vLLM peer, as the label stage's engine applies it (whole prompts)."""
    n = getattr(a, "max_num_batched_tokens", None)
    return {"max_num_batched_tokens": n, "enable_chunked_prefill": False} if n else {}


def run_vllm(a) -> dict:
    """Direct vLLM: LLM.generate on the prompt files (or prompts built here for --pairs-dir)."""
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    from vllm import LLM, SamplingParams

    t0 = time.time()
    one = {"distributed_executor_backend": "uni"} if os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING") == "0" else {}
    llm = LLM(model=a.model, dtype=DTYPE, max_model_len=a.max_model_len, max_num_seqs=MODEL_KW["max_num_seqs"],
              enforce_eager=True, enable_prefix_caching=True, seed=0, **step_kw(a), **one)
    start = time.time() - t0
    if a.pairs_dir:  # the teacher: its own chat template and tokenizer
        import pyarrow.parquet as pq
        from labeler.grading import build_prompt
        from labeler.prompts import load_template
        tok, template = llm.get_tokenizer(), load_template("grade_plain")
        rows = pq.read_table(sorted(Path(a.pairs_dir).glob("*.parquet"))[0]).slice(0, a.limit).to_pylist()
        chunks = [[build_prompt(tok, template, r, MAX_DOC_TOKENS, as_text=True).prompt for r in rows]]
    else:
        chunks = prompt_files(Path(a.prompts), a.limit)
    params = SamplingParams(max_tokens=1, temperature=0.0, logprobs=20, detokenize=not a.token_ids)
    n, gen, grades = 0, 0.0, {}
    tok = llm.get_tokenizer()
    digits = {i: t.strip() for i, t in enumerate(tok.batch_decode([[i] for i in range(len(tok))])) if t.strip() in ("0", "1", "2", "3")}
    for prompts in chunks:
        if a.token_ids:  # the engine's own ceiling: tokenized before the clock, ids in, no detokenizing
            from vllm.inputs import TokensPrompt
            prompts = [TokensPrompt(prompt_token_ids=x) for x in tok(prompts, add_special_tokens=False)["input_ids"]]
        t = time.time()
        for o in llm.generate(prompts, params, use_tqdm=False):
            lp = o.outputs[0].logprobs[0]
            if a.token_ids:  # ' 2' and '2' summed per grade, as the pipeline does
                top: dict = {}
                for i, x in lp.items():
                    if i in digits:
                        top[digits[i]] = top.get(digits[i], 0.0) + math.exp(x.logprob)
                g = _grade({k: math.log(v) for k, v in top.items()})
            else:
                g = _grade({x.decoded_token: x.logprob for x in lp.values()})
            grades[g] = grades.get(g, 0) + 1
        gen += time.time() - t
        n += len(prompts)
    return {"pairs": n, "engine_start_s": round(start, 2), "wall_s": round(gen, 2),
            "pairs_per_s": round(n / gen, 1), "pairs_per_s_incl_start": round(n / (gen + start), 1),
            "grades": grades, "peak_rss_mb": peak_rss_self_mb()}


def run_ray_data_llm(a) -> dict:
    import ray
    from ray.data.llm import build_processor, vLLMEngineProcessorConfig

    from labeler.engines.base import grade_from_top_logprobs

    t0 = time.time()
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=500_000_000,
             runtime_env={"env_vars": {"VLLM_CPU_KVCACHE_SPACE": "1", "TOKENIZERS_PARALLELISM": "false"}})
    files = sorted(str(p) for p in Path(a.prompts).glob("*.parquet"))
    ds = ray.data.read_parquet(files).limit(a.limit)
    cfg = vLLMEngineProcessorConfig(
        model_source=a.model, batch_size=MODEL_KW["batch_size"], concurrency=1, log_engine_metrics=False,
        placement_group_config={"bundles": [{"CPU": 1}], "strategy": "PACK"},
        chat_template_stage=False, tokenize_stage=False, detokenize_stage=False,
        engine_kwargs={"dtype": DTYPE, "max_model_len": a.max_model_len, "max_num_seqs": MODEL_KW["max_num_seqs"],
                       "enforce_eager": True, "enable_prefix_caching": True, **step_kw(a)})

    def post(row):
        top = {d.get("decoded_token"): d["logprob"] for d in (row.get("logprobs") or [{}])[0].values()}
        probs, _ = grade_from_top_logprobs({k: v for k, v in top.items() if k is not None})
        return {"query_id": row["query_id"], "doc_id": row["doc_id"],
                "grade": -1 if probs is None else max(range(4), key=lambda g: probs[g]),
                "error": row.get("__inference_error__")}

    proc = build_processor(cfg, preprocess=lambda r: {**r, "sampling_params": {"max_tokens": 1, "temperature": 0.0, "logprobs": 20}},
                           postprocess=post)
    out = Path(a.out)
    proc(ds).write_parquet(str(out))
    wall = time.time() - t0
    import pyarrow.dataset as pds
    n = pds.dataset(str(out), format="parquet").count_rows()
    ray.shutdown()
    return {"pairs": n, "wall_s": round(wall, 2), "pairs_per_s": round(n / wall, 1), "peak_rss_mb": peak_rss_self_mb()}


def run_hf(a) -> dict:
    """The naive way: transformers `generate` (one new token, scores) per batch of 32."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(2)
    tok = AutoTokenizer.from_pretrained(a.model)
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    t0 = time.time()
    model = AutoModelForCausalLM.from_pretrained(a.model, torch_dtype=getattr(torch, DTYPE)).eval()
    start = time.time() - t0
    prompts = [p for chunk in prompt_files(Path(a.prompts), a.limit) for p in chunk]
    t = time.time()
    grades: dict = {}
    with torch.no_grad():
        for i in range(0, len(prompts), 32):
            enc = tok(prompts[i:i + 32], return_tensors="pt", padding=True, add_special_tokens=False)
            out = model.generate(**enc, max_new_tokens=1, do_sample=False, output_scores=True,
                                 return_dict_in_generate=True, pad_token_id=tok.pad_token_id)
            logp = torch.log_softmax(out.scores[0].float(), -1)
            vals, ids = logp.topk(20, -1)
            for v, ix in zip(vals.tolist(), ids.tolist()):
                g = _grade({tok.decode([j]): x for j, x in zip(ix, v)})
                grades[g] = grades.get(g, 0) + 1
    gen = time.time() - t
    return {"pairs": len(prompts), "load_s": round(start, 2), "wall_s": round(gen, 2),
            "pairs_per_s": round(len(prompts) / gen, 2), "grades": grades, "peak_rss_mb": peak_rss_self_mb()}


# -- main -------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=20_000, help="pairs to label")
    ap.add_argument("--model", help="model folder or offline:<name> (default: a random-weight Llama, head_dim 64)")
    ap.add_argument("--hidden", type=int, default=128, help="random model: hidden size (heads = hidden / 64)")
    ap.add_argument("--layers", type=int, default=2, help="random model: layers")
    ap.add_argument("--compare-pairs", type=int, help="also run the pipeline on this many pairs first, in the same run, "
                    "and report the steady-rate and per-process memory ratios (`scale`)")
    ap.add_argument("--engine-processes", action="store_true",
                    help="the pipeline's engine with engine.in_process false (vLLM's EngineCore and Worker "
                    "processes), and direct vLLM likewise; default: both in one process, the stage's default on a CPU")
    ap.add_argument("--cpu-threads", help="the pipeline engine's engine.cpu_threads (default: all in process, as "
                    "direct vLLM in one process uses every core; vLLM's own binding with --engine-processes)")
    ap.add_argument("--baseline-pairs", type=int, help="pairs for vllm_direct and ray_data_llm (default: all)")
    ap.add_argument("--hf-sample", type=int, default=1000)
    ap.add_argument("--teacher", default="offline:qwen2.5-coder-1.5b-instruct")
    ap.add_argument("--teacher-sample", type=int, default=24)
    ap.add_argument("--max-num-batched-tokens", type=int, help="tokens per vLLM step for every vLLM peer (default: "
                    "the engine's own, 2048 on a CPU, in the pipeline; vLLM's, 4096 on a CPU, in the others)")
    ap.add_argument("--malloc", choices=["auto", "jemalloc", "system"], default="auto",
                    help="engine.malloc for the pipeline, and the same allocator for the vLLM peers (direct, "
                    "ray.data.llm): like for like")
    ap.add_argument("--only", default="pipeline,vllm_direct,ray_data_llm,hf_transformers,teacher",
                    help="comma-separated subset to run")
    ap.add_argument("--work", default=str(ROOT / "out" / "bench-label"))
    # --single runs one baseline in this fresh process.
    ap.add_argument("--single", choices=["vllm", "ray_data_llm", "hf", "encoder"], help=argparse.SUPPRESS)
    ap.add_argument("--prompts", help=argparse.SUPPRESS)
    ap.add_argument("--pairs-dir", help=argparse.SUPPRESS)
    ap.add_argument("--limit", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--token-ids", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--max-model-len", type=int, default=MODEL_KW["max_model_len"], help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.single:
        print(json.dumps({"vllm": run_vllm, "ray_data_llm": run_ray_data_llm, "hf": run_hf,
                          "encoder": run_encoder}[a.single](a)))
        return

    only = set(a.only.split(","))
    if only - PARTS:  # a misspelt part would silently be left out of the comparison
        ap.error(f"--only: unknown {sorted(only - PARTS)}; the parts are {sorted(PARTS)} "
                 f"(vllm_direct runs both direct-vLLM peers, fed text and fed token ids)")
    work = Path(a.work) / f"n{a.pairs}"
    work.mkdir(parents=True, exist_ok=True)
    model = bench_model(a)
    pairs = Path(a.work) / f"pairs-{a.pairs}"
    t = time.time()
    make_pairs(a.pairs, pairs)
    log(f"{a.pairs:,} pairs in {pairs} ({time.time() - t:.1f}s); model {model}")
    in_process = not a.engine_processes
    engine_kw = dict(MODEL_KW, in_process=in_process)
    threads = a.cpu_threads or ("all" if in_process else None)
    if threads:
        engine_kw["cpu_threads"] = threads
    if a.malloc != "auto":
        engine_kw["malloc"] = a.malloc
    # The vLLM peers run with the malloc the stage gives its vLLM engines on this machine.
    from labeler.allocator import engine_env
    peer_env = engine_env(a.malloc, local_cpu=True, in_process=in_process, preload=os.environ.get("LD_PRELOAD", ""))
    # Direct vLLM runs in the pipeline engine's mode (its ceiling in the same mode).
    direct_env = dict(peer_env, VLLM_ENABLE_V1_MULTIPROCESSING="0" if in_process else "1")
    if a.max_num_batched_tokens:
        engine_kw["max_num_batched_tokens"] = a.max_num_batched_tokens
    step = {"max_num_batched_tokens": a.max_num_batched_tokens} if a.max_num_batched_tokens else {}
    result: dict = {"pairs": a.pairs, "model": a.model or f"random Llama hidden {a.hidden}, {a.layers} layers, head_dim 64",
                    "engine": engine_kw, "max_doc_tokens": MAX_DOC_TOKENS, "cpus": os.cpu_count(),
                    "machine": machine_info(), "dtype": DTYPE, "malloc_env": peer_env, "direct_env": direct_env}
    if "pipeline" in only and a.compare_pairs and a.compare_pairs < a.pairs:
        # The same command on fewer pairs first, in this run: does the cost per pair stay flat?
        small = Path(a.work) / f"pairs-{a.compare_pairs}"
        make_pairs(a.compare_pairs, small)
        result["pipeline_small"] = run_pipeline(model, small, Path(a.work) / f"n{a.compare_pairs}", a.compare_pairs,
                                                engine_kw)
    if "pipeline" in only:
        p = run_pipeline(model, pairs, work, a.pairs, engine_kw)
        result["pipeline"] = p
        result.update(wall_s=p["wall_s"], pairs_per_s=p["pairs_per_s"], peak_rss_mb=p["peak_rss_mb"])
    if result.get("pipeline_small"):
        result["scale"] = scale_figures(result["pipeline_small"], result["pipeline"])
    base_n = min(a.pairs, a.baseline_pairs or a.pairs)
    from labeler.engines import export_backend

    kind = export_backend(model)
    if kind in ("cross_encoder", "bi_encoder"):
        # An encoder student: its own single-process ceiling is the only like-for-like peer (the
        # vLLM baselines run generative models).
        result["student_kind"] = kind
        result["encoder_direct"] = single("encoder", model=model, pairs_dir=pairs, limit=base_n)
        p = result.get("pipeline")
        if p:
            result["pipeline_vs_encoder_direct_steady"] = round(
                (p["steady_pairs_per_s"] or p["pairs_per_s"]) / result["encoder_direct"]["pairs_per_s"], 3)
        print(json.dumps(result))
        return
    need = max([base_n if only & {"vllm_direct", "ray_data_llm"} else 0, a.hf_sample if "hf_transformers" in only else 0])
    prompts = work / "prompts"
    if need:
        t = time.time()
        import shutil
        shutil.rmtree(prompts, ignore_errors=True)
        build_prompts(model, pairs, prompts, need)
        log(f"{need:,} prompts built for the baselines in {time.time() - t:.1f}s (not timed)")
    if "vllm_direct" in only:
        result["vllm_direct"] = single("vllm", direct_env, model=model, prompts=prompts, limit=base_n, **step)
        result["vllm_direct_token_ids"] = single("vllm", direct_env, model=model, prompts=prompts, limit=base_n,
                                                 token_ids=1, **step)
    if "ray_data_llm" in only:
        import shutil
        shutil.rmtree(work / "ray_data_llm", ignore_errors=True)
        # ray.data.llm runs vLLM in its EngineCore processes: the malloc the stage would give those.
        rdl_env = engine_env(a.malloc, local_cpu=True, in_process=False, preload=os.environ.get("LD_PRELOAD", ""))
        result["ray_data_llm"] = single("ray_data_llm", rdl_env, model=model, prompts=prompts, limit=base_n,
                                        out=work / "ray_data_llm", **step)
    if "hf_transformers" in only and a.hf_sample:
        result["hf_transformers"] = {**single("hf", model=model, prompts=prompts, limit=a.hf_sample), "sample": a.hf_sample}
    if only & {"teacher", "teacher_pipeline"} and a.teacher_sample:
        from labeler.models import resolve
        # The same pairs for the teacher's two peers: a set of its own, of the sample's size.
        tpairs = Path(a.work) / f"pairs-{a.teacher_sample}"
        make_pairs(a.teacher_sample, tpairs)
        result["teacher"] = {**single("vllm", direct_env, model=resolve(a.teacher), pairs_dir=tpairs,
                                      limit=a.teacher_sample, max_model_len=1024),
                             "sample": a.teacher_sample, "model": a.teacher}
    if "teacher_pipeline" in only and a.teacher_sample:
        # The teacher through the stage that judges (grade_stream, as `labeler judge` runs it), with
        # the MedQuAD config's engine settings, on the same prompts as the direct peer above.
        result["teacher_pipeline"] = run_pipeline(resolve(a.teacher), tpairs, Path(a.work) / f"teacher-{a.teacher_sample}",
                                                  a.teacher_sample, dict(TEACHER_KW, in_process=in_process))
        tp, td = result["teacher_pipeline"], result["teacher"]
        result["judge_vs_direct_teacher_steady"] = round((tp["steady_pairs_per_s"] or tp["pairs_per_s"]) / td["pairs_per_s"], 3)
        # While its engine grades (defined with few batches too), against direct vLLM without its start.
        result["judge_vs_direct_teacher_busy"] = round(tp["pairs"] / tp["engine_busy_s"] / td["pairs_per_s"], 3)
    p, d = result.get("pipeline"), result.get("vllm_direct")
    if p and d:
        # Like for like: the pipeline's steady rate against generate alone, and both with start-up.
        result["pipeline_vs_direct_steady"] = round((p["steady_pairs_per_s"] or p["pairs_per_s"]) / d["pairs_per_s"], 3)
        result["pipeline_vs_direct_incl_start"] = round(p["pairs_per_s"] / d["pairs_per_s_incl_start"], 3)
        e = result["vllm_direct_token_ids"]
        result["pipeline_vs_direct_token_ids_steady"] = round((p["steady_pairs_per_s"] or p["pairs_per_s"]) / e["pairs_per_s"], 3)
    if p and result.get("ray_data_llm"):
        result["pipeline_vs_ray_data_llm"] = round(p["pairs_per_s"] / result["ray_data_llm"]["pairs_per_s"], 3)
    if d and result.get("teacher"):
        result["student_to_teacher"] = round(d["pairs_per_s"] / result["teacher"]["pairs_per_s"], 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
