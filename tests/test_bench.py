"""The benchmark harness itself: systems, tables and the partial report."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mmrec.bench.quality import format_quality_table, run_quality_benchmark
from mmrec.config import DataConfig, RunConfig

SHOP = {"num_items": 300, "num_users": 100, "num_clicks": 3000}


def test_quality_benchmark_runs_the_baselines_and_writes_json(tmp_path):
    path = tmp_path / "report.json"
    systems = ("most popular", "EASE", "oracle", "true attributes", "content TF-IDF")
    report = run_quality_benchmark("shop", seeds=(1,), systems=systems,
                                   base=RunConfig(data=DataConfig(dataset_options={"shop": SHOP})),
                                   cold_item_share=0.1, partial_json=str(path))
    assert set(report["main"]) == set(systems)
    assert json.loads(path.read_text())["main"].keys() == report["main"].keys()
    oracle = report["main"]["oracle"]["test"]["NDCG@10"]
    assert oracle > 2 * report["main"]["most popular"]["test"]["NDCG@10"]
    assert 0 < report["main"]["true attributes"]["test"]["NDCG@10"] < oracle
    for name in systems:  # every system is reported on validation too
        assert 0 <= report["main"][name]["valid"]["NDCG@10"] <= 1
    tfidf = report["main"]["content TF-IDF"]
    assert tfidf["decay"] and tfidf["valid"]["NDCG@10"] == max(tfidf["decay"].values())
    table = format_quality_table(report)
    assert "| oracle |" in table and "| EASE |" in table
    # the content scorer is the one system of the cold table that needs no training
    assert set(report["cold_start"]) == {"content TF-IDF"}
    cold = report["cold_start"]["content TF-IDF"]["test"]["cold"]
    assert cold["queries"] > 0 and cold["Recall@20"] > 0


def test_summaries_give_the_sample_deviation_and_the_interval_of_the_mean():
    from mmrec.bench.quality import mean_and_interval, summarise

    one = mean_and_interval([0.5])
    assert one["mean"] == 0.5 and one["std"] is None and one["ci95"] is None
    three = mean_and_interval([0.1, 0.2, 0.3])
    assert three["std"] == pytest.approx(0.1)                   # n - 1, not n
    assert three["ci95"] == pytest.approx(4.303 * 0.1 / 3 ** 0.5, rel=1e-4)  # t, 2 degrees of freedom
    runs = [{"NDCG@10": v, "cold": {"Recall@20": v / 2}} for v in (0.1, 0.2, 0.3)]
    summary = summarise(runs)
    assert summary["seeds"] == 3 and summary["NDCG@10"]["mean"] == pytest.approx(0.2)
    assert summary["cold Recall@20"]["mean"] == pytest.approx(0.1)
    from mmrec.bench.quality import _cell
    assert _cell(summary["NDCG@10"], interval=True) == "0.2000 ± 0.1000 [-0.0484, 0.4484]"


@pytest.mark.parametrize("df, t", [(1, 12.706), (2, 4.303), (3, 3.182), (11, 2.201),
                                   (29, 2.045), (30, 2.042), (40, 2.021), (60, 2.000),
                                   (120, 1.980), (1000, 1.962)])
def test_the_interval_uses_students_t_for_every_number_of_seeds(df, t):
    from mmrec.evaluate.intervals import t_quantile
    # two-sided 95% quantiles, from the t table
    assert t_quantile(0.975, df) == pytest.approx(t, abs=6e-4)


@pytest.mark.parametrize("df", [1, 2, 3, 7, 30, 299, 300, 301, 5000])
def test_the_t_quantile_inverts_the_t_distribution(df):
    from mmrec.evaluate.intervals import t_cdf, t_quantile
    for p in (0.6, 0.95, 0.975, 0.999):
        q = t_quantile(p, df)
        assert t_cdf(q, df) == pytest.approx(p, abs=1e-8), (p, df)
        assert t_quantile(1 - p, df) == -q       # symmetric
    assert t_cdf(1.0, 1) == pytest.approx(0.75)  # Cauchy: arctan(1)/pi + 1/2
    assert t_cdf(0.0, df) == 0.5


@pytest.mark.slow
def test_throughput_benchmark_times_each_precision_with_xla_on_and_off():
    from mmrec.bench.throughput import format_throughput_table, run_throughput_benchmark
    from mmrec.config import DataConfig, ModelConfig, RunConfig

    base = RunConfig(data=DataConfig(batch_size=64, history_length=4),
                     model=ModelConfig(embedding_dim=16, token_dim=16))
    report = run_throughput_benchmark("movielens-100k", steps=2, base=base,
                                      precisions=("float32", "mixed_bfloat16"))
    settings = {(r["model"], r["precision"], r["jit_compile"]) for r in report["results"]}
    assert settings == {(model, precision, jit) for model in ("mmrec (full)", "TFRS two-tower")
                        for precision in ("float32", "mixed_bfloat16") for jit in (False, True)}
    for row in report["results"]:
        assert row["examples_per_second"] > 0
        if not row["jit_compile"]:
            assert row["xla_speedup"] == 1.0
    assert "| mmrec (full) | mixed_bfloat16 | on |" in format_throughput_table(report)


def test_seed_lists_are_read_or_refused_by_name(capsys):
    from mmrec.cli import main, parse_seeds

    assert parse_seeds("11, 12,13") == (11, 12, 13)
    assert main(["bench", "quality", "--dataset", "shop", "--seeds", "1,x"]) == 2
    assert "--seeds '1,x': expected comma-separated whole numbers" in capsys.readouterr().err
    assert main(["bench", "feedback", "--seeds", ","]) == 2
    assert "--seeds: give at least one seed" in capsys.readouterr().err
    assert main(["bench", "quality", "--dataset", "shop", "--tables", "cold"]) == 2
    assert "--tables 'cold': expected main, cold-start" in capsys.readouterr().err


def test_throughput_command_refuses_an_unknown_precision(capsys):
    from mmrec.cli import main

    assert main(["bench", "throughput", "--dataset", "movielens-100k",
                 "--precisions", "float32,float8"]) == 2
    assert "float8" in capsys.readouterr().err


@pytest.mark.slow
def test_quality_benchmark_trains_the_tfrs_baseline_and_each_ablation():
    from mmrec.bench.quality import ABLATIONS
    from mmrec.config import DataConfig, ModelConfig, RunConfig

    base = RunConfig(data=DataConfig(batch_size=64, history_length=4, max_text_tokens=12,
                                     vocab_size=200, dataset_options={"shop": SHOP}),
                     model=ModelConfig(embedding_dim=16, token_dim=16, image_channels=(8,)))
    ablations = ("text only", "image only", "concat fusion", "mean pooling", "no item id")
    report = run_quality_benchmark("shop", seeds=(1,), epochs=1, base=base,
                                   systems=("TFRS two-tower",) + ablations, cold_item_share=0.1)
    assert set(report["main"]) == {"TFRS two-tower", *ablations}
    for name in ablations:
        result = report["main"][name]
        assert result["model_changes"] == ABLATIONS[name] != {}
        assert result["train_seconds"] > 0 and len(result["runs"]) == 1
        assert 0.0 <= result["test"]["NDCG@10"]["mean"] <= 1.0
        assert 0.0 <= result["valid"]["NDCG@10"]["mean"] <= 1.0
        # the shop knows its truth: every model is probed against it
        probes = result["probes"][0]
        assert set(probes["items"]) == {"category", "shade", "pattern", "fit", "brand",
                                        "material"}
        assert all(0.0 <= p["accuracy"] <= 1.0 for p in probes["items"].values())
        assert probes["users"]["r2"] <= 1.0
    assert 0.0 <= report["main"]["TFRS two-tower"]["test"]["NDCG@10"]["mean"] <= 1.0
    # the cold-start table trains the id-only baseline and the full model only
    assert set(report["cold_start"]) == {"TFRS two-tower"}
    assert report["cold_start"]["TFRS two-tower"]["test"]["cold Recall@20"]["mean"] >= 0.0
    table = format_quality_table(report)
    for name in ("TFRS two-tower", *ablations):
        assert f"| {name} |" in table


@pytest.mark.slow  # a training run for a bookkeeping rule
def test_an_ablation_equal_to_the_full_model_is_not_trained_twice():
    from mmrec.config import DataConfig, ModelConfig, RunConfig

    base = RunConfig(data=DataConfig(batch_size=64, history_length=4, max_text_tokens=12,
                                     vocab_size=200, dataset_options={"shop": SHOP}),
                     model=ModelConfig(embedding_dim=16, token_dim=16, image_channels=(8,),
                                       item_id_embedding=False))
    report = run_quality_benchmark("shop", seeds=(1,), epochs=1, base=base,
                                   systems=("mmrec (full)", "no item id"), cold_item_share=0)
    assert set(report["main"]) == {"mmrec (full)"}
    assert report["main"]["mmrec (full)"]["test"]["NDCG@10"]["mean"] >= 0


@pytest.mark.slow
def test_quality_benchmark_reranks_the_full_models_top_n_with_the_ranker_and_its_ablation():
    from mmrec.bench.quality import RANKERS
    from mmrec.config import ModelConfig, RankerConfig, TrainConfig

    from mmrec.data.splits import SplitConfig

    # the config's own split settings reach the benchmark's split: here the
    # ranker's lists come from clicks the retriever did not train on
    base = RunConfig(data=DataConfig(batch_size=64, history_length=4, max_text_tokens=8,
                                     vocab_size=200, dataset_options={"shop": SHOP},
                                     split=SplitConfig(ranker_clicks=2)),
                     model=ModelConfig(embedding_dim=16, token_dim=16, text_layers=0,
                                       image_channels=(8,)),
                     train=TrainConfig(jit="off"),
                     ranker=RankerConfig(candidates=30, epochs=1, hidden_units=(16,),
                                         batch_size=128))
    report = run_quality_benchmark("shop", seeds=(1,), epochs=1, base=base,
                                   systems=tuple(RANKERS), cold_item_share=0)
    # the retriever is trained for the rankers but not reported when not asked for
    assert set(report["main"]) == set(RANKERS)
    for name, changes in RANKERS.items():
        result = report["main"][name]
        assert result["ranker"]["candidates"] == 30
        assert result["ranker"]["attention"] == changes.get("attention", "candidate")
        assert result["best_epochs"] == [1] and result["seeds"] == [1]
        assert result["lists_from"] == ["held-out ranker clicks"]
        for part in ("valid", "test"):
            assert 0.0 <= result[part]["NDCG@10"]["mean"] <= 1.0
            assert 0.0 < result["candidate_recall"][part][0] < 1.0
    table = format_quality_table(report)
    assert "| mmrec + ranker |" in table and "| mmrec + ranker (mean history) |" in table


@pytest.mark.slow  # four training runs in fresh processes
def test_scale_benchmark_measures_each_point_in_its_own_process():
    from mmrec.bench.scale import format_scale_tables, run_scale_benchmark
    from mmrec.config import ModelConfig, TrainConfig
    base = RunConfig(data=DataConfig(batch_size=64, history_length=4, max_text_tokens=8,
                                     vocab_size=200),
                     model=ModelConfig(embedding_dim=16, token_dim=16, text_layers=0,
                                       image_channels=(8, 8), image_grid=2),
                     train=TrainConfig(jit="off", image_pretraining="outside-catalogue"))
    report = run_scale_benchmark((200, 400), clicks=1500, clicks_per_item=5, base=base,
                                 picture_size=16, picture_channels=3, epochs=1)
    rows = report["rows"]
    assert [(r["series"], r["items"], r["clicks"]) for r in rows] == [
        ("same clicks", 200, 1500), ("same clicks", 400, 1500),
        ("clicks in proportion", 200, 1000), ("clicks in proportion", 400, 2000)]
    for row in rows:
        assert row["users"] == row["clicks"] // 50 and row["epochs"] == 1
        assert 0 < row["training_examples"] < row["clicks"]  # validation and test held out
        assert row["epoch_seconds"] > 0 and row["validation_seconds"] > 0
        assert row["seconds_per_1000_clicks"] == pytest.approx(
            1000 * row["epoch_seconds"] / row["training_examples"], rel=0.02)
        assert 0 < row["peak_rss_after_training_mib"] <= row["peak_rss_mib"]
        assert row["export_seconds"] > 0 and row["export_mib"] > 0
    # the larger catalogue's version holds more (its item vectors and pictures)
    assert rows[1]["export_mib"] > rows[0]["export_mib"]
    table = format_scale_tables(report)
    assert report["pictures"] == "16x16x3" and "**clicks in proportion**" in table
    assert "| 400 | 1,500 |" in table


def test_scale_benchmark_refuses_catalogues_the_photos_cannot_fill():
    from mmrec.bench.scale import run_scale_benchmark
    with pytest.raises(ValueError, match="10..70000"):
        run_scale_benchmark((5000, 80000))


def test_the_shop_dresses_its_photos_at_a_users_picture_size():
    from mmrec.data.shop import ShopConfig, generate_shop
    config = ShopConfig(num_items=100, num_users=20, num_clicks=200)
    grey = generate_shop(config)
    dressed = generate_shop(ShopConfig(**{**config.__dict__, "picture_size": 32,
                                          "picture_channels": 3}))
    assert grey.catalogue.images.shape == (100, 28, 28, 1)
    assert dressed.catalogue.images.shape == (100, 32, 32, 3)
    # the same shop: same items and clicks, only the pictures differ
    assert list(dressed.catalogue.item_ids) == list(grey.catalogue.item_ids)
    assert len(dressed.interactions) == len(grey.interactions)
    # a picture is its photo, resized and tinted: shrunk back, each channel follows it
    from PIL import Image
    photo = grey.catalogue.images[0, ..., 0].astype(float)
    for channel in range(3):
        back = np.asarray(Image.fromarray(dressed.catalogue.images[0, ..., channel])
                          .resize((28, 28), Image.Resampling.BILINEAR)).astype(float)
        assert np.corrcoef(photo.ravel(), back.ravel())[0, 1] > 0.95
    outside, labels = dressed.outside_pictures()
    assert outside.shape[1:] == (32, 32, 3) and len(outside) == len(labels) == 70_000 - 100
    with pytest.raises(ValueError, match="picture_channels"):
        ShopConfig(picture_channels=2)


def test_quality_benchmark_refuses_an_unknown_system_before_anything_runs():
    with pytest.raises(ValueError, match=r"unknown system\(s\) \['EAES'\].*'EASE'"):
        run_quality_benchmark("shop", seeds=(1,), systems=("most popular", "EAES"),
                              base=RunConfig(data=DataConfig(dataset_options={"shop": SHOP})))
    with pytest.raises(ValueError, match=r"tables must be among \['main', 'cold_start'\]"):
        run_quality_benchmark("shop", seeds=(1,), tables=("cold",))


def test_reports_of_single_seeds_merge_into_the_report_of_both(tmp_path, capsys):
    import copy

    from mmrec.bench.merge import ReportMismatchError, merge_quality_reports
    from mmrec.cli import main

    systems = ("most popular", "EASE", "TFRS two-tower")
    kwargs = dict(cold_item_share=0.1,
                  base=RunConfig(data=DataConfig(dataset_options={"shop": SHOP})))
    parts = [run_quality_benchmark("shop", seeds=(seed,), systems=systems, tables=("main",),
                                   **kwargs) for seed in (2, 1)]
    both = run_quality_benchmark("shop", seeds=(1, 2), systems=systems, tables=("main",),
                                 **kwargs)
    assert both["cold_start"] == {} and both["tables"] == ["main"]
    cold = run_quality_benchmark("shop", seeds=(1, 2), systems=("TFRS two-tower",),
                                 tables=("cold_start",), **kwargs)
    assert cold["main"] == {} and set(cold["cold_start"]) == {"TFRS two-tower"}
    merged = merge_quality_reports(parts + [cold], sources=["seed2.json", "seed1.json", "cold"])
    assert merged["seeds"] == [1, 2] and merged["merged_from"] == ["seed2.json", "seed1.json",
                                                                   "cold"]
    assert merged["tables"] == ["main", "cold_start"]
    assert merged["cold_start"]["TFRS two-tower"] == cold["cold_start"]["TFRS two-tower"]
    assert merged["code"]["source"] == both["code"]["source"]
    for name in ("most popular", "EASE"):  # nothing learned from a seed: taken as they are
        assert merged["main"][name]["test"] == both["main"][name]["test"]
    tfrs, tfrs_both = merged["main"]["TFRS two-tower"], both["main"]["TFRS two-tower"]
    assert tfrs["seeds"] == [1, 2]  # in seed order, whichever part came first
    for part in ("valid", "test"):  # mean, sd and interval over both seeds, computed again
        for key in ("mean", "std", "ci95"):
            assert tfrs[part]["NDCG@10"][key] == pytest.approx(
                tfrs_both[part]["NDCG@10"][key], abs=1e-9)
    assert tfrs["test"]["NDCG@10"]["n"] == 2

    # parts of different benchmarks are refused with the field that differs
    other = copy.deepcopy(parts[1])
    other["config"]["train"]["learning_rate"] *= 2
    with pytest.raises(ReportMismatchError, match=r"b\.json: config differs .*"
                                                  r"train\.learning_rate"):
        merge_quality_reports([parts[0], other], sources=["a.json", "b.json"])
    other = copy.deepcopy(parts[1])
    other["code"]["source"] = "0" * 16
    with pytest.raises(ReportMismatchError, match="other code"):
        merge_quality_reports([parts[0], other])
    with pytest.raises(ReportMismatchError, match="seed 2 was measured in both"):
        merge_quality_reports([parts[0], parts[0]], sources=["a.json", "a-again.json"])
    other = copy.deepcopy(parts[1])
    other["main"]["EASE"]["test"]["NDCG@10"] += 0.01
    with pytest.raises(ReportMismatchError, match="EASE: test metrics differ"):
        merge_quality_reports([parts[0], other])
    del other["config"]
    with pytest.raises(ReportMismatchError, match="has no 'config'"):
        merge_quality_reports([parts[0], other])

    # the command line: parts in, one table and one JSON report out
    paths = []
    for report in parts:
        paths.append(tmp_path / f"seed{report['seeds'][0]}.json")
        paths[-1].write_text(json.dumps(report))
    out = tmp_path / "merged.json"
    assert main(["bench", "merge", *map(str, paths), "--json", str(out)]) == 0
    assert "| TFRS two-tower |" in capsys.readouterr().out
    assert json.loads(out.read_text())["main"]["TFRS two-tower"]["seeds"] == [1, 2]
    assert main(["bench", "merge", str(paths[0]), str(paths[0])]) == 2
    assert "seed 2 was measured in both" in capsys.readouterr().err


def test_the_source_fingerprint_follows_the_code_not_the_commit(tmp_path):
    from mmrec.bench.provenance import code_provenance, source_fingerprint

    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "a.py").write_text("x = 1\n")
    (package / "sub" / "b.py").write_text("y = 2\n")
    (package / "notes.md").write_text("docs\n")
    before = source_fingerprint(package)
    (package / "notes.md").write_text("other docs\n")
    assert source_fingerprint(package) == before
    (package / "sub" / "b.py").write_text("y = 3\n")
    assert source_fingerprint(package) != before
    outside_git = code_provenance(package)
    assert outside_git["commit"] is None and outside_git["changed"] is None
    assert code_provenance()["source"] == source_fingerprint()


def test_the_kept_parts_of_the_shop_table_are_one_benchmark():
    """docs/reports/shop-table holds the parts of a table that runs over several
    sittings; a part measured with other code or settings would be refused
    only when someone merges them, so the merge runs here."""
    from pathlib import Path

    from mmrec.bench.merge import merge_quality_reports
    folder = Path(__file__).resolve().parents[1] / "docs" / "reports" / "shop-table"
    paths = sorted(folder.glob("*.json"))
    assert paths, f"no parts in {folder}"
    parts = [json.loads(path.read_text()) for path in paths]
    report = merge_quality_reports(parts, sources=[path.name for path in paths])
    assert report["dataset"] == "shop" and set(report["seeds"]) <= {11, 12, 13}
    assert not report["code"]["changed"]  # every part ran from an unedited checkout
    for name, system in report["main"].items():
        if "runs" in system:  # a system trained per seed: each seed once, in order
            assert system["seeds"] == sorted(set(system["seeds"])), name
