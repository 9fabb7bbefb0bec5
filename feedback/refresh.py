"""Refreshing a published version's frozen tables from the store, without training.

TF Serving cannot call the store, so ``serving_default`` scores a user on the
history frozen in the version. ``refresh_version`` publishes the next version
with that history, the seen items and the popularity brought up to date with
every click the store holds after the version's data (``data_until``), and
without the users erased from the store since: same weights, same item
vectors, fresher tables. The Python API with the store as history source does
not need it; TF Serving's ``serving_default`` does.

Example:

    with FeedbackStore(url) as store:
        version_dir, report = refresh_version(store, "saved_models/mmrec")
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from mmrec.export.publish import load_published, publish


def refresh_version(store, model_dir: str | os.PathLike) -> tuple[Path, dict]:
    """Publishes the next version with the store's newer clicks and erasures.

    Returns the new version's folder and a report (clicks merged, users
    erased, clicks skipped because their item is not in the version).
    """
    live = load_published(model_dir, task="refresh")
    item_index = live.tables.item_index()
    events = store.history_events_after(live.tables.data_until)
    kept = [e for e in events if e.item_id in item_index]
    known = set(live.tables.user_ids.tolist())
    erased = tuple(u for u in store.forgotten_users() if u in known)
    tables = live.tables.with_events(
        [e.user_id for e in kept], np.asarray([item_index[e.item_id] for e in kept], np.int64),
        np.asarray([e.timestamp for e in kept], np.float64), erased_users=erased)
    carried = {key: live.manifest[key] for key in ("feedback",) if key in live.manifest}
    target = publish(live.model, live.features, tables, live.config, model_dir, k=live.k,
                     data=live.data, split=live.split, item_embeddings=live.item_embeddings,
                     gates=live.gates, extra=carried, ranker=live.ranker,
                     lineage={"from": "version", "version": live.number, "change": "refresh",
                              "clicks": len(kept), "erased_users": len(erased)})
    return target, {"clicks": len(kept), "erased_users": len(erased),
                    "skipped_unknown_items": len(events) - len(kept)}
