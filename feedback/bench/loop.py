"""``mmrec bench feedback``: the fine-tuning loop measured against a full retrain.

A fine-tuning job is worth running if it brings back most of what a full
retrain would, for a fraction of the cost, without forgetting what the model
knew, and if poisoned feedback cannot hurt users. The simulated shop knows
when tastes moved and how, so this benchmark can set up the change and
measure the answer:

1. Generate a shop whose shoppers change at time T (``shift_at`` of the
   time line): **taste-shift** (half of the users redraw their tastes) or
   **trend** (everyone's weight of the image-only attribute groups triples and
   of the text-only ones falls to a third; 10% of the items exist only after
   T).
2. Train on the clicks before T and publish (version 1); add the new items
   with ``catalogue add`` (version 2), as an operator would.
3. Feed the clicks after T through a real SQLite store, except each user's
   last one (the post-T holdout), and run one fine-tuning job per system
   (attention only at each replay share, attention + ids, all weights). The
   job's wall time includes its gate, export and load test.
4. Retrain from scratch on the same clicks (same config and epochs), timed
   with its export.
5. Score every system on the post-T holdout and on each user's last click
   before T with the history before it (the pre-T holdout: forgetting).
   The stale model is scored twice: with its frozen history, and with fresh
   history (the store's clicks), which needs no training at all.
6. Poison, in the trend scenario: the same job on the clean feed with half of
   its item ids shuffled, and on the clean feed plus a bot clicking one item
   thousands of times; each must be rejected by the gate or leave the post-T
   NDCG@10 within one standard deviation of the clean job's.

Every system ranks the same items for the same queries and excludes what the
user clicked before (also for the frozen-history system, so that the
comparison is of rankings, not of what each system happens to know). On the
pre-T holdout the items that appear only after T are not candidates.

Example:

    report = run_feedback_benchmark("configs/feedback-bench.toml", seeds=[1, 2, 3])
    print(format_feedback_tables(report))
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from mmrec.config import RunConfig, read_toml
from mmrec.data.registry import load_dataset
from mmrec.data.shop import ATTRIBUTES
from mmrec.data.splits import Split, leave_one_out_labels
from mmrec.typed_fields import checked_values

from feedback.finetune.config import TRAIN_SCOPES, FinetuneConfig

logger = logging.getLogger("feedback.bench")
SCENARIOS = ("taste-shift", "trend")
METRIC = "NDCG@10"
STALE_FROZEN, STALE_FRESH, RETRAIN = "stale, frozen history", "stale, fresh history", "full retrain"


@dataclasses.dataclass(frozen=True)
class FeedbackBenchConfig:
    """What the loop benchmark sets up: the ``[feedback_bench]`` table of its TOML.

    The shop itself (size, T) is the ``[data.shop]`` table, the base model's
    training the ``[data]``, ``[model]`` and ``[train]`` tables, and the job
    the ``[finetune]`` table, all in the same file (configs/feedback-bench.toml).

    Example:

        config = FeedbackBenchConfig(scenarios=("trend",), replay_shares=(0.25,),
                                     step_sizes=(3e-5,))

    Attributes:
      scenarios: which of "taste-shift" and "trend" to run.
      shift_share: share of users who redraw their tastes at T (taste-shift).
      trend_weights: every user's taste multipliers from T on, one per
        attribute group in ``mmrec.data.shop.ATTRIBUTES`` order (trend).
      new_item_share: share of the catalogue that exists only after T (trend);
        those items enter through ``catalogue add`` before any job runs.
      replay_shares, step_sizes: the attention-only job is run once per
        pair; the pair whose jobs score best on their own gate holdouts is
        the one judged against the targets.
      scopes: the jobs' ``--train`` scopes; "attention" runs on the grid
        above, the others at ``[finetune]``'s settings.
      poison: run the two poisoned feeds (trend scenario).
      shuffled_item_share: share of the feed's distinct items whose ids are
        permuted among themselves in the first poisoned feed.
      bot_clicks: clicks of the bot on one item in the second poisoned feed.
      k: the versions' export K.
      ranker: publish the base and the retrain with a ranking stage
        (``train_ranker`` over each run, the TOML's ``[ranker]`` table); the
        jobs then fine-tune it too, and every system is scored as its
        version serves, both stages, with retrieval alone beside it.
    """

    scenarios: tuple[str, ...] = SCENARIOS
    shift_share: float = 0.5
    trend_weights: tuple[float, ...] = (1.0, 3.0, 3.0, 1.0, 1 / 3, 1 / 3)
    new_item_share: float = 0.1
    replay_shares: tuple[float, ...] = (0.0, 0.25, 1.0)
    step_sizes: tuple[float, ...] = (3e-5, 3e-4)
    scopes: tuple[str, ...] = ("attention", "attention+ids", "all")
    poison: bool = True
    shuffled_item_share: float = 0.5
    bot_clicks: int = 10_000
    k: int = 10
    ranker: bool = False

    def __post_init__(self) -> None:
        unknown = sorted(set(self.scenarios) - set(SCENARIOS))
        if unknown or not self.scenarios:
            raise ValueError(f"feedback_bench.scenarios must name some of {SCENARIOS}, "
                             f"got {list(self.scenarios)}")
        unknown = sorted(set(self.scopes) - set(TRAIN_SCOPES))
        if unknown or "attention" not in self.scopes:
            raise ValueError(f"feedback_bench.scopes must include 'attention' and name only "
                             f"{TRAIN_SCOPES}, got {list(self.scopes)}")
        if len(self.trend_weights) != len(ATTRIBUTES):
            raise ValueError(f"feedback_bench.trend_weights needs {len(ATTRIBUTES)} values, "
                             f"one per {ATTRIBUTES}")
        if not self.replay_shares or min(self.replay_shares) < 0:
            raise ValueError("feedback_bench.replay_shares must be shares >= 0")
        if not self.step_sizes or min(self.step_sizes) <= 0:
            raise ValueError("feedback_bench.step_sizes must be step sizes > 0")
        if self.bot_clicks < 2 or self.k < 1:
            raise ValueError("feedback_bench.bot_clicks must be >= 2 and k >= 1")


@dataclasses.dataclass
class BenchSettings:
    """Everything one benchmark run reads from its TOML file."""

    run: RunConfig
    shop: dict[str, Any]
    finetune: FinetuneConfig
    bench: FeedbackBenchConfig

    @classmethod
    def from_toml(cls, path: str | os.PathLike, assignments: list[str] = ()
                  ) -> "BenchSettings":
        """Reads ``path``, then applies each ``TABLE.KEY=VALUE`` of ``assignments``."""
        from mmrec.cli import apply_assignments
        document = apply_assignments(read_toml(path), list(assignments))
        try:
            run = RunConfig.from_dict({key: document.get(key, {})
                                       for key in ("data", "model", "train", "ranker")})
            finetune = FinetuneConfig.from_dict(document.get("finetune", {}))
            bench = FeedbackBenchConfig(**checked_values(
                FeedbackBenchConfig, document.get("feedback_bench", {}), "feedback_bench"))
        except (TypeError, ValueError) as error:
            raise ValueError(f"{path}: {error}") from error
        unknown = sorted(set(document) - {"data", "model", "train", "ranker", "finetune",
                                          "feedback_bench"})
        if unknown:
            raise ValueError(f"{path}: unknown table(s) {unknown}")
        shop = dict(run.data.dataset_options.get("shop", {}))
        return cls(run=run, shop=shop, finetune=finetune, bench=bench)


# -- the pieces of one scenario ------------------------------------------------------------
@dataclasses.dataclass
class TimeLine:
    """The rows of the full log on each side of T, and the two holdouts."""

    pre: np.ndarray           # rows before T (the base model's data)
    pre_labels: np.ndarray    # train/valid/test of each pre row (leave-one-out)
    feed: np.ndarray          # rows after T that go through the store
    post_holdout: np.ndarray  # each user's last row after T
    pre_holdout: np.ndarray   # each user's last row before T (the base's test rows)


def cut_time_line(log, t: float) -> TimeLine:
    """Splits the log at ``t`` and picks the holdouts (rows in chronological order)."""
    from mmrec.data.interactions import Interactions
    order = log.chronological_order()
    before = log.timestamp[order] < t
    pre, post = order[before], order[~before]
    pre_log = Interactions.build(users=log.user_ids[log.user[pre]], items=log.item[pre],
                                 timestamps=log.timestamp[pre])
    labels = np.asarray(leave_one_out_labels(pre_log), dtype=object)
    last_post = {}
    for row in post.tolist():
        last_post[int(log.user[row])] = row
    holdout = np.sort(np.fromiter(last_post.values(), np.int64, len(last_post)))
    return TimeLine(pre=pre, pre_labels=labels, feed=post[~np.isin(post, holdout)],
                    post_holdout=holdout, pre_holdout=pre[labels == "test"])


def feed_events(dataset, rows: np.ndarray) -> list[dict]:
    """The store events of log ``rows``: clicks with their ids and times."""
    log, items = dataset.interactions, dataset.catalogue.item_ids
    return [{"user_id": str(log.user_ids[log.user[r]]), "item_id": str(items[log.item[r]]),
             "event": "click", "timestamp": float(log.timestamp[r])} for r in rows.tolist()]


def shuffled_feed(events: list[dict], share: float, seed: int) -> list[dict]:
    """``events`` with ``share`` of their distinct item ids permuted among themselves."""
    rng = np.random.default_rng(seed)
    items = sorted({e["item_id"] for e in events})
    chosen = rng.choice(len(items), size=max(2, round(share * len(items))), replace=False)
    source = [items[i] for i in chosen]
    target = [source[i] for i in rng.permutation(len(source))]
    mapping = dict(zip(source, target))
    return [{**e, "item_id": mapping.get(e["item_id"], e["item_id"])} for e in events]


def bot_feed(events: list[dict], clicks: int, item_id: str, t: float) -> list[dict]:
    """``events`` plus a bot clicking ``item_id`` ``clicks`` times, a second apart from ``t``."""
    bot = [{"user_id": "bot-0001", "item_id": item_id, "event": "click",
            "timestamp": float(t + i)} for i in range(clicks)]
    return events + bot


def holdout_queries(log, rows: np.ndarray, history_length: int, context: np.ndarray | None):
    """Queries for ``rows`` in the full log's index space; histories from the
    ``context`` rows (None: every earlier row), exclusions from every earlier row."""
    from mmrec.evaluate.queries import build_queries
    from mmrec.features.examples import histories
    empty = np.zeros(0, np.int64)
    split = Split(train=empty, valid=empty, test=np.asarray(rows, np.int64),
                  cold_items=np.zeros(int(log.item.max()) + 1, bool), scheme="explicit")
    queries = build_queries(log, split, "test", history_length)
    if context is not None:
        history, mask = histories(log, np.asarray(rows, np.int64), context, history_length)
        queries = dataclasses.replace(queries, history=history, history_mask=mask)
    return queries


def system_ndcg(published, queries, full_item_ids: np.ndarray, full_user_ids: np.ndarray,
                candidates: np.ndarray, rerank: bool = True) -> float:
    """NDCG@10 of a published version on full-space ``queries``, ranking the
    full catalogue's ``candidates`` that the version holds: both stages if
    the version has a ranker (and ``rerank``), as it serves them."""
    from mmrec.evaluate.reranking import retrieve_lists, two_stage_scorer
    from mmrec.evaluate.metrics import evaluate_scorer
    from mmrec.evaluate.model_scores import user_vectors
    tables = published.tables
    position = tables.item_index()
    to_version = np.asarray([position.get(i, -1) for i in full_item_ids.tolist()], np.int64)
    history = to_version[queries.history]
    mask = queries.history_mask & (history >= 0)
    order = np.argsort(~mask, axis=1, kind="stable")       # known items first, newest first
    history = np.take_along_axis(np.where(mask, history, 0), order, axis=1).astype(np.int32)
    mask = np.take_along_axis(mask, order, axis=1)
    user_row = {user: i for i, user in enumerate(tables.user_ids.tolist())}
    users = np.asarray([user_row.get(full_user_ids[u], len(tables.user_ids))
                        for u in queries.user.tolist()], np.int32)
    local = dataclasses.replace(queries, history=history, history_mask=mask, user=users)
    held = (to_version >= 0) & candidates
    num_items = len(full_item_ids)
    if rerank and published.ranker is not None:
        # The version's own item vectors, for the histories as for the ranker (as
        # the gate scores it), not the catalogue encoded again.
        ranker = published.ranker.over(published.item_embeddings, published.gates)
        published.model.item_table.assign(ranker.item_vectors)
        table = ranker.item_vectors.numpy()
        vectors = user_vectors(published.model, local)
        in_version = np.flatnonzero(to_version >= 0)
        never = np.ones(len(table), bool)                   # version items not candidates
        never[to_version[held]] = False
        full_of_version = np.zeros(len(table), np.int64)
        full_of_version[to_version[in_version]] = in_version

        def kept_out(idx: np.ndarray) -> np.ndarray:        # seen before, or not a candidate
            return queries.exclusion_mask(idx, num_items)[:, full_of_version] | never

        lists = retrieve_lists(vectors, table, history, mask, kept_out,
                               min(ranker.config.candidates, len(table)))
        version_scorer = two_stage_scorer(vectors, ranker, lists)
    else:
        vectors = user_vectors(published.model, local)
        table = np.asarray(published.model.refresh_item_table())
        version_scorer = lambda idx: vectors[idx] @ table.T  # noqa: E731

    def scorer(idx: np.ndarray) -> np.ndarray:
        scores = np.full((len(idx), num_items), -np.inf, np.float64)
        scores[:, held] = version_scorer(idx)[:, to_version[held]]
        return scores

    report = evaluate_scorer(scorer, queries, num_items=num_items,
                             cold_items=np.zeros(num_items, bool),
                             train_item_counts=np.ones(num_items), ks=(10,))
    return float(report[METRIC] or 0.0)


def _train_and_publish(folder: Path, config: RunConfig, run: Path, model_dir: Path,
                       k: int, ranker: bool = False) -> dict:
    """Trains a run (and its ranker) and publishes it; the times of each step."""
    from mmrec.export.exporter import export_run
    from mmrec.train.ranker_training import train_ranker
    from mmrec.train.trainer import train
    started = time.perf_counter()
    metrics = train(str(folder), config, run, verbose=0)
    trained = time.perf_counter()
    if ranker:
        train_ranker(run, verbose=False)
    ranked = time.perf_counter()
    export_run(run, model_dir, k=k, rerank=ranker)  # the ranker is what is measured
    return {"train_seconds": round(trained - started, 1),
            **({"ranker_seconds": round(ranked - trained, 1)} if ranker else {}),
            "export_seconds": round(time.perf_counter() - ranked, 1),
            "seconds": round(time.perf_counter() - started, 1),
            "epochs_done": metrics.get("epochs_done")}


def _job(base_versions: Path, folder: Path, events: list[dict], config: FinetuneConfig
         ) -> tuple[dict, Path]:
    """One fine-tuning job on a copy of the base versions, fed ``events`` through
    a fresh SQLite store; returns its summary and its model folder."""
    from feedback.finetune.job import run_finetune
    from feedback.store import FeedbackStore
    shutil.copytree(base_versions, folder)
    with FeedbackStore(f"sqlite:///{folder}.db") as store:
        ingested = store.ingest_batches(events)
        result = run_finetune(store, folder, config)
    report = result.report
    return ({"outcome": result.outcome, "seconds": report.get("seconds"),
             "fit_seconds": (report.get("fit") or {}).get("seconds"),
             "accepted": ingested.accepted, "gate": report.get("gate"),
             "trained_parameters": sum(v["parameters"]
                                       for v in report.get("trained_variables", [])),
             "examples": report.get("examples")}, folder)


def _same_variables(model) -> set[str]:
    """The scopes that train exactly what "attention" trains in ``model`` (e.g.
    "attention+ids" when the model has no id vectors): running them again would
    measure nothing new."""
    from feedback.finetune.job import trained_variables
    def names(scope: str) -> set[str]:
        chosen = trained_variables(model, scope)  # None: every trainable variable
        return {v.name for v in (model.trainable_variables if chosen is None else chosen)}

    attention = names("attention")
    return {scope for scope in TRAIN_SCOPES if scope != "attention" and names(scope) == attention}


def run_scenario(settings: BenchSettings, scenario: str, seed: int, root: Path,
                 progress: Callable[[str], None] = logger.info) -> dict:
    """One scenario on one seed: base, catalogue add, jobs, poison, retrain, scores."""
    from mmrec.bench.catalogue import write_catalogue_folder
    from mmrec.export.catalogue_changes import add_items
    from mmrec.export.publish import load_published

    bench = settings.bench
    options = {**settings.shop, "seed": seed}
    if scenario == "taste-shift":
        options["shift_share"] = bench.shift_share
    else:
        options.update(trend_weights=tuple(bench.trend_weights),
                       new_item_share=bench.new_item_share)
    dataset = load_dataset("shop", options=options)
    truth, log, catalogue = dataset.ground_truth, dataset.interactions, dataset.catalogue
    new_items = (truth.new_items if truth.new_items is not None
                 else np.zeros(len(catalogue), bool))
    line = cut_time_line(log, truth.t_shift)
    base = settings.run
    config = dataclasses.replace(
        base, data=dataclasses.replace(base.data, image_size=catalogue.images.shape[1],
                                       image_channels=catalogue.images.shape[3]),
        train=dataclasses.replace(base.train, image_pretraining="none", seed=seed))
    result: dict = {"scenario": scenario, "seed": seed, "shop": {
        key: (list(v) if isinstance(v, tuple) else v) for key, v in options.items()},
        "rows": {"before_T": int(len(line.pre)), "feed": int(len(line.feed)),
                 "post_T_holdout": int(len(line.post_holdout)),
                 "pre_T_holdout": int(len(line.pre_holdout))},
        "new_items": int(new_items.sum())}

    progress(f"{scenario} seed {seed}: training the base model on the clicks before T")
    write_catalogue_folder(dataset, np.flatnonzero(~new_items), root / "base-data",
                           with_clicks=True, rows=line.pre)
    versions = root / "versions"
    result["base"] = _train_and_publish(root / "base-data", config, root / "base-run",
                                        versions, bench.k, bench.ranker)
    if new_items.any():
        table = write_catalogue_folder(dataset, np.flatnonzero(new_items), root / "new-items",
                                       with_clicks=False)
        started = time.perf_counter()
        add_items(versions, table)
        result["catalogue_add_seconds"] = round(time.perf_counter() - started, 1)
    stale = load_published(versions, task="score")  # what every job starts from

    events = feed_events(dataset, line.feed)
    jobs: dict[str, dict] = {}
    systems: dict[str, Path] = {}
    runs = [(attention_job(share, step), dataclasses.replace(
        settings.finetune, train="attention", replay_share=share, step_size=step))
        for share in bench.replay_shares for step in bench.step_sizes]
    same = _same_variables(stale.model)
    result["same_as_attention"] = sorted(same)
    runs += [(scope, dataclasses.replace(settings.finetune, train=scope))
             for scope in bench.scopes if scope != "attention" and scope not in same]
    for name, job_config in runs:
        progress(f"{scenario} seed {seed}: fine-tuning job {name}")
        jobs[name], folder = _job(versions, root / f"job-{len(jobs)}", events, job_config)
        systems[name] = folder
    if bench.poison and scenario == "trend":
        rng = np.random.default_rng(seed)
        target = str(catalogue.item_ids[rng.integers(len(catalogue))])
        for name, feed in (("poison: half the item ids shuffled",
                            shuffled_feed(events, bench.shuffled_item_share, seed)),
                           (f"poison: a bot clicks one item {bench.bot_clicks:,} times",
                            bot_feed(events, bench.bot_clicks, target, truth.t_shift))):
            progress(f"{scenario} seed {seed}: {name}")
            jobs[name], folder = _job(versions, root / f"job-{len(jobs)}", feed,
                                      settings.finetune)
            systems[name] = folder

    progress(f"{scenario} seed {seed}: full retrain on every click up to the holdout")
    retrain_rows = np.sort(np.concatenate([line.pre, line.feed]))
    labels = dict(zip(line.pre.tolist(), line.pre_labels.tolist()))
    retrain_labels = np.asarray([labels.get(r, "train") for r in retrain_rows.tolist()],
                                dtype=object)
    write_catalogue_folder(dataset, np.arange(len(catalogue)), root / "retrain-data",
                           with_clicks=True, rows=retrain_rows, split_labels=retrain_labels)
    result["retrain"] = _train_and_publish(root / "retrain-data", config, root / "retrain-run",
                                           root / "retrain-versions", bench.k, bench.ranker)

    progress(f"{scenario} seed {seed}: scoring")
    length = config.data.history_length
    post_fresh = holdout_queries(log, line.post_holdout, length, None)
    post_frozen = holdout_queries(log, line.post_holdout, length, line.pre)
    pre = holdout_queries(log, line.pre_holdout, length, None)
    everything = np.ones(len(catalogue), bool)
    score_args = (catalogue.item_ids, log.user_ids)
    def scored(published, post_queries, pre_t: float | None = None) -> dict:
        entry = {"post_T": system_ndcg(published, post_queries, *score_args, everything),
                 "pre_T": (system_ndcg(published, pre, *score_args, ~new_items)
                           if pre_t is None else pre_t)}
        if published.ranker is not None:  # the ranker's share of it
            entry["post_T_retrieval"] = system_ndcg(published, post_queries, *score_args,
                                                    everything, rerank=False)
        return entry

    scores = {STALE_FROZEN: scored(stale, post_frozen)}
    scores[STALE_FRESH] = scored(stale, post_fresh, scores[STALE_FROZEN]["pre_T"])
    for name, folder in [*systems.items(), (RETRAIN, root / "retrain-versions")]:
        published = load_published(folder, task="score")
        scores[name] = {**scored(published, post_fresh), "version": published.number}
    result.update(jobs=jobs, scores=scores)
    return result


# -- the whole benchmark -------------------------------------------------------------------
def run_feedback_benchmark(config: str | os.PathLike | BenchSettings, *,
                           seeds: list[int] = (1, 2, 3), workdir: str | os.PathLike | None = None,
                           progress: Callable[[str], None] = logger.info) -> dict:
    """Every scenario of ``config`` on every seed, and the summary over seeds.

    Args:
      config: configs/feedback-bench.toml or settings read from it.
      seeds: one shop and one set of runs per seed.
      workdir: where data folders, runs, versions and stores go (a temporary
        folder, deleted afterwards, by default).
      progress: called with a line at each step (a run takes minutes).
    """
    settings = config if isinstance(config, BenchSettings) else BenchSettings.from_toml(config)
    runs = []
    with tempfile.TemporaryDirectory(prefix="mmrec-feedback-bench-") as scratch:
        root = Path(workdir or scratch)
        for scenario in settings.bench.scenarios:
            for seed in seeds:
                folder = root / f"{scenario}-seed{seed}"
                if folder.exists():
                    shutil.rmtree(folder)
                folder.mkdir(parents=True)
                runs.append(run_scenario(settings, scenario, seed, folder, progress))
                with open(root / "runs.jsonl", "a") as handle:  # kept if a later run fails
                    handle.write(json.dumps(runs[-1], default=float) + "\n")
    return {"settings": {"run": settings.run.to_dict(),
                         "finetune": dataclasses.asdict(settings.finetune),
                         "bench": dataclasses.asdict(settings.bench)},
            "seeds": list(seeds), "runs": runs, "summary": summarize(runs, settings),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
            "date": time.strftime("%Y-%m-%d")}


def _mean_sd(values: list[float]) -> dict:
    values = [v for v in values if v is not None]
    return {"mean": float(np.mean(values)) if values else None,
            "sd": float(np.std(values, ddof=1)) if len(values) > 1 else None,
            "values": values}


def summarize(runs: list[dict], settings: BenchSettings) -> dict:
    """Means and sample standard deviations over seeds, the chosen replay share,
    and the targets' verdicts."""
    summary: dict = {}
    for scenario in settings.bench.scenarios:
        chosen = [r for r in runs if r["scenario"] == scenario]
        if not chosen:
            continue
        names = list(chosen[0]["scores"])
        systems = {}
        for name in names:
            entry = {part: _mean_sd([r["scores"][name][part] for r in chosen])
                     for part in ("post_T", "pre_T", "post_T_retrieval")
                     if part in chosen[0]["scores"][name]}
            if name in chosen[0]["jobs"]:
                entry["seconds"] = _mean_sd([r["jobs"][name]["seconds"] for r in chosen])
                entry["outcomes"] = [r["jobs"][name]["outcome"] for r in chosen]
                entry["trained_parameters"] = chosen[0]["jobs"][name]["trained_parameters"]
                entry["gate_recent"] = _mean_sd([
                    ((r["jobs"][name]["gate"] or {}).get("candidate") or {}).get("recent")
                    for r in chosen])
            elif name == RETRAIN:
                entry["seconds"] = _mean_sd([r["retrain"]["seconds"] for r in chosen])
            systems[name] = entry
        job = choose_attention_job(chosen, settings)
        summary[scenario] = {"systems": systems, "chosen_job": job,
                             "target": judge_targets(chosen, systems, job, settings),
                             "base_seconds": _mean_sd([r["base"]["seconds"] for r in chosen])}
    return summary


def attention_job(share: float, step: float) -> str:
    """The name of the attention-only job at one replay share and step size."""
    return f"attention, replay {share:g}, step {step:g}"


def choose_attention_job(runs: list[dict], settings: BenchSettings) -> str:
    """The attention-only job (replay share, step size) that scores best on its
    own gate's recent holdout (clicks the job held out of its window:
    validation, never the benchmark's holdouts), among those whose gate saw
    no forgetting on any seed (no fall of the original validation split past
    its tolerance and beyond noise; all of them if none qualifies)."""
    candidates = []
    names = [attention_job(share, step) for share in settings.bench.replay_shares
             for step in settings.bench.step_sizes]
    for name in names:
        gates = [r["jobs"][name]["gate"] or {} for r in runs]
        recent = [((g.get("candidate") or {}).get("recent") or 0.0) for g in gates]
        kept = not any(((g.get("changes") or {}).get("validation") or {}).get("fell")
                       for g in gates)
        candidates.append((name, float(np.mean(recent)), kept))
    pool = [c for c in candidates if c[2]] or candidates
    return max(pool, key=lambda candidate: candidate[1])[0]


def judge_targets(runs: list[dict], systems: dict, job: str,
                  settings: BenchSettings) -> dict:
    """The loop's targets for the chosen attention-only ``job``: the share of
    the retrain's gain it recovers (where that gain exceeds two standard
    deviations), its share of the retrain's wall time, its pre-T drop, and
    whether the poisoned feeds were rejected or harmless."""
    gains_retrain = [r["scores"][RETRAIN]["post_T"] - r["scores"][STALE_FRESH]["post_T"]
                     for r in runs]
    gains_job = [r["scores"][job]["post_T"] - r["scores"][STALE_FRESH]["post_T"] for r in runs]
    retrain_gain, job_gain = _mean_sd(gains_retrain), _mean_sd(gains_job)
    separates = (retrain_gain["sd"] is not None and retrain_gain["mean"] is not None
                 and retrain_gain["mean"] > 2 * retrain_gain["sd"])
    recovered = (job_gain["mean"] / retrain_gain["mean"]
                 if retrain_gain["mean"] not in (None, 0) else None)
    time_share = (systems[job]["seconds"]["mean"] / systems[RETRAIN]["seconds"]["mean"])
    pre_drop = [(r["scores"][STALE_FRESH]["pre_T"] - r["scores"][job]["pre_T"])
                / r["scores"][STALE_FRESH]["pre_T"] for r in runs
                if r["scores"][STALE_FRESH]["pre_T"]]
    result = {"job": job, "retrain_gain": retrain_gain, "job_gain": job_gain,
              "separates": bool(separates), "recovered": recovered,
              "time_share": time_share, "pre_T_relative_drop": _mean_sd(pre_drop),
              "met": bool(separates and recovered is not None and recovered >= 0.8
                          and time_share <= 0.1 and np.mean(pre_drop) <= 0.02)}
    poison = {}
    default_job = attention_job(settings.finetune.replay_share, settings.finetune.step_size)
    clean = systems.get(default_job, systems[job])["post_T"]
    for name, entry in systems.items():
        if not name.startswith("poison"):
            continue
        rejected = all(o == "rejected" for o in entry["outcomes"])
        harmless = (clean["sd"] is not None and entry["post_T"]["mean"] is not None
                    and entry["post_T"]["mean"] >= clean["mean"] - clean["sd"])
        poison[name] = {"outcomes": entry["outcomes"], "post_T": entry["post_T"]["mean"],
                        "clean_post_T": clean["mean"], "clean_sd": clean["sd"],
                        "passed": bool(rejected or harmless)}
    result["poison"] = poison
    return result


def _cell(stats: dict | None, digits: int = 4) -> str:
    if not stats or stats.get("mean") is None:
        return "–"
    if stats.get("sd") is None:
        return f"{stats['mean']:.{digits}f}"
    return f"{stats['mean']:.{digits}f} ± {stats['sd']:.{digits}f}"


def format_feedback_tables(report: dict) -> str:
    """Markdown tables of a report: one per scenario, and the verdicts."""
    lines = [f"seeds {report['seeds']}, {report['machine']}, {report['date']}"]
    for scenario, entry in report["summary"].items():
        ranked = any("post_T_retrieval" in system for system in entry["systems"].values())
        lines += ["", f"### {scenario}", "",
                  "| system | post-T NDCG@10 | " + ("post-T, retrieval alone | " if ranked else "")
                  + "pre-T NDCG@10 | wall time (s) | outcome |",
                  "|---|---|---|---|---|" + ("---|" if ranked else "")]
        base = entry["base_seconds"]
        for name, system in entry["systems"].items():
            seconds = system.get("seconds")
            outcome = ", ".join(sorted(set(system.get("outcomes", []))))
            if name == STALE_FROZEN:
                seconds, outcome = base, "base training, for scale"
            retrieval = f"{_cell(system.get('post_T_retrieval'))} | " if ranked else ""
            lines.append(f"| {name} | {_cell(system['post_T'])} | {retrieval}"
                         f"{_cell(system['pre_T'])} | {_cell(seconds, 0)} | {outcome} |")
        target = entry["target"]
        recovered = (f"{target['recovered']:.0%}" if target["recovered"] is not None else "–")
        lines += ["", f"Chosen on the jobs' own gate holdouts: {entry['chosen_job']}. "
                  f"It recovers {recovered} of "
                  f"the retrain's gain over fresh history (retrain gain "
                  f"{_cell(target['retrain_gain'])}, "
                  f"{'separates' if target['separates'] else 'does not separate'} at 2 sd), in "
                  f"{target['time_share']:.0%} of its wall time, pre-T relative drop "
                  f"{_cell(target['pre_T_relative_drop'], 3)}; target "
                  f"{'met' if target['met'] else 'not met'}."]
        for name, poison in target["poison"].items():
            lines.append(f"- {name}: {', '.join(poison['outcomes'])}; post-T "
                         f"{poison['post_T']:.4f} against clean {poison['clean_post_T']:.4f}"
                         f" (sd {poison['clean_sd'] or 0:.4f}): "
                         f"{'passed' if poison['passed'] else 'FAILED'}")
    return "\n".join(lines)


def plot_feedback(report: dict, path: str | os.PathLike) -> Path:
    """A PNG: post-T and pre-T NDCG@10 of every system, per scenario, with sd bars."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    scenarios = list(report["summary"])
    figure, axes = plt.subplots(len(scenarios), 1, figsize=(10, 4 * len(scenarios)),
                                squeeze=False)
    for axis, scenario in zip(axes[:, 0], scenarios):
        systems = report["summary"][scenario]["systems"]
        names = list(systems)
        x = np.arange(len(names))
        for offset, part, label in ((-0.2, "post_T", "post-T holdout"),
                                    (0.2, "pre_T", "pre-T holdout")):
            means = [systems[n][part]["mean"] or 0 for n in names]
            errors = [systems[n][part]["sd"] or 0 for n in names]
            axis.bar(x + offset, means, 0.4, yerr=errors, label=label, capsize=3)
        axis.set_xticks(x, [n.replace(", ", ",\n").replace(": ", ":\n") for n in names],
                        fontsize=7)
        axis.set_ylabel("NDCG@10")
        axis.set_title(f"{scenario} (seeds {report['seeds']})")
        axis.legend()
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def write_report(report: dict, path: str | os.PathLike) -> None:
    Path(path).write_text(json.dumps(report, indent=2, default=float))
