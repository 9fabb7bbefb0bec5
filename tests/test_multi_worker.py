"""Training on several machines with TensorFlow's MultiWorkerMirroredStrategy.

Two workers run as separate processes on 127.0.0.1, each with its own
``TF_CONFIG``, exactly as on a cluster; the reference is a two-replica
MirroredStrategy run in one process with the same per-replica batch (in-batch
negatives are per replica, so a one-replica run would not be comparable).
A worker killed mid-run fails the other (collective timeout) and a restarted
cluster resumes from the last epoch Keras' BackupAndRestore saved.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

TOML = """
[data]
batch_size = 64
history_length = 4
max_text_tokens = 8
vocab_size = 200

[data.dataset_options.shop]
num_items = 200
num_users = 60
num_clicks = 1500

[model]
embedding_dim = 16
token_dim = 16
text_layers = 0
attention_heads = 2
image_channels = [8, 8]
image_grid = 2

[train]
epochs = {epochs}
jit = "off"
early_stopping_patience = 5
learning_rate_schedule = "constant"
"""
TIMEOUT_S = 600
# What separates the two runs is which examples each replica gets (the
# multi-worker input pipeline shards batches across workers, the mirrored one
# splits each batch) and the order of the all-reduce: the losses agree to a
# fraction of a percent and NDCG@10 over 60 queries moves by at most one rank
# of one query (1/60 is 0.017).
LOSS_RTOL, NDCG_ATOL = 0.01, 0.02

TRAIN_MIRRORED = """
import json, sys
import mmrec
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from mmrec.config import RunConfig
from mmrec.train.trainer import train
config = RunConfig.from_toml(sys.argv[1])
with tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]).scope():
    metrics = train("shop", config, sys.argv[2], verbose=0)
print("METRICS", json.dumps(metrics))
"""


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def start_workers(config: Path, out: Path, ports: list[int], logs: Path,
                  timeout_s: int = 60) -> list[subprocess.Popen]:
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    workers = []
    logs.mkdir(parents=True, exist_ok=True)
    for index in range(len(ports)):
        env = {**os.environ, "TF_CONFIG": json.dumps(
            {"cluster": cluster, "task": {"type": "worker", "index": index}})}
        workers.append(subprocess.Popen(
            [sys.executable, "-m", "mmrec.cli", "train", "--dataset", "shop", "--config",
             str(config), "--out", str(out), "--strategy", "multi-worker",
             "--collective-timeout", str(timeout_s)],
            env=env, stdout=open(logs / f"worker-{index}.out", "w"),
            stderr=open(logs / f"worker-{index}.err", "w")))
    return workers


def wait_all(workers: list[subprocess.Popen]) -> list[int]:
    return [w.wait(timeout=TIMEOUT_S) for w in workers]


def tail(logs: Path, index: int) -> str:
    return (logs / f"worker-{index}.err").read_text()[-3000:]


def write_config(tmp_path: Path, epochs: int) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TOML.format(epochs=epochs))
    return path


def test_two_workers_train_like_two_mirrored_replicas(tmp_path):
    config = write_config(tmp_path, epochs=2)
    out, logs = tmp_path / "run", tmp_path / "logs"
    workers = start_workers(config, out, free_ports(2), logs)
    reference = subprocess.run([sys.executable, "-c", TRAIN_MIRRORED, str(config),
                                str(tmp_path / "mirrored")],
                               capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    codes = wait_all(workers)
    assert codes == [0, 0], tail(logs, 0) + tail(logs, 1)
    assert reference.returncode == 0, reference.stderr[-3000:]
    line = next(l for l in reference.stdout.splitlines() if l.startswith("METRICS "))
    mirrored = json.loads(line.removeprefix("METRICS "))
    several = json.loads((out / "metrics.json").read_text())
    assert several["replicas"] == mirrored["replicas"] == 2
    assert several["epochs_done"] == mirrored["epochs_done"] == 2
    for ours, theirs in zip(several["history"], mirrored["history"]):
        assert ours["loss"] == pytest.approx(theirs["loss"], rel=LOSS_RTOL)
        assert ours["val_NDCG@10"] == pytest.approx(theirs["val_NDCG@10"], abs=NDCG_ATOL)
    for part in ("valid", "test"):
        assert several[part]["NDCG@10"] == pytest.approx(mirrored[part]["NDCG@10"],
                                                         abs=NDCG_ATOL)
    # the chief wrote the run; the other worker's scratch copy and the backup are gone
    assert (out / "best" / "checkpoint").exists() and not (out / "backup").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".run.worker")] == []
    assert "worker 1 (writes a scratch copy beside" in tail(logs, 1)


def test_a_killed_worker_fails_the_run_and_the_restarted_cluster_resumes(tmp_path):
    config = write_config(tmp_path, epochs=4)
    out, logs = tmp_path / "run", tmp_path / "logs"
    ports = free_ports(2)
    workers = start_workers(config, out, ports, logs / "first", timeout_s=30)
    state = out / "state.json"
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:  # kill worker 1 once epoch 1 is recorded
        if state.exists() and json.loads(state.read_text()).get("epochs_done", 0) >= 1:
            break
        assert workers[0].poll() is None, tail(logs / "first", 0)
        time.sleep(0.05)
    workers[1].send_signal(signal.SIGKILL)
    # the chief must fail, not hang: its collectives time out without worker 1
    chief_code = workers[0].wait(timeout=TIMEOUT_S)
    assert workers[1].wait() == -signal.SIGKILL
    assert chief_code != 0
    recorded = json.loads(state.read_text())
    assert 1 <= recorded["epochs_done"] < 4
    assert list((out / "backup" / "chief").glob("*.index"))

    # the same command on both restarts the run where its backup stands
    restarted = start_workers(config, out, free_ports(2), logs / "second")
    codes = wait_all(restarted)
    assert codes == [0, 0], tail(logs / "second", 0) + tail(logs / "second", 1)
    metrics = json.loads((out / "metrics.json").read_text())
    epochs = [h["epoch"] for h in metrics["history"]]
    assert epochs == [1, 2, 3, 4]  # each epoch once: the first run's were not trained again
    assert metrics["history"][:recorded["epochs_done"]] == recorded["history"]
    assert "continuing it" in tail(logs / "second", 0)
