"""``mmrec bench throughput``: training examples per second, XLA on and off.

The full multimodal model and the TFRS tutorial two-tower are timed side by
side in one process, each with ``jit_compile`` on and off, so the XLA effect
is a measured ratio on the same machine at the same moment rather than two
numbers from different days. The first steps (tracing and XLA compilation)
are run before the clock starts; compile time is reported separately.

Example:

    report = run_throughput_benchmark("shop", steps=30)
    print(format_throughput_table(report))
"""

from __future__ import annotations

import platform
import time

import tensorflow as tf

from mmrec.config import PRECISIONS, RunConfig
from mmrec.features.pipeline import make_dataset
from mmrec.model.id_two_tower import IdTwoTower
from mmrec.model.two_tower import build_two_tower
from mmrec.train.preparation import load_run_dataset, prepare_data
from mmrec.train.runtime import has_gpu, precision_policy, seed_everything

WARMUP_STEPS = 3


def time_steps(model: tf.keras.Model, batches: tf.data.Dataset, steps: int) -> dict:
    """Seconds to compile (first steps) and examples/s over ``steps`` more."""
    iterator = iter(batches.repeat())
    started = time.perf_counter()
    for _ in range(WARMUP_STEPS):
        logs = model.train_function(iterator)
    float(logs["loss"])  # wait for the device
    compile_seconds = time.perf_counter() - started
    batch_size = int(batches.element_spec["item"].shape[0])
    started = time.perf_counter()
    for _ in range(steps):
        logs = model.train_function(iterator)
    float(logs["loss"])
    seconds = time.perf_counter() - started
    return {"compile_seconds": round(compile_seconds, 2),
            "examples_per_second": round(steps * batch_size / seconds, 1)}


def _compiled(model: tf.keras.Model, optimizer, jit: bool) -> tf.keras.Model:
    model.compile(optimizer=optimizer, jit_compile=jit)
    model.make_train_function()
    return model


def run_throughput_benchmark(dataset: str, *, steps: int = 30, base: RunConfig | None = None,
                             precisions: tuple[str, ...] = ("float32",)) -> dict:
    """Times the train step of both models with XLA on and off, per precision."""
    unknown = sorted(set(precisions) - set(PRECISIONS))
    if unknown or not precisions:
        raise ValueError(f"precisions: unknown {unknown or 'empty list'}; known: {PRECISIONS}")
    base = base or RunConfig()
    data = prepare_data(load_run_dataset(dataset, base.data), base.data)
    results = []
    for precision in precisions:
        for jit in (False, True):
            with precision_policy(precision):
                seed_everything(base.train.seed, deterministic=False)
                model = _compiled(build_two_tower(base, data.features,
                                                  data.dataset.interactions.num_users),
                                  tf.keras.optimizers.Adam(base.train.learning_rate), jit)
                model.refresh_item_table()
                batches = make_dataset(data.train_examples, base.data, training=True)
                results.append({"model": "mmrec (full)", "jit_compile": jit,
                                "precision": precision, **time_steps(model, batches, steps)})
                baseline = _compiled(IdTwoTower(data.dataset.interactions.num_users,
                                                len(data.dataset.catalogue)),
                                     tf.keras.optimizers.Adagrad(0.1), jit)
                results.append({"model": "TFRS two-tower", "jit_compile": jit,
                                "precision": precision, **time_steps(baseline, batches, steps)})
    for row in results:
        reference = next(r for r in results if r["model"] == row["model"]
                         and r["precision"] == row["precision"] and not r["jit_compile"])
        row["xla_speedup"] = round(row["examples_per_second"] /
                                   reference["examples_per_second"], 2)
    return {"dataset": dataset, "steps": steps, "batch_size": base.data.batch_size,
            "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
            "gpu": has_gpu(), "gpus": [d.name for d in tf.config.list_physical_devices("GPU")],
            "date": time.strftime("%Y-%m-%d"), "results": results}


def format_throughput_table(report: dict) -> str:
    lines = [f"**{report['dataset']}**, batch {report['batch_size']}, {report['steps']} timed "
             f"steps, GPU: {report['gpu']}, {report['date']}", "",
             "| model | precision | XLA | compile s | examples/s | XLA speed-up |",
             "|---|---|---|---|---|---|"]
    for row in report["results"]:
        lines.append(f"| {row['model']} | {row['precision']} | "
                     f"{'on' if row['jit_compile'] else 'off'} | {row['compile_seconds']} | "
                     f"{row['examples_per_second']:,.0f} | {row['xla_speedup']:.2f}x |")
    return "\n".join(lines)
