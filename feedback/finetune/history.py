"""The fine-tuning runs of a model folder, as a table and as a picture.

Every run appends its report to ``<model dir>/finetune-history.jsonl`` (see
:mod:`feedback.finetune.job`); this module reads it back for people: a table
of runs (outcome, version, events, the gated numbers) and a PNG plot of the
gated NDCG@10 of the live version and the candidate over the runs, published
candidates filled, rejected ones hollow.

Example:

    print(format_history(read_history("saved_models/mmrec")))
    plot_history(read_history("saved_models/mmrec"), "finetune.png")
"""

from __future__ import annotations

import os
from pathlib import Path

from feedback.finetune.job import read_history

__all__ = ["format_history", "plot_history", "read_history"]


def _score(record: dict, side: str, name: str) -> float | None:
    return ((record.get("gate") or {}).get(side) or {}).get(name)


def format_history(records: list[dict]) -> str:
    """A markdown table, one row per run."""
    lines = ["| started | outcome | live → version | events | recent NDCG@10 live / candidate "
             "| validation NDCG@10 live / candidate | seconds |",
             "|---|---|---|---|---|---|---|"]

    def pair(record: dict, name: str) -> str:
        live, candidate = _score(record, "live", name), _score(record, "candidate", name)
        if live is None and candidate is None:
            return "–"
        cell = lambda v: "–" if v is None else f"{v:.4f}"  # noqa: E731
        return f"{cell(live)} / {cell(candidate)}"

    for record in records:
        lines.append(f"| {record.get('started', '')} | {record.get('outcome')} | "
                     f"{record.get('live_version')} → {record.get('version') or '–'} | "
                     f"{record.get('events', 0)} | {pair(record, 'recent')} | "
                     f"{pair(record, 'validation')} | {record.get('seconds')} |")
    return "\n".join(lines)


def plot_history(records: list[dict], path: str | os.PathLike) -> Path:
    """Draws the gated numbers of every judged run into a PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    judged = [(i, r) for i, r in enumerate(records) if r.get("gate")]
    figure, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharex=True)
    for axis, name, title in ((axes[0], "recent", "recent holdout"),
                              (axes[1], "validation", "original validation split")):
        runs = [i for i, _ in judged]
        live = [_score(r, "live", name) for _, r in judged]
        candidate = [_score(r, "candidate", name) for _, r in judged]
        axis.plot(runs, [v if v is not None else float("nan") for v in live], "-",
                  color="grey", label="live version")
        for i, value, record in zip(runs, candidate, (r for _, r in judged)):
            if value is None:
                continue
            published = record.get("outcome") == "published"
            axis.plot([i], [value], "o", color="tab:blue",
                      markerfacecolor="tab:blue" if published else "white")
        axis.set_title(f"NDCG@10, {title}")
        axis.set_xlabel("run")
    axes[0].plot([], [], "o", color="tab:blue", label="candidate, published")
    axes[0].plot([], [], "o", color="tab:blue", markerfacecolor="white",
                 label="candidate, rejected")
    axes[0].legend(fontsize=8)
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
