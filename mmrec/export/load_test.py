"""Loading a version in a fresh process and calling every signature, before users see it.

A SavedModel can be written without error and still fail where it matters:
an op the serving runtime lacks, a lookup table that does not initialise, a
signature that fails on the first real request. TF Serving does not check a
version before serving it (it loads any numeric folder), so the check is
ours, in the spirit of TFX's InfraValidator: a new Python process that
imports only TensorFlow and TensorFlow Text (what the serving runtime links,
none of mmrec) loads the folder and replays every warm-up request recorded in
``assets.extra/tf_serving_warmup_requests`` against its signature; every
float output must be finite.

Example:

    report = load_test("saved_models/mmrec/.incomplete-x1y2")   # raises LoadTestError
    report["requests"]                                          # 6
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import json, sys
import numpy as np
import tensorflow as tf
import tensorflow_text  # noqa: F401  (the WordPiece ops, as TF Serving links them)
from tensorflow_serving.apis import prediction_log_pb2
path = sys.argv[1]
loaded = tf.saved_model.load(path)
calls = {}
warmup = f"{path}/assets.extra/tf_serving_warmup_requests"
for record in tf.data.TFRecordDataset(warmup).as_numpy_iterator():
    request = prediction_log_pb2.PredictionLog.FromString(record).predict_log.request
    name = request.model_spec.signature_name
    inputs = {k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()}
    outputs = loaded.signatures[name](**inputs)
    for key, value in outputs.items():
        if value.dtype.is_floating and not np.all(np.isfinite(value.numpy())):
            raise SystemExit(f"signature {name}: output {key} is not finite")
    calls[name] = calls.get(name, 0) + 1
missing = sorted(set(loaded.signatures) - set(calls))
if missing:
    raise SystemExit(f"no warm-up request calls the signature(s) {missing}")
print("LOAD_TEST " + json.dumps({"requests": sum(calls.values()), "signatures": calls}))
"""


class LoadTestError(RuntimeError):
    """The version failed to load or to answer in a fresh process; the message says how."""


def load_test(version_dir: str | os.PathLike, timeout_s: float = 300) -> dict:
    """Loads ``version_dir`` in a fresh process and replays its warm-up requests.

    Returns:
      ``{"requests": n, "signatures": {name: calls}}``.

    Raises:
      LoadTestError: the child failed, timed out, or a signature lacked a
        request or answered with a non-finite number.
    """
    environment = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    environment.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    # The child runs in "/" (no module of the working folder can shadow what it
    # imports), so a relative path is made absolute here, in the caller's folder.
    path = Path(version_dir).resolve()
    try:
        done = subprocess.run([sys.executable, "-c", CHILD, str(path)],
                              capture_output=True, text=True, timeout=timeout_s,
                              env=environment, cwd="/")
    except subprocess.TimeoutExpired as error:
        raise LoadTestError(f"{version_dir}: no answer within {timeout_s:.0f} s") from error
    lines = [line for line in done.stdout.splitlines() if line.startswith("LOAD_TEST ")]
    if done.returncode != 0 or not lines:
        reason = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise LoadTestError(f"{version_dir} failed its load test in a fresh process: {reason}")
    return json.loads(lines[-1].removeprefix("LOAD_TEST "))
