"""BM25 hard-negative mining: for each query, its seed document plus negatives sampled from a window
of BM25 ranks, excluding the seed, the other passages of the seed's document and near-duplicates
of it (a copy of the seed is a false negative), plus optional random negatives.

The index (labeler.bm25, either backend) is built once per corpus content on the driver and kept
under `<run>/.index/`; every mining actor opens that folder (shared storage) or, on a node that
does not have it, unpacks it from the object store: an index is never rebuilt per task.
"""
from __future__ import annotations

import hashlib
import json
import random
import re
import time
import zlib
from pathlib import Path
from typing import Callable, Optional

import pyarrow as pa
import pyarrow.parquet as pq

from .bm25 import DOCS_FILE, build_index as _build, index_text, is_built, open_index, unpack  # noqa: F401
from .chunking import chunk_docs
from .config import MineConfig
from .corpus_reader import KNOWN_META as META_COLS, doc_meta
from .reasons import UNKNOWN_SEED
from .schema import PAIRS

NEAR_DUP_JACCARD = 0.8
INDEX_COLUMNS = ["doc_id", "title", "text", "author", "space", "doc_type", "last_modified"]


def index_key(corpus_fp: str, backend: str, chunk_tokens: Optional[int], chunk_overlap: int) -> str:
    """Content key of an index: the corpus content (its stage fingerprint), backend and chunking."""
    h = hashlib.sha256(json.dumps([corpus_fp, backend, chunk_tokens, chunk_overlap]).encode()).hexdigest()[:16]
    return f"{backend}-{h}"


def ensure_index(root: Path, corpus_fp: str, corpus: Callable[[], pa.Table], backend: str = "bm25s",
                 chunk_tokens: Optional[int] = None, chunk_overlap: int = 0, threads: int = 1,
                 log: Callable[[str], None] = lambda m: None) -> tuple[Path, float]:
    """The index folder for this corpus, built (in `threads`) only when absent; (folder, seconds spent)."""
    folder = Path(root) / ".index" / index_key(corpus_fp, backend, chunk_tokens, chunk_overlap)
    if is_built(folder):
        return folder, 0.0
    t = time.time()
    docs = corpus()
    docs = chunk_docs(docs.select([c for c in INDEX_COLUMNS if c in docs.column_names]), chunk_tokens, chunk_overlap)
    _build(docs, folder, backend, threads)
    dt = time.time() - t
    log(f"built the {backend} index of {docs.num_rows:,} passages in {dt:.1f}s: {folder}")
    return folder, dt


def build_index(docs: pa.Table, folder: Path, backend: str = "bm25s", threads: int = 1) -> Path:
    """An index of `docs` as they are (no chunking), for tests and tools."""
    if "parent_id" not in docs.column_names:
        docs = chunk_docs(docs.select([c for c in INDEX_COLUMNS if c in docs.column_names]), None)
    _build(docs, Path(folder), backend, threads)
    return Path(folder)


def split_of(query_id: str, heldout_fraction: float, seed: int) -> str:
    """Deterministic by query, so that no query's pairs straddle train and held-out."""
    h = zlib.crc32(f"{seed}:{query_id}".encode()) / 2**32
    return "heldout" if h < heldout_fraction else "train"


_WORD = re.compile(r"\w+")


def _shingles(text: str, n: int = 5) -> set:
    """Hashes of the word n-grams (a text shorter than n words is one shingle)."""
    w = _WORD.findall((text or "").lower())
    if len(w) <= n:
        return {hash(tuple(w))}
    return set(map(hash, zip(*[w[i:] for i in range(n)])))


def jaccard(sa: set, sb: set) -> float:
    if not sa or not sb:
        return 0.0
    small, big = (sa, sb) if len(sa) <= len(sb) else (sb, sa)
    inter = sum(1 for x in small if x in big)
    return inter / (len(sa) + len(sb) - inter)


def near_duplicate(a: str, b: str, threshold: float = NEAR_DUP_JACCARD) -> bool:
    return jaccard(_shingles(a), _shingles(b)) >= threshold


def index_handle(folder: Path, transport: str = "auto") -> dict:
    """How workers reach the index: its path, plus the packed folder in the object store when the
    cluster has several nodes (a node without the path unpacks it locally, once)."""
    import ray

    from .bm25 import pack

    handle: dict = {"path": str(folder), "name": Path(folder).name}
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    if transport == "object_store" or (transport == "auto" and len(nodes) > 1):
        handle["blob"] = [ray.put(pack(folder))]  # in a list, so Ray hands the worker the ref, not the bytes
    return handle


def resolve_index(handle: dict) -> Path:
    path = Path(handle["path"])
    if is_built(path):
        return path
    if "blob" not in handle:
        raise FileNotFoundError(f"the BM25 index {path} is not on this node and was not sent through the "
                                f"object store (mine.index_transport: object_store)")
    import tempfile

    import ray

    return unpack(ray.get(handle["blob"][0]), Path(tempfile.gettempdir()) / "labeler-index" / handle["name"])


class MineWorker:
    """Ray Data actor: opens the index and its documents once, mines pairs for batches of queries."""

    def __init__(self, cfg: MineConfig, index: dict, seed: int = 0):
        self.cfg, self.seed = cfg, seed
        folder = resolve_index(index)
        self.index = open_index(folder, threads=cfg.threads_per_worker)
        docs = pq.read_table(folder / DOCS_FILE)
        self.ids = docs.column("doc_id").to_pylist()
        self.parents = docs.column("parent_id").to_pylist()
        self.row_of = {d: i for i, d in enumerate(self.ids)}
        self.docs = docs
        self._texts = docs.column("text")
        self._shingle_cache: dict[int, set] = {}

    def _sh(self, row: int) -> set:
        s = self._shingle_cache.get(row)
        if s is None:
            if len(self._shingle_cache) > 50_000:
                self._shingle_cache.clear()
            s = self._shingle_cache[row] = _shingles(self._texts[row].as_py())
        return s

    def _near_dup(self, row: int, seed_row: int) -> bool:
        a, b = self._sh(row), self._sh(seed_row)
        # Jaccard can be no higher than the ratio of the set sizes: most candidates stop here.
        if min(len(a), len(b)) < self.cfg.near_dup_threshold * max(len(a), len(b)):
            return False
        return jaccard(a, b) >= self.cfg.near_dup_threshold

    def __call__(self, batch: pa.Table) -> pa.Table:
        queries = batch.select(["query_id", "query", "seed_doc_id"]).to_pylist()
        hits = self.index.search([q["query"] or "" for q in queries], self.cfg.depth)
        lo, hi = self.cfg.window
        picked = []      # (query, row, source, rank, score, split): one per pair, in output order
        rejected = []
        for q, ranked in zip(queries, hits):
            seed_row = self.row_of.get(q["seed_doc_id"])
            if seed_row is None:
                rejected.append(q)
                continue
            split = split_of(q["query_id"], self.cfg.heldout_fraction, self.seed)
            rank_of = {row: (i + 1, s) for i, (row, s) in enumerate(ranked)}
            picked.append((q, seed_row, "seed", *rank_of.get(seed_row, (None, None)), split))
            parent = self.parents[seed_row]
            rng = random.Random(zlib.crc32(f"{self.seed}:{q['query_id']}".encode()))
            window = [(i + 1, row, s) for i, (row, s) in enumerate(ranked)
                      if lo <= i + 1 <= hi and self.parents[row] != parent]
            rng.shuffle(window)
            picks, taken = [], {seed_row}
            # Near-duplicate checks are lazy: only as many candidates as it takes to fill the quota.
            for rank, row, s in window:
                if len(picks) >= self.cfg.negatives_per_query:
                    break
                if not self._near_dup(row, seed_row):
                    picks.append((rank, row, s))
                    taken.add(row)
            picked.extend((q, row, "bm25", rank, s, split) for rank, row, s in sorted(picks))
            n_random, tries = 0, 0
            while n_random < self.cfg.random_negatives and tries < 20 * self.cfg.random_negatives:
                tries += 1
                row = rng.randrange(len(self.ids))
                if row in taken or self.parents[row] == parent or self._near_dup(row, seed_row):
                    continue
                taken.add(row)
                n_random += 1
                # A random document BM25 also retrieved keeps its rank and score; otherwise both are null.
                picked.append((q, row, "random", *rank_of.get(row, (None, None)), split))
        return self._table(picked, rejected)

    def _table(self, picked: list, rejected: list[dict]) -> pa.Table:
        """Pair rows (document columns taken in one vectorised gather) then the rejected queries."""
        docs = self.docs.take(pa.array([p[1] for p in picked], pa.int64()))
        meta_cols = [c for c in META_COLS if c in docs.column_names]
        meta = [doc_meta(dict(zip(meta_cols, vals))) for vals in zip(*(docs.column(c).to_pylist() for c in meta_cols))] \
            if meta_cols else [doc_meta({})] * len(picked)
        n, m = len(picked), len(rejected)
        qid = [p[0]["query_id"] for p in picked] + [q["query_id"] for q in rejected]
        cols = {
            "query_id": qid,
            "query": [p[0]["query"] for p in picked] + [q["query"] for q in rejected],
            "doc_id": docs.column("doc_id").to_pylist() + [None] * m,
            "title": docs.column("title").to_pylist() + [None] * m,
            "text": docs.column("text").to_pylist() + [None] * m,
            "doc_meta": meta + [None] * m,
            "source": [p[2] for p in picked] + [None] * m,
            "bm25_rank": [p[3] for p in picked] + [None] * m,
            "bm25_score": [p[4] for p in picked] + [None] * m,
            "split": [p[5] for p in picked] + [None] * m,
            "_key": qid,
            "_status": ["ok"] * n + ["rejected"] * m,
            "_reason": [None] * n + [UNKNOWN_SEED] * m,
            "_detail": [None] * n + [f"seed document {q['seed_doc_id']!r} is not in the index" for q in rejected],
            "_raw": [None] * (n + m),
        }
        types = {f.name: f.type for f in PAIRS}
        return pa.table({c: pa.array(v, type=types.get(c, pa.string())) for c, v in cols.items()})

    def __del__(self):
        try:
            self.index.close()
        except Exception:
            pass


def mine_pool(cfg: MineConfig) -> dict:
    """Actors sized from the CPUs there: one per CPU but one on a cluster, and on a 2-CPU machine
    two half-CPU actors, so that Ray Data's own tasks still find a free CPU (docs/stack.md)."""
    import ray

    cpus = ray.cluster_resources().get("CPU", 1)
    size = cfg.num_workers or (max(1, int(cpus) - 1) if cpus > 2 else max(1, int(cpus)))
    per = min(float(cfg.threads_per_worker), max(0.25, (cpus - 1) / size)) if cpus > 1 else 0.5
    return {"compute": ray.data.ActorPoolStrategy(size=size), "num_cpus": per}
