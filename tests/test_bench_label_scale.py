"""bench/label_scale.py's inputs are the same at every size, so that a larger run measures the
pipeline at scale and not a different workload: vLLM's prefix cache hits a document that recurs
within its reach, and with one pool of n/20 documents the recurrence distance grew with n."""
from __future__ import annotations

import sys

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))


def _pairs(n, folder):
    import label_scale

    label_scale.make_pairs(n, folder, rows_per_file=7_000)
    return pa.concat_tables([pq.read_table(f) for f in sorted(folder.glob("*.parquet"))])


def _recurrence(t: pa.Table) -> np.ndarray:
    """For each pair, how many rows back its document last appeared (-1: first time)."""
    last, out = {}, []
    for i, d in enumerate(t.column("doc_id").to_pylist()):
        out.append(i - last[d] if d in last else -1)
        last[d] = i
    return np.array(out)


def test_inputs_have_the_same_structure_at_every_size(tmp_path):
    small, large = _pairs(2_000, tmp_path / "s"), _pairs(20_000, tmp_path / "l")
    for t, n in ((small, 2_000), (large, 20_000)):
        assert t.num_rows == n
        keys = pc.binary_join_element_wise(t.column("query_id"), t.column("doc_id"), "\t")
        assert pc.count_distinct(keys).as_py() == n  # (query_id, doc_id) unique
        counts = pc.value_counts(t.column("doc_id")).field("counts")
        assert pc.min(counts).as_py() == pc.max(counts).as_py() == 20  # every document in 20 pairs
        q = pc.value_counts(t.column("query_id")).field("counts")
        assert pc.min(q).as_py() == pc.max(q).as_py() == 10
    rs, rl = _recurrence(small), _recurrence(large)
    # the same recurrence distances: the large input is the small one's pattern repeated
    assert rl.max() == rs.max() <= 1_000
    assert np.array_equal(np.bincount(rl[rl > 0]), np.bincount(rs[rs > 0]) * 10)


def test_scale_figures_compare_like_processes():
    import label_scale

    def run(pairs, wall, steady, busy, roles):
        return {"pairs": pairs, "wall_s": wall, "steady_pairs_per_s": steady, "engine_busy_s": busy,
                "peak_rss_by_role_mb": roles}

    small = run(100, 10.0, 50.0, 2.0, {"driver": 500.0, "VLLM::Worker": 2000.0, "cc1plus": 400.0, "ray::X": 40.0})
    big = run(1000, 120.0, 45.0, 25.0, {"driver": 550.0, "VLLM::Worker": 2000.0, "ray::X": 45.0})
    s = label_scale.scale_figures(small, big)
    assert s["steady_ratio"] == 0.9 and s["wall_per_pair_ratio"] == 1.2 and s["busy_rate_ratio"] == 0.8
    # too few batches for a steady rate: no ratio, not a made-up one
    assert label_scale.scale_figures({**small, "steady_pairs_per_s": None}, big)["steady_ratio"] is None
    # compilers and processes under 50 MB are not compared
    assert s["peak_rss_ratio_by_role"] == {"driver": 1.1, "VLLM::Worker": 1.0} and s["peak_rss_ratio_max"] == 1.1
    # Ray's read tasks named by their split factor, and a name seen only as its process exited
    # (the kernel's 15 characters), are the same kinds of process in both runs
    small = run(100, 10.0, 50.0, 2.0, {"ray::ReadPairs->SplitBlocks(2)": 100.0, "ray::_StatsActo": 100.0})
    big = run(1000, 120.0, 45.0, 25.0, {"ray::ReadPairs->SplitBlocks(3)": 104.0, "ray::_StatsActor": 111.0})
    assert label_scale.scale_figures(small, big)["peak_rss_ratio_by_role"] == {
        "ray::ReadPairs->SplitBlocks": 1.04, "ray::_StatsActor": 1.11}


def test_scale_figures_tell_growth_within_the_large_run():
    import label_scale

    def run(pairs, tenths):
        return {"pairs": pairs, "wall_s": 1.0, "steady_pairs_per_s": 1.0, "engine_busy_s": 1.0,
                "peak_rss_by_role_mb": {k: max(v for v in t if v) for k, t in tenths.items()},
                "peak_rss_by_tenth_mb": tenths}

    small = run(100, {"driver": [100.0] * 10})
    # the driver peaked at start and stayed below it; the engine rose through the run; a read
    # task seen only in the second half has nothing to compare with
    big = run(1000, {"driver": [110.0, 100.0, 100.0, 100.0, 100.0, 101.0, 100.0, 100.0, 100.0, 100.0],
                     "ray::MapWorker(Engine)": [100.0, 101.0, 102.0, 103.0, 104.0, 106.0, 107.0, 108.0, 109.0, 110.0],
                     "ray::Read(2)": [None] * 5 + [50.0] * 5})
    within = label_scale.scale_figures(small, big)["rss_late_over_early_by_role"]
    assert within == {"driver": 0.918, "ray::MapWorker(Engine)": 1.058}


def test_rss_sampler_says_when_a_process_peaked():
    import subprocess
    import sys as _sys

    from mine import RssSampler

    # holds ~20 MB for 1.5 s, then ~220 MB until it exits
    code = ("import time; a = bytearray(20 << 20); time.sleep(1.5); "
            "b = bytearray(200 << 20); b[::4096] = b'x' * len(b[::4096]); time.sleep(1.5)")
    p = subprocess.Popen([_sys.executable, "-c", code])
    with RssSampler(everything=True, root=p.pid, step_s=0.1) as rss:
        p.wait()
    driver = rss.by_tenth()["driver"]
    assert len(driver) == 10
    early, late = max(v for v in driver[:3] if v), max(v for v in driver[-3:] if v)
    assert early < 100 < late
