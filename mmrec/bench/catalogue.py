"""``mmrec bench catalogue``: new items added without retraining, timed and judged.

A catalogue change is worth having if it is quick and if the new items land
where they belong. The simulated shop knows every shopper's true utility for
every item, so "where they belong" can be measured: a share of the shop's
items is held out of the catalogue (and their clicks out of the log), a model
is trained on the rest and published, the held-out items are added with
:func:`mmrec.export.catalogue_changes.add_items`, and for each user the new
items that suit them best by their true tastes are compared with new items
drawn at random: how often does each reach the user's top 10?

Example:

    report = run_catalogue_benchmark({"num_items": 1100, "num_users": 400,
                                      "num_clicks": 20_000}, new_items=100)
    report["matching_rate"], report["random_rate"], report["add_seconds"]
"""

from __future__ import annotations

import csv
import dataclasses
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from mmrec.config import RunConfig
from mmrec.data.registry import load_dataset


def write_catalogue_folder(dataset, items: np.ndarray, folder: Path, *,
                           with_clicks: bool, rows: np.ndarray | None = None,
                           split_labels: np.ndarray | None = None) -> Path:
    """Writes ``items`` of ``dataset`` as an items table with PNG pictures (and,
    with ``with_clicks``, the clicks on them as an interactions table: the log's
    ``rows``, by default every row of those items; ``split_labels``, one
    "train"/"valid"/"test" per written row, become ``splits.csv``)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "img").mkdir(exist_ok=True)
    catalogue = dataset.catalogue
    with open(folder / "items.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["item_id", "title", "text", "image_path"])
        for i in items.tolist():
            picture = catalogue.images[i]
            Image.fromarray(picture[..., 0] if picture.shape[-1] == 1 else picture).save(
                folder / "img" / f"{i}.png")
            writer.writerow([catalogue.item_ids[i], catalogue.metadata["title"][i],
                             catalogue.texts[i], f"img/{i}.png"])
    if with_clicks:
        log = dataset.interactions
        if rows is None:
            rows = np.flatnonzero(np.isin(log.item, items))
        in_time = np.argsort(log.timestamp[rows], kind="stable")  # as an export would list them
        rows = np.asarray(rows)[in_time]
        if split_labels is not None:
            split_labels = np.asarray(split_labels, dtype=object)[in_time]
        clicks = [[log.user_ids[log.user[row]], catalogue.item_ids[log.item[row]],
                   repr(float(log.timestamp[row]))] for row in rows.tolist()]
        with open(folder / "interactions.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["user_id", "item_id", "timestamp"])
            writer.writerows(clicks)
        if split_labels is not None:
            with open(folder / "splits.csv", "w", newline="") as handle:
                writer = csv.writer(handle)
                writer.writerow(["user_id", "item_id", "timestamp", "split"])
                writer.writerows(click + [label] for click, label in zip(clicks, split_labels))
    return folder / "items.csv"


def run_catalogue_benchmark(shop: dict, *, new_items: int = 1000, per_user: int = 5,
                            base: RunConfig | None = None, seed: int = 0,
                            workdir: str | os.PathLike | None = None) -> dict:
    """Trains on the shop without ``new_items`` of its items, adds them, and
    measures how often each user's best-suited new items reach their top 10.

    Args:
      shop: the shop's options; its catalogue must hold more than ``new_items``.
      new_items: items held out of training and added afterwards.
      per_user: new items compared per user: the ``per_user`` that suit the
        user best by true utility, and ``per_user`` drawn at random.
      base: the training config (the shop's pictures are read at 28x28 gray).
      seed: draws the held-out and the random items.
      workdir: where the data folders, the run and the versions go (a
        temporary folder by default).
    """
    from mmrec.export.catalogue_changes import add_items
    from mmrec.export.exporter import export_run
    from mmrec.serve.recommender import Recommender
    from mmrec.train.trainer import train

    dataset = load_dataset("shop", options=shop)
    truth = dataset.ground_truth
    if truth is None:
        raise ValueError("the catalogue benchmark needs the shop's ground truth")
    count = len(dataset.catalogue)
    if not 0 < new_items < count:
        raise ValueError(f"new_items must be in 1..{count - 1}, got {new_items}")
    rng = np.random.default_rng(seed)
    held_out = np.sort(rng.choice(count, size=new_items, replace=False))
    kept = np.setdiff1d(np.arange(count), held_out)
    base = base or RunConfig()
    # The model trains on a folder copy of the shop without the held-out items,
    # which offers no pictures outside its catalogue to pretrain on.
    config = dataclasses.replace(
        base, data=dataclasses.replace(base.data, image_size=dataset.catalogue.images.shape[1],
                                       image_channels=dataset.catalogue.images.shape[3]),
        train=dataclasses.replace(base.train, image_pretraining="none"))
    with tempfile.TemporaryDirectory(prefix="mmrec-catalogue-bench-") as scratch:
        root = Path(workdir or scratch)
        write_catalogue_folder(dataset, kept, root / "data", with_clicks=True)
        table = write_catalogue_folder(dataset, held_out, root / "new", with_clicks=False)
        started = time.perf_counter()
        metrics = train(str(root / "data"), config, root / "run", verbose=0)
        train_seconds = time.perf_counter() - started
        export_run(root / "run", root / "saved_models", k=10)
        started = time.perf_counter()
        add_items(root / "saved_models", table)
        add_seconds = time.perf_counter() - started
        recommender = Recommender.load(root / "saved_models")
        log = dataset.interactions
        last_time = np.full(log.num_users, -np.inf)
        np.maximum.at(last_time, log.user, log.timestamp)
        new_ids = dataset.catalogue.item_ids[held_out]
        matching_hits = random_hits = 0
        for user in range(log.num_users):
            utility = truth.utility(user, float(last_time[user]))[held_out]
            best = new_ids[np.argsort(-utility, kind="stable")[:per_user]]
            drawn = new_ids[rng.choice(new_items, size=per_user, replace=False)]
            top = {r.item_id for r in recommender.recommend(str(log.user_ids[user]), k=10)}
            matching_hits += len(top.intersection(best.tolist()))
            random_hits += len(top.intersection(drawn.tolist()))
    comparisons = log.num_users * per_user
    return {"shop": shop, "new_items": new_items, "catalogue_after": count,
            "per_user": per_user, "users": int(log.num_users),
            "image_pretraining": "none (a folder copy of the shop offers no outside pictures)",
            "train_seconds": round(train_seconds, 1), "test_NDCG@10": metrics["test"]["NDCG@10"],
            "add_seconds": round(add_seconds, 2),
            "matching_rate": matching_hits / comparisons, "random_rate": random_hits / comparisons,
            "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
            "date": time.strftime("%Y-%m-%d")}


def format_catalogue_table(report: dict) -> str:
    ratio = (f"{report['matching_rate'] / report['random_rate']:.1f}x"
             if report["random_rate"] else "–")
    return "\n".join([
        f"shop {report['shop']}, {report['new_items']:,} items added to "
        f"{report['catalogue_after'] - report['new_items']:,}, {report['users']:,} users, "
        f"{report['date']}", "",
        "| measurement | value |", "|---|---|",
        f"| `catalogue add` of {report['new_items']:,} items | {report['add_seconds']} s |",
        f"| training the model it extends | {report['train_seconds']} s (test NDCG@10 "
        f"{report['test_NDCG@10']:.4f}) |",
        f"| best-suited new items in the user's top 10 | {report['matching_rate']:.4f} |",
        f"| random new items in the user's top 10 | {report['random_rate']:.4f} ({ratio} less) |"])
