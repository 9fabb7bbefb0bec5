"""One small trained shop run, shared by every test module that reads a finished run.

Training it takes a good share of a minute on 2 cores, so it is trained once
per test session and read-only: a test that changes a run copies it first.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mmrec.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from mmrec.train.trainer import train

SHOP = {"num_items": 200, "num_users": 60, "num_clicks": 1500}
CONFIG = RunConfig(
    data=DataConfig(batch_size=64, history_length=4, max_text_tokens=8, vocab_size=200,
                    dataset_options={"shop": SHOP}),
    model=ModelConfig(embedding_dim=16, token_dim=16, text_layers=0, attention_heads=2,
                      image_channels=(8, 8), image_grid=2),
    # Constant step size: a cosine schedule depends on the epoch count, and the
    # resume tests compare a 3-epoch run's first epoch with this 2-epoch run's.
    train=TrainConfig(epochs=2, jit="off", early_stopping_patience=5,
                      learning_rate_schedule="constant"))


@pytest.fixture(scope="session")
def shop_run(tmp_path_factory) -> tuple[Path, dict]:
    """A finished 2-epoch run on a small shop (read-only: copy it to change it)."""
    out = tmp_path_factory.mktemp("runs") / "shop"
    return out, train("shop", CONFIG, out, verbose=0)
