"""``mmrec bench ann``: ScaNN against brute force on a large catalogue.

A million-item catalogue is built with the structure of trained embeddings:
a Gaussian mixture around the item embeddings of an exported version (each
item replicated, with isotropic noise whose total size is half the median
distance between a trained item and its nearest other item, then
re-normalised), so neighbours cluster as they do in a real catalogue without
collapsing into exact duplicates. Queries are the version's real user vectors. Both searchers answer
the same query batches; ScaNN's recall@10 is measured against brute force's
exact top 10. A uniformly random catalogue is reported too: it has no
structure to exploit and is the worst case for any approximate method.

Example:

    report = run_ann_benchmark("saved_models/mmrec", items=1_000_000)
"""

from __future__ import annotations

import time

import numpy as np

BATCH = 64


def brute_force(items: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    scores = queries @ items.T
    top = np.argpartition(-scores, k, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, top, 1), axis=1)
    return np.take_along_axis(top, order, 1)


def compare(items: np.ndarray, queries: np.ndarray, k: int = 10, **settings) -> dict:
    """ScaNN (``settings``: :class:`ScannIndex`'s leaves, leaves_to_search,
    reorder; its defaults otherwise) against brute force on the same batches."""
    from mmrec.serve.scann_index import ScannIndex
    started = time.perf_counter()
    index = ScannIndex(items, **settings)
    build = time.perf_counter() - started
    batches = [queries[i:i + BATCH] for i in range(0, len(queries), BATCH)]
    started = time.perf_counter()
    exact = np.concatenate([brute_force(items, b, k) for b in batches])
    brute_seconds = (time.perf_counter() - started) / len(batches)
    started = time.perf_counter()
    approximate = np.concatenate([index.search(b, k)[0] for b in batches])
    scann_seconds = (time.perf_counter() - started) / len(batches)
    recall = np.mean([len(set(a) & set(e)) / k for a, e in zip(approximate, exact)])
    return {"items": len(items), "dim": items.shape[1], "queries": len(queries),
            "leaves": index.leaves, "leaves_to_search": index.leaves_to_search,
            "reorder": index.reorder, "batch": BATCH, "build_seconds": round(build, 1),
            "brute_force_ms_per_batch": round(1000 * brute_seconds, 2),
            "scann_ms_per_batch": round(1000 * scann_seconds, 2),
            "speedup": round(brute_seconds / scann_seconds, 1),
            "recall@10": round(float(recall), 4)}


def nearest_neighbour_distance(vectors: np.ndarray, sample: int = 2000) -> float:
    """Median distance from a (sampled) vector to its nearest other vector."""
    picked = vectors[:sample]
    distances = np.sqrt(np.maximum(2 - 2 * picked @ vectors.T, 0))
    distances[np.arange(len(picked)), np.arange(len(picked))] = np.inf
    return float(np.median(distances.min(axis=1)))


def run_ann_benchmark(model_dir: str, *, items: int = 1_000_000, queries: int = 512,
                      random_items: int = 100_000, seed: int = 0) -> dict:
    import tensorflow as tf

    from mmrec.serve.recommender import Recommender
    recommender = Recommender.load(model_dir)
    state = recommender._version
    trained = state.embeddings.astype(np.float32)
    rng = np.random.default_rng(seed)
    users = list(state.user_index)
    picks = [users[i] for i in rng.integers(0, len(users), queries)]
    query_vectors = state.signatures["user_embedding"](
        user_id=tf.constant(picks))["embedding"].numpy()
    noise = 0.5 * nearest_neighbour_distance(trained)
    copies = -(-items // len(trained))
    structured = np.repeat(trained, copies, axis=0)[:items]
    structured += rng.normal(scale=noise / np.sqrt(trained.shape[1]),
                             size=structured.shape).astype(np.float32)
    structured /= np.linalg.norm(structured, axis=1, keepdims=True)
    uniform = rng.normal(size=(random_items, trained.shape[1])).astype(np.float32)
    uniform /= np.linalg.norm(uniform, axis=1, keepdims=True)
    report = {"model_dir": model_dir, "date": time.strftime("%Y-%m-%d"),
              "structured": {"noise": round(noise, 4), "from_items": len(trained),
                             **compare(structured, query_vectors)},
              "uniform_random": compare(uniform, query_vectors)}
    if len(trained) >= TREE_MIN_ITEMS:  # the version's own vectors, as served
        report["trained"] = compare(trained, query_vectors)
        report["trained_frontier"] = settings_frontier(trained, query_vectors)
    return report


TREE_MIN_ITEMS = 10_000
"""Below this, :class:`ScannIndex` searches by brute force (no tree to measure)."""
FRONTIER = [(divisor, reorder) for divisor in (20, 10, 5) for reorder in (200, 1000)]
"""Settings tried on a version's own vectors: leaves_to_search = leaves / divisor,
and the candidates re-scored exactly."""


def settings_frontier(items: np.ndarray, queries: np.ndarray) -> list[dict]:
    """Recall and speed-up of each :data:`FRONTIER` setting on ``items``."""
    from mmrec.serve.scann_index import default_leaves
    leaves = default_leaves(len(items))
    return [compare(items, queries, leaves_to_search=max(1, leaves // divisor),
                    reorder=reorder) for divisor, reorder in FRONTIER]


def format_ann_table(report: dict) -> str:
    lines = ["| catalogue | items x dim | leaves searched / reorder | build s | brute force ms "
             "/ 64 queries | ScaNN ms / 64 queries | speed-up | recall@10 |",
             "|---|---|---|---|---|---|---|---|"]
    rows = [(name.replace("_", " "), report[name])
            for name in ("trained", "structured", "uniform_random") if name in report]
    rows += [("trained", row) for row in report.get("trained_frontier", [])]
    for name, row in rows:
        searched = (f"{row['leaves_to_search']} of {row['leaves']} / {row['reorder']}"
                    if row["items"] >= TREE_MIN_ITEMS else "brute force")
        lines.append(f"| {name} | {row['items']:,} x {row['dim']} | {searched} | "
                     f"{row['build_seconds']} | {row['brute_force_ms_per_batch']} | "
                     f"{row['scann_ms_per_batch']} | {row['speedup']}x | {row['recall@10']} |")
    return "\n".join(lines)
