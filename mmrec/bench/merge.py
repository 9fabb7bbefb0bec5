"""One quality table from benchmark reports that each ran a part of it.

A reporting table can be too long for one sitting: on 2 CPU cores one seed of
the shop's full model takes most of an hour at 10 epochs, and the table wants
three seeds, the ablations and the cold-start runs. ``mmrec bench quality``
therefore runs any subset of seeds, systems and tables, and this module joins
the parts, as if one command had run them all:

- The parts must describe the same benchmark: the same data set, config,
  epochs, share of cold items and the same code (the source fingerprint of
  :mod:`mmrec.bench.provenance`; the commit may differ, say by a docs change).
  Anything else is refused with the file and the field that differ.
- A system trained per seed (the model, its ablations, the rankers, the TFRS
  baseline) gathers its seeds from every part, in seed order, and its mean,
  sample standard deviation and 95% interval are computed again over all of
  them. A seed measured in two parts is refused: it would count twice.
- A system that learns nothing from a seed (most popular, EASE, TF-IDF, the
  shop's references) must give the same numbers in every part that ran it.

Example:

    parts = [json.load(open(path)) for path in ("shop-11.json", "shop-12.json")]
    report = merge_quality_reports(parts, sources=["shop-11.json", "shop-12.json"])
    print(format_quality_table(report))
"""

from __future__ import annotations

from mmrec.bench.quality import TABLES, summarise

# What every part must share; a report written before a field was recorded
# cannot be checked for it and is refused.
SAME = ("dataset", "epochs", "config", "cold_item_share")
# Fields of a per-seed system that hold one value per seed, in seed order.
PER_SEED = ("runs", "valid_runs", "epochs_done", "probes", "best_epochs")
# Fields that describe the system itself and must agree between parts.
DESCRIBE = ("model_changes", "ranker", "retriever")


class ReportMismatchError(ValueError):
    """Two parts do not describe the same benchmark, or both measured one seed."""


def merge_quality_reports(reports: list[dict], sources: list[str] | None = None) -> dict:
    """One quality report (the shape ``run_quality_benchmark`` returns) from
    parts of it; ``sources`` name the parts in error messages and in the
    merged report's ``merged_from``."""
    if not reports:
        raise ValueError("merge: no reports given")
    sources = list(sources or [f"report {i + 1}" for i in range(len(reports))])
    first, first_source = reports[0], sources[0]
    for report, source in zip(reports, sources):
        for key in SAME + ("code",):
            if key not in report:
                raise ReportMismatchError(
                    f"{source}: has no {key!r}; it was written by an mmrec that did not "
                    f"record it, so it cannot be checked against the other parts")
        for key in SAME:
            if report[key] != first[key]:
                raise ReportMismatchError(
                    f"{source}: {key} differs from {first_source}'s "
                    f"({_difference(report[key], first[key])})")
        if report["code"]["source"] != first["code"]["source"]:
            raise ReportMismatchError(
                f"{source}: measured with other code than {first_source} (commit "
                f"{report['code']['commit']} against {first['code']['commit']}; the "
                f"mmrec sources differ)")
    merged = {key: first[key] for key in SAME}
    merged.update(
        seeds=sorted({seed for report in reports for seed in report["seeds"]}),
        machine=_joined(report["machine"] for report in reports),
        date=_joined(report["date"] for report in reports),
        code=dict(first["code"], commit=_joined(r["code"]["commit"] or "?" for r in reports),
                  changed=any(r["code"]["changed"] for r in reports)),
        tables=[table for table in TABLES
                if any(table in report.get("tables", TABLES) for report in reports)],
        seconds=round(sum(report.get("seconds", 0.0) for report in reports), 1),
        merged_from=sources)
    for table in TABLES:
        merged[table] = {}
        names = list(dict.fromkeys(name for report in reports for name in report.get(table, {})))
        for name in names:
            parts = [(report[table][name], source) for report, source in zip(reports, sources)
                     if name in report.get(table, {})]
            if "runs" in parts[0][0]:
                merged[table][name] = _merge_seeded(table, name, parts)
            else:
                merged[table][name] = _merge_fixed(table, name, parts)
    return merged


def _merge_seeded(table: str, name: str, parts: list[tuple[dict, str]]) -> dict:
    """A system trained once per seed: its seeds from every part, summarised again."""
    first, first_source = parts[0]
    by_seed: dict[int, tuple[dict, str, int]] = {}
    for result, source in parts:
        for key in DESCRIBE:
            if result.get(key) != first.get(key):
                raise ReportMismatchError(
                    f"{source}: {table} / {name}: {key} differs from {first_source}'s")
        seeds = result.get("seeds")
        if seeds is None or len(seeds) != len(result["runs"]):
            raise ReportMismatchError(f"{source}: {table} / {name}: the runs do not name "
                                      f"their seeds, so parts cannot be joined")
        for position, seed in enumerate(seeds):
            if seed in by_seed:
                raise ReportMismatchError(
                    f"{table} / {name}: seed {seed} was measured in both {by_seed[seed][1]} "
                    f"and {source}; a seed may count once")
            by_seed[seed] = (result, source, position)
    order = sorted(by_seed)
    merged = {key: value for key, value in first.items()
              if key not in PER_SEED + ("valid", "test", "seeds", "train_seconds",
                                        "candidate_recall", "lists_from")}
    merged["seeds"] = order
    for key in PER_SEED:
        if all(key in result for result, _ in parts):
            merged[key] = [by_seed[seed][0][key][by_seed[seed][2]] for seed in order]
    merged["test"] = summarise(merged["runs"])
    if "valid_runs" in merged:
        merged["valid"] = summarise(merged["valid_runs"])
    if all("candidate_recall" in result for result, _ in parts):
        merged["candidate_recall"] = {
            part: [by_seed[seed][0]["candidate_recall"][part][by_seed[seed][2]]
                   for seed in order] for part in first["candidate_recall"]}
    if all("lists_from" in result for result, _ in parts):
        merged["lists_from"] = sorted({how for result, _ in parts for how in result["lists_from"]})
    if all("train_seconds" in result for result, _ in parts):  # a mean per seed
        merged["train_seconds"] = (sum(result["train_seconds"] * len(result["seeds"])
                                       for result, _ in parts) / len(order))
    return merged


def _merge_fixed(table: str, name: str, parts: list[tuple[dict, str]]) -> dict:
    """A system that learns nothing from a seed: every part must agree."""
    first, first_source = parts[0]
    for result, source in parts[1:]:
        for key in ("valid", "test"):
            if result.get(key) != first.get(key):
                raise ReportMismatchError(
                    f"{source}: {table} / {name}: {key} metrics differ from {first_source}'s "
                    f"although {name} learns nothing from the seed "
                    f"({_difference(result.get(key), first.get(key))})")
    return first


def _difference(value, other, path: str = "") -> str:
    """The first place where two JSON values differ, for an error message."""
    if isinstance(value, dict) and isinstance(other, dict):
        for key in sorted(set(value) | set(other), key=str):
            if value.get(key) != other.get(key):
                return _difference(value.get(key), other.get(key), f"{path}.{key}".lstrip("."))
    return f"{path or 'value'}: {value!r} against {other!r}"


def _joined(values) -> str:
    return ", ".join(dict.fromkeys(str(value) for value in values))
