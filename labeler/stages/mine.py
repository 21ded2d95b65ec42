"""The mine stage: for each synthetic query, its seed document and BM25 hard negatives (labeler.mining)."""
from __future__ import annotations

from ..schema import PAIRS
from .base import Stage


def mine_index(ctx):
    """The run's BM25 index folder and the seconds spent building it (0 when it exists). Built once
    per corpus content, backend and chunking; reused by later runs and stages (title groups)."""
    import os

    from ..mining import ensure_index

    s = ctx.cfg.synthesize
    return ensure_index(
        ctx.store.root, ctx.fingerprint("corpus"),
        lambda: ctx.store.table("corpus", columns=["doc_id", "title", "text", "author", "space", "doc_type",
                                                   "last_modified"]),
        ctx.cfg.mine.backend, s.chunk_tokens, s.chunk_overlap, threads=os.cpu_count() or 1,
        log=lambda m: ctx.log(f"[mine] {m}"))


def check_every_input(w, keys: set, key_col: str) -> None:
    """Every input key is in data/ or rejected/: a stage that is not one-to-one still loses nothing."""
    from ..store import ReconciliationError, read_parts

    got = set()
    d = read_parts(w.work / "data", [key_col])
    if d is not None:
        got.update(d.column(key_col).to_pylist())
    r = read_parts(w.work / "rejected", ["key"])
    if r is not None:
        got.update(r.column("key").to_pylist())
    lost = keys - got
    if lost:
        raise ReconciliationError(f"stage {w.stage}: {len(lost)} inputs produced no output and no rejection, "
                                  f"e.g. {sorted(lost)[:3]}")


def _section(cfg) -> dict:
    from ..config import identity

    return {"mine": identity(cfg.mine)}


def _run(ctx) -> dict:
    from ..mining import MineWorker, index_handle, mine_pool
    from ..store import read_parts
    from .runner import pending, run_actor_stage

    ctx.ray_up()
    c = ctx.cfg.mine
    queries = ctx.store.table("synthesize")
    w = ctx.writer("mine")
    index_dir, index_s = mine_index(ctx)
    done = w.done_keys(lambda t: t.column("query_id").to_pylist())
    todo = pending(queries, queries.column("query_id"), done)
    run_actor_stage(w, todo, worker=MineWorker,
                    ctor_kwargs={"cfg": c, "index": index_handle(index_dir, c.index_transport), "seed": ctx.cfg.seed},
                    pool=mine_pool(c), batch_size=c.batch_size, total=queries.num_rows)
    check_every_input(w, set(queries.column("query_id").to_pylist()), "query_id")
    pairs = read_parts(w.work / "data", ["source", "split"])
    extra = {"queries": queries.num_rows, "pairs": 0 if pairs is None else pairs.num_rows,
             "pairs_by_source": counts(pairs, "source"), "pairs_by_split": counts(pairs, "split"),
             "index": str(index_dir), "index_backend": c.backend, "index_build_s": round(index_s, 2)}
    return ctx.publish(w, "mine", queries.num_rows, extra=extra, one_to_one=False)


def counts(t, col: str) -> dict:
    return {} if t is None else count_values(t.column(col).to_pylist())


def count_values(values) -> dict:
    out: dict = {}
    for v in values:
        out[str(v)] = out.get(str(v), 0) + 1
    return dict(sorted(out.items()))


STAGE = Stage("mine", ("synthesize", "corpus"), PAIRS, _section, _run,
              help="BM25 hard negatives (and random ones) for every query, split by query into train and held-out")
