"""A data set's summary: sizes, modality coverage, split sizes, skips.

This is what ``mmrec data describe`` prints; run it first on a new catalogue
to see what the model will and will not be able to use.

Example:

    summary = describe(load_dataset("movielens-100k"))
    summary["coverage_percent"]["image"]   # 0.0
    print(format_description(summary))
"""

from __future__ import annotations

import datetime as dt

import numpy as np

from mmrec.data.dataset import Dataset
from mmrec.data.splits import SplitConfig, make_split


def describe(dataset: Dataset, split_config: SplitConfig = SplitConfig()) -> dict:
    """The summary of ``dataset`` as a JSON-ready dict."""
    log, catalogue = dataset.interactions, dataset.catalogue
    per_user = np.bincount(log.user, minlength=log.num_users)
    split = make_split(dataset, split_config)
    iso = lambda t: dt.datetime.fromtimestamp(float(t), dt.timezone.utc).isoformat()  # noqa: E731
    return {
        "name": dataset.name,
        "source": dataset.source,
        "users": int(log.num_users),
        "items": len(catalogue),
        "interactions": len(log),
        "interacted_items": int(len(np.unique(log.item))),
        "density": float(len(log) / max(log.num_users * len(catalogue), 1)),
        "interactions_per_user": {"min": int(per_user.min()), "median": float(
            np.median(per_user)), "max": int(per_user.max())},
        "time_range": [iso(log.timestamp.min()), iso(log.timestamp.max())],
        "coverage_percent": {k: round(100 * v, 2) for k, v in catalogue.coverage().items()},
        "split": {"scheme": split.scheme, **split.sizes()},
        "problems": dataset.report.as_dict(),
    }


def format_description(summary: dict) -> str:
    """The summary as aligned text lines."""
    cov = summary["coverage_percent"]
    per_user = summary["interactions_per_user"]
    split = summary["split"]
    lines = [
        f"data set      {summary['name']}",
        f"source        {summary['source']}",
        f"users         {summary['users']:,}",
        f"items         {summary['items']:,} ({summary['interacted_items']:,} interacted)",
        f"interactions  {summary['interactions']:,} (density {summary['density']:.4%})",
        f"per user      min {per_user['min']}, median {per_user['median']:g}, "
        f"max {per_user['max']}",
        f"time range    {summary['time_range'][0]} .. {summary['time_range'][1]}",
        f"coverage      text {cov['text']:g}%, image {cov['image']:g}%, "
        f"text features {cov['text_features']:g}%, image features {cov['image_features']:g}%",
        f"split         {split['scheme']}: train {split['train']:,}, valid {split['valid']:,}, "
        f"test {split['test']:,}, cold items {split['cold_items']:,}",
    ]
    for problem in summary["problems"]:
        action = "kept" if problem["kept"] else "skipped"
        lines.append(f"problem       {problem['file']}: {action} {problem['count']:,} x "
                     f"{problem['reason']}")
    return "\n".join(lines)
