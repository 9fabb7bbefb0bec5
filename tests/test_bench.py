"""The benchmark harness itself: systems, tables and the partial report."""

from __future__ import annotations

import json

from mmrec.bench.quality import format_quality_table, run_quality_benchmark

SHOP = {"num_items": 300, "num_users": 100, "num_clicks": 3000}


def test_quality_benchmark_runs_the_baselines_and_writes_json(tmp_path):
    path = tmp_path / "report.json"
    report = run_quality_benchmark("shop", seeds=(1,), systems=("most popular", "EASE", "oracle",
                                                                "true attributes"),
                                   shop=SHOP, cold_item_share=0.1, partial_json=str(path))
    assert set(report["main"]) == {"most popular", "EASE", "oracle", "true attributes"}
    assert json.loads(path.read_text())["main"].keys() == report["main"].keys()
    oracle = report["main"]["oracle"]["test"]["NDCG@10"]
    assert oracle > 2 * report["main"]["most popular"]["test"]["NDCG@10"]
    assert 0 < report["main"]["true attributes"]["test"]["NDCG@10"] < oracle
    table = format_quality_table(report)
    assert "| oracle |" in table and "| EASE |" in table
    assert report["cold_start"] == {}  # no model system asked for
