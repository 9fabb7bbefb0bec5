"""``mmrec bench latency``: how fast an exported version answers.

Measured on one exported version, in one process:

* export time of the run (when ``--run`` is given, a fresh version is exported);
* load of the version and its first answer (warm-up included);
* in-process ``Recommender.recommend`` per call: p50 / p99 over many users;
* the SavedModel's ``serving_default`` called from Python: p50 at batch 1, and
  users per second at batch 64;
* for a version with a ranker, both of the first two again with retrieval
  alone (``rerank=False`` and the ``retrieve`` signature), side by side: the
  cost of re-ranking.

Example:

    report = run_latency_benchmark("saved_models/mmrec", calls=500)
    print(format_latency_table(report))
"""

from __future__ import annotations

import platform
import time

import numpy as np


def percentiles(seconds: list[float]) -> dict:
    values = np.asarray(seconds) * 1000.0
    return {"p50_ms": round(float(np.percentile(values, 50)), 3),
            "p99_ms": round(float(np.percentile(values, 99)), 3),
            "mean_ms": round(float(values.mean()), 3)}


def time_calls(call, inputs: list, warm_up: int = 20) -> dict:
    """p50 / p99 / mean milliseconds of ``call(x)`` over ``inputs`` (the first
    ``warm_up`` of them called once before, untimed, with graph optimisation's
    harmless cost-model lines held back)."""
    from mmrec._tf_env import quiet_native_noise
    with quiet_native_noise():
        for value in inputs[:warm_up]:
            call(value)
    seconds = []
    for value in inputs:
        started = time.perf_counter()
        call(value)
        seconds.append(time.perf_counter() - started)
    return percentiles(seconds)


def time_recommend(recommender, users: list[str], k: int, warm_up: int = 20,
                   rerank: bool = True) -> dict:
    """:func:`time_calls` of ``recommender.recommend`` over ``users``."""
    return time_calls(lambda user: recommender.recommend(user, k=k, rerank=rerank), users,
                      warm_up)


def time_signature(signature, requests: list, warm_up: int = 20) -> dict:
    """:func:`time_calls` of one SavedModel signature over ``requests`` (one
    user id each), its scores fetched."""
    return time_calls(lambda request: signature(user_id=request)["scores"].numpy(), requests,
                      warm_up)


def run_latency_benchmark(model_dir: str, *, run: str | None = None, calls: int = 500,
                          k: int = 10) -> dict:
    import tensorflow as tf

    from mmrec.serve.recommender import Recommender
    report: dict = {"model_dir": model_dir, "calls": calls, "k": k,
                    "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}",
                    "date": time.strftime("%Y-%m-%d")}
    if run:
        from mmrec.export.exporter import export_run
        started = time.perf_counter()
        target = export_run(run, model_dir)
        report["export_seconds"] = round(time.perf_counter() - started, 2)
        report["version"] = int(target.name)
    started = time.perf_counter()
    recommender = Recommender.load(model_dir)
    users = list(recommender._version.user_index)
    recommender.recommend(users[0], k=k)
    report["load_and_first_answer_seconds"] = round(time.perf_counter() - started, 2)
    report["items"] = len(recommender._version.item_ids)
    rng = np.random.default_rng(0)
    picks = [users[i] for i in rng.integers(0, len(users), calls)]
    signatures = recommender._version.signatures
    report["reranks"] = "rank_candidates" in signatures
    single = [tf.constant([u]) for u in picks]
    # Both stages and retrieval alone, alternating, so a busy machine slows both alike.
    for rerank in ((True, False) if report["reranks"] else (True,)):
        suffix = "" if rerank else "_retrieval_only"
        report[f"recommend{suffix}"] = time_recommend(recommender, picks, k, rerank=rerank)
        report[f"serving_default_batch_1{suffix}"] = time_signature(
            signatures["serving_default" if rerank else "retrieve"], single)
    serving = signatures["serving_default"]
    batches = [tf.constant(picks[i:i + 64]) for i in range(0, len(picks) - 63, 64)] or [
        tf.constant((picks * 64)[:64])]
    serving(user_id=batches[0])
    started = time.perf_counter()
    for request in batches:
        serving(user_id=request)["scores"].numpy()
    elapsed = time.perf_counter() - started
    report["serving_default_batch_64_users_per_second"] = round(64 * len(batches) / elapsed, 1)
    if report["items"] >= SCANN_MIN_ITEMS:
        report["recommend_scann"] = time_scann(model_dir, picks, k)
    return report


SCANN_MIN_ITEMS = 10_000
"""From this size on, ``recommend`` is timed with a ScaNN index too (smaller
catalogues are searched exactly either way)."""


def time_scann(model_dir: str, users: list[str], k: int) -> dict | str:
    """``recommend`` over ``users`` with the version's items in a ScaNN index
    (or why it could not be timed)."""
    from mmrec.serve.recommender import Recommender
    try:
        import scann  # noqa: F401
    except ImportError as error:
        return f"not timed: {error} (pip install 'mmrec[scann]')"
    recommender = Recommender.load(model_dir, scann_min_items=0)
    return time_recommend(recommender, users, k)


def format_latency_table(report: dict) -> str:
    lines = [f"{report['items']:,} items, k={report['k']}, {report['calls']} calls, "
             f"{report['date']}", "", "| measurement | value |", "|---|---|"]
    if "export_seconds" in report:
        lines.append(f"| export of the run (version {report['version']}) | "
                     f"{report['export_seconds']} s |")
    lines.append(f"| load of the version + first answer | "
                 f"{report['load_and_first_answer_seconds']} s |")
    stages = " (retrieval + ranker)" if report.get("reranks") else ""
    for suffix, label in (("", stages), ("_retrieval_only", " (retrieval only)")):
        if f"recommend{suffix}" not in report:
            continue
        recommend, serving = report[f"recommend{suffix}"], report[
            f"serving_default_batch_1{suffix}"]
        lines += [f"| `Recommender.recommend`{label} p50 / p99 | {recommend['p50_ms']} ms / "
                  f"{recommend['p99_ms']} ms |",
                  f"| `{'retrieve' if suffix else 'serving_default'}` batch 1 p50 / p99 | "
                  f"{serving['p50_ms']} ms / {serving['p99_ms']} ms |"]
    lines.append(f"| `serving_default`{stages} batch 64 | "
                 f"{report['serving_default_batch_64_users_per_second']:,.0f} users/s |")
    scann = report.get("recommend_scann")
    if isinstance(scann, dict):
        lines.append(f"| `Recommender.recommend` with ScaNN p50 / p99 | {scann['p50_ms']} ms / "
                     f"{scann['p99_ms']} ms |")
    elif scann:
        lines.append(f"| `Recommender.recommend` with ScaNN | {scann} |")
    return "\n".join(lines)
