"""``mmrec bench live-history``: what reading the store costs a recommendation.

``Recommender.recommend`` with the feedback store as history source asks the
store for the user's clicks since the version's data on every call. This
times it side by side with the Recommender alone, on one exported version
(the MovieLens catalogue in docs/BENCHMARKS.md), in one process: each of
``calls`` requests picks a random known user, and ``clicks_per_user`` recent
clicks per user sit in the store. Targets (issue 13): p50 at most 2 ms, p99
at most 10 ms, on SQLite and on PostgreSQL.

Example:

    report = run_live_history_benchmark("saved_models/mmrec", ["sqlite:///f.db"])
    print(format_live_history_table(report))
"""

from __future__ import annotations

import contextlib
import os
import platform
import time

import numpy as np


def run_live_history_benchmark(model_dir: str, store_urls: list[str], *, calls: int = 2000,
                               clicks_per_user: int = 5, k: int = 10, seed: int = 0) -> dict:
    """Times ``recommend`` without a history source and with each store
    (``"postgresql"`` in ``store_urls`` starts a private local server)."""
    import mmrec  # noqa: F401  (Keras 2 before TensorFlow)
    from mmrec.bench.latency import time_recommend
    from mmrec.serve.recommender import Recommender

    from feedback.store import FeedbackStore
    alone = Recommender.load(model_dir)
    version = alone._version
    users = list(version.user_index)
    items = version.item_ids.astype(str).tolist()
    rng = np.random.default_rng(seed)
    picks = [users[i] for i in rng.integers(0, len(users), calls)]
    start = (version.data_until or time.time() - 86_400) + 60
    events = [{"user_id": user, "item_id": items[int(rng.integers(len(items)))],
               "timestamp": start + n} for n, user in enumerate(
                   u for u in users for _ in range(clicks_per_user))]

    def timed(recommender) -> dict:
        return time_recommend(recommender, picks, k, warm_up=50)

    report = {"model_dir": str(model_dir), "items": len(items), "users": len(users),
              "calls": calls, "clicks_per_user": clicks_per_user, "k": k,
              "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
              "date": time.strftime("%Y-%m-%d"), "results": {"no store": timed(alone)}}
    for url in store_urls:
        with contextlib.ExitStack() as stack:
            if url == "postgresql":
                from feedback.store.postgres_server import LocalPostgres
                url = stack.enter_context(LocalPostgres()).create_database("live_history")
            store = stack.enter_context(FeedbackStore(url))
            store.ingest_batches(events)
            with_store = Recommender.load(model_dir, history_source=store)
            report["results"][store.backend] = {**timed(with_store),
                                                "events_in_store": store.count()}
    return report


def format_live_history_table(report: dict) -> str:
    lines = [f"{report['items']:,} items, {report['users']:,} users, {report['calls']:,} calls, "
             f"k={report['k']}, {report['clicks_per_user']} recent clicks per user in the store, "
             f"{report['date']}", "",
             "| history source | p50 | p99 |", "|---|---|---|"]
    for name, row in report["results"].items():
        lines.append(f"| {name} | {row['p50_ms']} ms | {row['p99_ms']} ms |")
    return "\n".join(lines)
