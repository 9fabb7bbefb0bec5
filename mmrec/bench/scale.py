"""``mmrec bench scale``: training cost as the catalogue grows, in two series.

Catalogues of tens of thousands of products must not make an epoch cost what
the catalogue costs rather than what the clicks cost. The shop is generated
at each catalogue size (its pictures resized to the size of a user's own
catalogue, 64x64 RGB by default, where the memory of holding every picture
shows) and trained for the given epochs in a fresh process per point, so
each point's peak resident memory is its own:

1. the same clicks at every size: seconds of training per epoch (the item
   table's refreshes included, validation timed apart), peak resident
   memory after training and after export, export seconds and size;
2. clicks in proportion to the items (``clicks_per_item``): seconds per
   1,000 training clicks, which should stay flat.

Image pretraining is off (it is a one-off cost of its own) and early stopping
too, so every point trains the same number of epochs.

Example:

    report = run_scale_benchmark((5000, 20000, 60000), clicks=100_000, clicks_per_item=4)
    print(format_scale_tables(report))
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mmrec.config import RunConfig
from mmrec.progress import progress

CLICKS_PER_USER = 50
"""Users at each point: the clicks over this (2,000 users for 100,000 clicks,
the shop's default)."""


def point_config(base: RunConfig, items: int, clicks: int, *, picture_size: int,
                 picture_channels: int, epochs: int) -> RunConfig:
    """``base`` on a shop of ``items`` and ``clicks``, trained ``epochs`` with
    neither image pretraining nor early stopping."""
    options = dict(base.data.dataset_options)
    options["shop"] = {**options.get("shop", {}), "num_items": items, "num_clicks": clicks,
                       "num_users": max(1, clicks // CLICKS_PER_USER),
                       "picture_size": picture_size, "picture_channels": picture_channels}
    return dataclasses.replace(
        base, data=dataclasses.replace(base.data, dataset_options=options),
        train=dataclasses.replace(base.train, epochs=epochs, image_pretraining="none",
                                  early_stopping_patience=0))


def peak_rss_mib() -> float:
    """This process's peak resident memory so far, MiB (Linux reports KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def folder_mib(path: Path) -> float:
    return round(sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20, 1)


def measure_point(config: RunConfig, workdir: Path) -> dict:
    """Trains, validates and exports one point in this process; its numbers."""
    from mmrec.export.exporter import export_run
    from mmrec.train.trainer import train
    metrics = train("shop", config, workdir / "run", verbose=0)
    history = [h for h in metrics["history"] if h.get("seconds") is not None]
    examples = history[-1]["examples"]
    trained_rss = peak_rss_mib()
    started = time.perf_counter()
    version = export_run(workdir / "run", workdir / "models", k=10)
    export_seconds = time.perf_counter() - started
    shop = config.data.dataset_options["shop"]
    return {"items": shop["num_items"], "clicks": shop["num_clicks"],
            "users": shop["num_users"], "training_examples": examples,
            "epochs": len(history),
            "epoch_seconds": round(sum(h["seconds"] for h in history) / len(history), 2),
            "validation_seconds": round(sum(h["validation_seconds"] for h in history)
                                        / len(history), 2),
            "seconds_per_1000_clicks": round(1000 * sum(h["seconds"] for h in history)
                                             / (len(history) * examples), 3),
            "peak_rss_after_training_mib": trained_rss,
            "export_seconds": round(export_seconds, 1),
            "export_mib": folder_mib(Path(version)),
            "peak_rss_mib": peak_rss_mib(),
            "valid_NDCG@10": metrics["valid"]["NDCG@10"]}


def run_point(config: RunConfig) -> dict:
    """:func:`measure_point` in a fresh process (its own peak memory)."""
    with tempfile.TemporaryDirectory(prefix="mmrec-scale-") as workdir:
        done = subprocess.run(
            [sys.executable, "-m", "mmrec.bench.scale", json.dumps(config.to_dict()), workdir],
            capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"bench scale: the point {config.data.dataset_options['shop']} "
                               f"failed:\n{done.stderr[-4000:]}")
        line = next(l for l in done.stdout.splitlines() if l.startswith("POINT "))
        return json.loads(line.removeprefix("POINT "))


def run_scale_benchmark(items: tuple[int, ...] = (5000, 20000, 60000), *,
                        clicks: int = 100_000, clicks_per_item: float = 4.0,
                        base: RunConfig | None = None, picture_size: int = 64,
                        picture_channels: int = 3, epochs: int = 1) -> dict:
    """Both series over the catalogue sizes ``items``.

    Args:
      items: catalogue sizes (at most 70,000, the Fashion-MNIST photos).
      clicks: the clicks of series 1, the same at every size.
      clicks_per_item: series 2's clicks per item (0: series 1 only).
      base: the config every point starts from (its shop table's other keys
        hold; size, clicks, users and pictures are set per point).
      picture_size, picture_channels: the shop's pictures.
      epochs: epochs per point.
    """
    if not items or min(items) < 10 or max(items) > 70_000:
        raise ValueError(f"bench scale: catalogue sizes must be in 10..70000, got {items}")
    base = base or RunConfig()
    plan = [("same clicks", size, clicks) for size in items]
    if clicks_per_item:
        plan += [("clicks in proportion", size, int(round(size * clicks_per_item)))
                 for size in items]
    rows = []
    for series, size, count in progress(plan, desc="bench scale points", min_items=1):
        row = run_point(point_config(base, size, count, picture_size=picture_size,
                                     picture_channels=picture_channels, epochs=epochs))
        rows.append({"series": series, **row})
    return {"date": time.strftime("%Y-%m-%d"),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
            "pictures": f"{picture_size}x{picture_size}x{picture_channels}",
            "epochs": epochs, "batch_size": base.data.batch_size,
            "table_refresh_steps": base.train.table_refresh_steps, "rows": rows}


def format_scale_tables(report: dict) -> str:
    """Markdown: one table per series, each row beside the smallest catalogue."""
    lines = [f"{report['pictures']} pictures, {report['epochs']} epoch(s), batch "
             f"{report['batch_size']}, table refresh every {report['table_refresh_steps']} "
             f"steps; {report['machine']}; {report['date']}"]
    for series in ("same clicks", "clicks in proportion"):
        rows = [r for r in report["rows"] if r["series"] == series]
        if not rows:
            continue
        first = rows[0]
        lines += ["", f"**{series}**", "",
                  "| items | clicks | epoch s | vs smallest | s / 1,000 clicks | validation s "
                  "| peak RSS after training MiB | peak RSS MiB | export s | export MiB |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            lines.append(
                f"| {r['items']:,} | {r['clicks']:,} | {r['epoch_seconds']:.1f} | "
                f"{r['epoch_seconds'] / first['epoch_seconds']:.2f}x | "
                f"{r['seconds_per_1000_clicks']:.3f} | {r['validation_seconds']:.1f} | "
                f"{r['peak_rss_after_training_mib']:,.0f} | {r['peak_rss_mib']:,.0f} | "
                f"{r['export_seconds']:.1f} | {r['export_mib']:,.1f} |")
    return "\n".join(lines)


if __name__ == "__main__":  # one point, in the process run_point starts
    import mmrec  # noqa: F401  (Keras 2 before TensorFlow)
    point = measure_point(RunConfig.from_dict(json.loads(sys.argv[1])), Path(sys.argv[2]))
    print("POINT " + json.dumps(point))
