"""Readable tables of evaluation results.

Example:

    print(format_metrics_table({"valid": valid_metrics, "test": test_metrics}))
"""

from __future__ import annotations

TABLE_METRICS = ("HR@10", "NDCG@10", "MRR@10", "Recall@20", "NDCG@20", "coverage@10",
                 "popularity_percentile@10")


def format_metrics_table(results: dict[str, dict]) -> str:
    """A markdown table, one row per named result (e.g. valid, test, warm, cold)."""
    rows = ["| part | queries | " + " | ".join(TABLE_METRICS) + " |",
            "|---" * (len(TABLE_METRICS) + 2) + "|"]

    def cell(value) -> str:
        return "–" if value is None else f"{value:.4f}"

    for name, metrics in results.items():
        parts = [(name, metrics)] + [(f"{name} ({group})", metrics[group])
                                     for group in ("warm", "cold") if metrics.get(group)
                                     and metrics[group].get("queries")]
        for label, values in parts:
            rows.append(f"| {label} | {values.get('queries', '–')} | " +
                        " | ".join(cell(values.get(m)) for m in TABLE_METRICS) + " |")
    return "\n".join(rows)
