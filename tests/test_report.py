import json
import re

import pyarrow as pa
import pytest

from labeler.evaluate.metrics import agreement, system_ranking_agreement
from labeler.evaluate.report import (
    DEFAULT_PRICES,
    cost_rows,
    stage_costs_from_run,
    write_report,
)

REF = pa.table({"query_id": ["q1"] * 3 + ["q2"] * 3, "doc_id": list("abcdef"),
                "grade": pa.array([3, 1, 0, 2, 2, 0], pa.int8())})
TEACHER = pa.table({"query_id": ["q1"] * 3 + ["q2"] * 3, "doc_id": list("abcdef"),
                    "grade": pa.array([3, 0, 0, 2, 1, 0], pa.int8()),
                    "expected_grade": pa.array([2.9, 0.4, 0.1, 2.2, 1.2, 0.3], pa.float32()),
                    "status": ["ok"] * 6})
BM25 = pa.table({"query_id": ["q1"] * 3 + ["q2"] * 3, "doc_id": list("abcdef"),
                 "score": [9.0, 1.0, 5.0, 3.0, 4.0, 1.0]})
JUDGE = {"stage": "judge", "rows": 1000, "wall_s": 120.0, "gpu_hours": 0.0, "cpu_hours": 0.07,
         "tokens_in": 300000, "tokens_out": 1000, "model": "api-llm"}
LABEL = {"stage": "label", "rows": 100000, "wall_s": 600.0, "gpu_hours": 0.5, "model": "student"}
PRICES = {"gpu_hour": 3.0, "models": {"api-llm": {"input_per_1m_tokens": 1.0, "output_per_1m_tokens": 4.0}}}


def test_cost_rows_by_hand():
    judge, label = cost_rows([JUDGE, LABEL], PRICES)
    # judge: 0.3M in x $1 + 0.001M out x $4 + 0.07 CPU-h x $0.05 = 0.3 + 0.004 + 0.0035
    assert judge["cost_usd"] == pytest.approx(0.3075)
    assert judge["usd_per_million"] == pytest.approx(0.3075 / 1000 * 1e6)
    assert judge["rows_per_s"] == pytest.approx(1000 / 120)
    # label: 0.5 GPU-h x $3 = $1.50 for 100k labels -> $15 per million; no cpu_hours key -> 0
    assert label["cost_usd"] == pytest.approx(1.5) and label["usd_per_million"] == pytest.approx(15.0)


def test_cost_rows_defaults_and_unknown_keys():
    (row,) = cost_rows([{"stage": "s", "rows": 0, "wall_s": 0, "gpu_hours": 2.0}])
    assert row["cost_usd"] == pytest.approx(2.0 * DEFAULT_PRICES["gpu_hour"])
    assert row["usd_per_million"] is None and row["rows_per_s"] is None
    with pytest.raises(ValueError, match=r"unknown price keys \['gpu_hours'\]"):
        cost_rows([JUDGE], {"gpu_hours": 1.0})


def test_stage_costs_from_run_reads_manifests(tmp_path):
    (tmp_path / "judge").mkdir()
    (tmp_path / "judge" / "_manifest.json").write_text(json.dumps(
        {"stage": "judge", "rows_out": 10, "wall_s": 5.0, "gpu_hours": 0.1}))
    assert stage_costs_from_run(tmp_path) == [{"stage": "judge", "rows": 10, "wall_s": 5.0, "model": None,
                                               "gpu_hours": 0.1, "cpu_hours": 0, "tokens_in": 0, "tokens_out": 0}]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    sources = {"teacher": TEACHER, "bm25": BM25}
    metrics = {name: agreement(REF, t) for name, t in sources.items()}
    ranking = {"teacher": system_ranking_agreement(
        {"A": {"q1": {"a": 2, "b": 1}}, "B": {"q1": {"c": 2, "a": 1}}}, REF, TEACHER)}
    paths = write_report(out, metrics, REF, sources, stage_costs=[JUDGE, LABEL], prices=PRICES,
                         system_ranking=ranking)
    return out, paths


def test_report_writes_every_file(report):
    out, paths = report
    assert set(paths) == {"markdown", "html", "metrics", "confusion", "calibration"}
    for key in ("confusion", "calibration"):
        assert paths[key].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert {p.name for p in out.iterdir()} == {"report.md", "report.html", "metrics.json",
                                               "confusion.png", "calibration.png"}


def test_html_is_self_contained(report):
    html = report[1]["html"].read_text()
    sources = re.findall(r'(?:src|href)="([^"]*)"', html)
    assert len(sources) == 2 and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "<table>" in html and "teacher" in html and "bm25" in html


def test_markdown_has_tables_plots_and_costs(report):
    md = report[1]["markdown"].read_text()
    assert "![confusion matrices](confusion.png)" in md and "![calibration plot](calibration.png)" in md
    # teacher confusion row for human grade 2: one 1, one 2
    assert "| 2 | 0 | 1 | 1 | 0 |" in md
    assert "| judge | api-llm | 1,000 |" in md and "| 307.50 |" in md and "| 15.00 |" in md
    assert "System ranking agreement" in md
    # the score-only source is in the table (with its failed and missing counts), dashes for grade metrics
    assert re.search(r"\| bm25 \| 1\.000 \| 6 \| 0 \| 0 \| – \| – \|", md)


def test_metrics_json_is_strict_json(report):
    data = json.loads(report[1]["metrics"].read_text())  # would fail on NaN with allow_nan=False writer
    assert set(data["sources"]) == {"teacher", "bm25"}
    assert data["costs"][0]["usd_per_million"] == pytest.approx(307.5)
    assert data["prices"]["gpu_hour"] == 3.0


def test_report_without_graded_sources_or_costs(tmp_path):
    paths = write_report(tmp_path, {"bm25": agreement(REF, BM25)}, REF, {"bm25": BM25})
    assert set(paths) == {"markdown", "html", "metrics"}
    assert "Throughput" not in paths["markdown"].read_text()
