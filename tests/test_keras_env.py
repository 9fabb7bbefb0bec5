"""Importing mmrec selects Keras 2, or says clearly why it cannot."""

import os
import subprocess
import sys


def run_python(code: str, **env) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    environment.update(env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=environment, timeout=120)


def test_import_mmrec_first_gives_tf_keras_2():
    result = run_python("import mmrec, tensorflow as tf; print(tf.keras.__name__)")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith("tf_keras")


def test_import_feedback_first_gives_tf_keras_2():
    result = run_python("import feedback, tensorflow as tf, tensorflow_recommenders as tfrs;"
                        "print(tf.keras.__name__)")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith("tf_keras")


def test_tensorflow_with_keras3_first_is_a_clear_error():
    result = run_python("import tensorflow as tf; tf.keras.layers; import mmrec")
    assert result.returncode != 0
    assert "KerasVersionError" in result.stderr
    assert "Import mmrec before tensorflow" in result.stderr
