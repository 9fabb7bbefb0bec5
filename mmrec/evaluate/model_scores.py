"""Scoring a trained two-tower model under the evaluation protocol.

The metrics are plain NumPy over a scorer (query indices to scores over the
whole catalogue); this module is the one place that turns a TensorFlow model
into such a scorer: user vectors from each query's history, dot products with
the item table. Training validates every epoch with it, and evaluating,
benchmarking and exporting a run score with the same code.

Example:

    metrics = evaluate_model(model, data.test, data)
    metrics["NDCG@10"]
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from mmrec.evaluate.metrics import evaluate_scorer
from mmrec.evaluate.queries import EvaluationQueries


def user_vectors(model, queries: EvaluationQueries, batch_size: int = 1024) -> np.ndarray:
    """The user embeddings of every query, [Q, D], from a :class:`TwoTowerModel`."""
    return encode_users(model, queries.history, queries.history_mask, queries.user, batch_size)


def encode_users(model, history: np.ndarray, history_mask: np.ndarray, users: np.ndarray,
                 batch_size: int = 1024) -> np.ndarray:
    """User embeddings [Q, D] of histories [Q, H] (with masks and user indices),
    in batches, through one traced function per model."""
    encode = getattr(model, "_encode_users", None)
    if encode is None:  # one traced function per model, not one per call
        encode = tf.function(lambda h, m, u: model.user_vectors(h, m, u)[0],
                             reduce_retracing=True)
        object.__setattr__(model, "_encode_users", encode)
    parts = [encode(history[s:s + batch_size], history_mask[s:s + batch_size],
                    users[s:s + batch_size]).numpy()
             for s in range(0, len(history), batch_size)]
    return np.concatenate(parts) if parts else np.zeros((0, model.config.embedding_dim))


def evaluate_model(model, queries: EvaluationQueries, data,
                   ks: tuple[int, ...] = (10, 20)) -> dict:
    """Full-ranking metrics of ``model`` on ``queries`` (refreshes the item table).

    Args:
      model: a :class:`mmrec.model.two_tower.TwoTowerModel` with item features.
      queries: validation or test queries.
      data: the prepared run data (a :class:`mmrec.train.preparation.PreparedData`:
        its catalogue size, cold items and training click counts).
      ks: the metric cut-offs.
    """
    return score_queries(model, queries, cold_items=data.split.cold_items,
                         train_item_counts=data.train_item_counts, ks=ks)


def score_queries(model, queries: EvaluationQueries, *, cold_items: np.ndarray | None = None,
                  train_item_counts: np.ndarray | None = None,
                  ks: tuple[int, ...] = (10, 20)) -> dict:
    """Full-ranking metrics of ``model`` on ``queries`` over its whole catalogue
    (refreshes the item table); what a run's data does not say is given:
    which items are cold (none by default) and the click counts behind the
    popularity percentiles (equal by default)."""
    table = model.refresh_item_table()
    users = user_vectors(model, queries)
    num_items = len(table)
    return evaluate_scorer(lambda idx: users[idx] @ table.T, queries, num_items=num_items,
                           cold_items=(np.zeros(num_items, bool) if cold_items is None
                                       else cold_items),
                           train_item_counts=(np.ones(num_items) if train_item_counts is None
                                              else train_item_counts),
                           ks=tuple(sorted(set(ks))))
