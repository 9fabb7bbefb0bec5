"""The ranking stage: re-order a user's retrieved candidates, one history read each.

Retrieval has to stay one user vector against item vectors (ScaNN, TF Serving
and the feedback job rely on it), so it cannot ask which past clicks speak
for a given item. The ranker can: it sees a short list (the retriever's top
N), and for each candidate it reads the history with
:class:`mmrec.model.candidate_attention.CandidateHistoryAttention`, crosses
the candidate with that per-candidate user vector and the cheap features the
retriever already has (its score, the item's popularity, the modality gate)
with ``tfrs.layers.dcn.Cross``, and an MLP gives the score. It is trained on
lists with a listwise softmax (:func:`listwise_softmax_loss`): the clicked
item against the other candidates of its list, which is what ordering a list
needs.

Example:

    ranker = CandidateRanker(RankerConfig(), history_length=20, dim=64)
    scores, weights = ranker(history_vectors, history_mask, candidates, features)
    # history [B, 20, 64], mask [B, 20], candidates [B, N, 64], features [B, N, F]
    # -> scores [B, N]; weights [B, N, 20], the history weights behind each score
    loss = listwise_softmax_loss(scores, labels)   # labels [B, N], 1.0 at the click

What it does not do: it does not retrieve (it scores only the candidates it
is handed), and its attention reads item vectors as the item tower made them;
it does not train the item tower.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs

from mmrec.config import RankerConfig
from mmrec.model.candidate_attention import CandidateHistoryAttention
from mmrec.model.history_pooling import HistoryMeanPooling


class CandidateRanker(tf.keras.layers.Layer):
    """Scores each candidate of a list against the user's history.

    Args:
      config: the ranker's shape (:class:`mmrec.config.RankerConfig`).
      history_length: H, history slots.
      dim: D, width of the item vectors it reads.
    """

    def __init__(self, config: RankerConfig, history_length: int, dim: int, **kwargs) -> None:
        super().__init__(**kwargs)
        if dim % config.heads:
            raise ValueError(f"ranker.heads {config.heads} must divide the item width {dim}")
        self.config, self.history_length, self.dim = config, history_length, dim
        self.attention = (CandidateHistoryAttention(history_length, dim, config.heads,
                                                    name="candidate_attention")
                          if config.attention == "candidate"
                          else HistoryMeanPooling(name="history_mean"))
        self.crosses = [tfrs.layers.dcn.Cross(projection_dim=config.cross_projection_dim,
                                              name=f"cross_{layer}")
                        for layer in range(config.cross_layers)]
        self.hidden = [tf.keras.layers.Dense(units, activation="relu", name=f"hidden_{layer}")
                       for layer, units in enumerate(config.hidden_units)]
        self.dropout = tf.keras.layers.Dropout(config.dropout)
        # With a retrieval prior the network learns a correction, starting at none.
        self.score = tf.keras.layers.Dense(
            1, kernel_initializer="zeros" if config.retrieval_scale else "glorot_uniform",
            name="score")

    def call(self, history_vectors, history_mask, candidates, features, retrieval=None,
             training=False):
        """history_vectors [B, H, D], history_mask [B, H] bool, candidates [B, N, D],
        features [B, N, F], retrieval [B, N] (the retrieval scores, added at
        ``config.retrieval_scale``; needed when it is not 0) -> (scores [B, N],
        history weights [B, N, H])."""
        history_mask = tf.convert_to_tensor(history_mask, tf.bool)
        candidates = tf.convert_to_tensor(candidates, self.compute_dtype)
        features = tf.convert_to_tensor(features)
        if features.shape.rank != 3:
            raise ValueError(f"features must be [B, N, F], got {tuple(features.shape)}")
        count = tf.shape(candidates)[1]
        if self.config.attention == "candidate":
            users, weights = self.attention(history_vectors, history_mask, candidates,
                                            training=training)
        else:  # one mean of the history, the same for every candidate
            mean, weights = self.attention(history_vectors, history_mask)
            users = tf.repeat(mean[:, None], count, axis=1)
            weights = tf.repeat(tf.cast(weights, tf.float32)[:, None], count, axis=1)
        features = tf.cast(features, candidates.dtype)
        x = tf.concat([candidates, users, candidates * users, features], -1)
        width = x.shape[-1]
        x0 = x = tf.reshape(x, [-1, width])  # [B * N, width]: Cross works on rows
        for cross in self.crosses:
            x = cross(x0, x)
        for layer in self.hidden:
            x = layer(self.dropout(x, training=training))
        scores = tf.cast(tf.reshape(self.score(x), tf.shape(candidates)[:2]), tf.float32)
        if self.config.retrieval_scale:
            if retrieval is None:
                raise ValueError("this ranker adds the retrieval scores (ranker.retrieval_scale "
                                 f"{self.config.retrieval_scale}); pass retrieval [B, N]")
            scores += self.config.retrieval_scale * tf.cast(retrieval, tf.float32)
        return scores, weights

    def get_config(self):
        return {**super().get_config(), "config": dataclasses.asdict(self.config),
                "history_length": self.history_length, "dim": self.dim}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        return cls(RankerConfig.from_dict(config.pop("config")), **config)


def score_candidates(ranker: CandidateRanker, item_vectors, item_features, history,
                     history_mask, candidates, retrieval_scores, training: bool = False):
    """The ranker over item indices: history int [B, H], history_mask bool
    [B, H], candidates int [B, N] and retrieval_scores float [B, N], read
    through the item table [I, D] and item features [I, F] -> (scores [B, N],
    history weights [B, N, H]).

    Each candidate's features are its retrieval score, then its
    ``item_features`` row. Training (:class:`RankingModel`) and the serving
    graph both assemble the ranker's inputs here, so they cannot drift apart.
    """
    retrieval_scores = tf.cast(retrieval_scores, tf.float32)
    features = tf.concat([retrieval_scores[..., None], tf.gather(item_features, candidates)],
                         -1)
    return ranker(tf.gather(item_vectors, history), history_mask,
                  tf.gather(item_vectors, candidates), features, retrieval=retrieval_scores,
                  training=training)


def listwise_softmax_loss(scores: tf.Tensor, labels: tf.Tensor,
                          list_mask: tf.Tensor | None = None) -> tf.Tensor:
    """Mean softmax cross-entropy of each list: the clicked candidate against
    the rest of its list.

    Args:
      scores: [B, N] ranker scores.
      labels: [B, N], 1.0 at the clicked candidate (a list with several clicks
        spreads the target over them; a list with none is left out).
      list_mask: optional [B, N] bool, False for padding slots of short lists.

    Returns:
      A scalar: the mean over lists that hold a click.
    """
    scores, labels = tf.cast(scores, tf.float32), tf.cast(labels, tf.float32)
    if list_mask is not None:
        scores = tf.where(list_mask, scores, -1e9)
        labels *= tf.cast(list_mask, tf.float32)
    totals = tf.reduce_sum(labels, -1)
    has_click = totals > 0
    targets = tf.math.divide_no_nan(labels, totals[:, None])
    losses = tf.nn.softmax_cross_entropy_with_logits(targets, scores)
    losses = tf.where(has_click, losses, 0.0)
    return tf.math.divide_no_nan(tf.reduce_sum(losses),
                                 tf.reduce_sum(tf.cast(has_click, tf.float32)))


class RankingModel(tfrs.Model):
    """The ranker with what it reads about every item: the retriever's item
    vectors and a few cheap item features, held as non-trainable variables so
    a training step (and an exported graph) sees only indices and numbers.

    Each candidate's features are its retrieval score (the user-item dot
    product the retriever ranked by), then the item's own ``item_features``
    row (for example its standardised log popularity and its modality gate).

    Example:

        model = RankingModel(RankerConfig(), item_vectors, item_features, history_length=20)
        scores, weights = model.score_lists(history, history_mask, candidates, retrieval)
        model.compile(tf.keras.optimizers.Adam(1e-3))
        model.fit(lists_dataset)   # batches of history, history_mask, candidates,
                                   # retrieval_scores and labels

    Args:
      config: the ranker's shape and training settings.
      item_vectors: float32 [I, D], the retriever's item table.
      item_features: float32 [I, F], per-item features.
      history_length: H.
      new_item_features: float32 [F], the features of an item nobody has
        clicked yet, but for its own modality gate (its first feature, the
        standardised log popularity of zero clicks, is what counts): what a
        catalogue change gives the items it adds.
    """

    WEIGHTS = "weights"
    DOCUMENT = "ranker.json"

    def __init__(self, config: RankerConfig, item_vectors: np.ndarray,
                 item_features: np.ndarray, history_length: int,
                 new_item_features: np.ndarray | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        item_vectors = np.asarray(item_vectors, np.float32)
        item_features = np.asarray(item_features, np.float32)
        if item_vectors.ndim != 2 or item_features.ndim != 2 or (
                len(item_vectors) != len(item_features)):
            raise ValueError(f"item_vectors [I, D] and item_features [I, F] must have one row "
                             f"per item, got {item_vectors.shape} and {item_features.shape}")
        self.config = config
        self.history_length = history_length
        self.new_item_features = (np.zeros(item_features.shape[1], np.float32)
                                  if new_item_features is None
                                  else np.asarray(new_item_features, np.float32))
        self.ranker = CandidateRanker(config, history_length, item_vectors.shape[1],
                                      name="ranker")
        self.item_vectors = tf.Variable(item_vectors, trainable=False, name="item_vectors")
        self.item_features = tf.Variable(item_features, trainable=False, name="item_features")

    def score_lists(self, history, history_mask, candidates, retrieval_scores,
                    training: bool = False):
        """history int [B, H], history_mask bool [B, H], candidates int [B, N],
        retrieval_scores float [B, N] -> (scores [B, N], history weights [B, N, H])."""
        return score_candidates(self.ranker, self.item_vectors, self.item_features, history,
                                history_mask, candidates, retrieval_scores, training)

    def compute_loss(self, batch, training=False) -> tf.Tensor:
        scores, _ = self.score_lists(batch["history"], batch["history_mask"],
                                     batch["candidates"], batch["retrieval_scores"],
                                     training=training)
        return listwise_softmax_loss(scores, batch["labels"])

    def with_items(self, item_vectors: np.ndarray, gates: np.ndarray) -> "RankingModel":
        """The same ranker over a grown catalogue: ``item_vectors`` [I + n, D]
        (the old rows first), the new items' features those of an item nobody
        has clicked yet with their own modality ``gates`` [n, 2]."""
        old = self.item_features.numpy()
        gates = np.asarray(gates, np.float32)
        fresh = np.repeat(self.new_item_features[None], len(gates), 0)
        fresh[:, -gates.shape[1]:] = gates
        return self._copy_over(item_vectors, np.concatenate([old, fresh]))

    def over(self, item_vectors: np.ndarray, gates: np.ndarray) -> "RankingModel":
        """The same ranker (a copy of its weights) reading a retriever whose item
        tower moved: its item table becomes ``item_vectors`` [I, D] and the
        modality-gate columns of its item features become ``gates`` [I, 2];
        the click-count column stays. A fine-tuning job scores and publishes
        the ranker over the candidate retriever's vectors this way."""
        gates = np.asarray(gates, np.float32)
        features = self.item_features.numpy().copy()
        if gates.shape != (len(features), 2) or len(item_vectors) != len(features):
            raise ValueError(f"the ranker reads {len(features)} items; got item vectors "
                             f"{np.shape(item_vectors)} and gates {gates.shape}")
        features[:, -2:] = gates
        return self._copy_over(item_vectors, features)

    def _copy_over(self, item_vectors: np.ndarray, item_features: np.ndarray) -> "RankingModel":
        copy = RankingModel(self.config, item_vectors, item_features, self.history_length,
                            self.new_item_features)
        copy.build_ranker()
        copy.ranker.set_weights(self.ranker.get_weights())
        return copy

    def attention_variables(self) -> list[tf.Variable]:
        """The candidate-aware attention's trainable variables (empty for the
        mean-history ablation): what a feedback job's ``attention`` scope
        fine-tunes in the ranking stage."""
        return [v for v in self.ranker.trainable_variables
                if "/candidate_attention/" in f"/{v.name}"]

    def build_ranker(self) -> None:
        """Creates the ranker's weights (one call on a list of two items)."""
        length = self.history_length
        self.score_lists(np.zeros((1, length), np.int32), np.ones((1, length), bool),
                         np.zeros((1, 2), np.int32), np.zeros((1, 2), np.float32))

    def write(self, folder: str | os.PathLike, document: dict | None = None) -> Path:
        """Writes the ranker, its item table and features (``weights/``) and
        ``ranker.json`` (its config and shapes, plus ``document``) into
        ``folder``, which must not exist yet."""
        folder = Path(folder)
        folder.mkdir(parents=True)
        self._weights_checkpoint().write(str(folder / self.WEIGHTS / "ranker"))
        shapes = {"items": int(self.item_vectors.shape[0]),
                  "dim": int(self.item_vectors.shape[1]),
                  "features": int(self.item_features.shape[1]),
                  "history_length": int(self.history_length),
                  "new_item_features": self.new_item_features.tolist()}
        (folder / self.DOCUMENT).write_text(json.dumps(
            {**(document or {}), "config": dataclasses.asdict(self.config), "shapes": shapes},
            indent=2, default=float))
        return folder

    @classmethod
    def read(cls, folder: str | os.PathLike) -> tuple["RankingModel", dict]:
        """A ranker written by :meth:`write`, and its ranker.json document.

        Raises:
          FileNotFoundError: the folder lacks ranker.json or the weights.
        """
        folder = Path(folder)
        if not (folder / cls.DOCUMENT).exists() or not list(
                (folder / cls.WEIGHTS).glob("ranker*.index")):
            raise FileNotFoundError(f"ranker folder {folder} is incomplete: it needs "
                                    f"{cls.DOCUMENT} and {cls.WEIGHTS}/")
        document = json.loads((folder / cls.DOCUMENT).read_text())
        shapes = document["shapes"]
        model = cls(RankerConfig.from_dict(document["config"]),
                    np.zeros((shapes["items"], shapes["dim"]), np.float32),
                    np.zeros((shapes["items"], shapes["features"]), np.float32),
                    shapes["history_length"], np.asarray(shapes["new_item_features"]))
        model.build_ranker()
        model._weights_checkpoint().read(
            str(folder / cls.WEIGHTS / "ranker")).assert_existing_objects_matched()
        return model, document

    def _weights_checkpoint(self) -> tf.train.Checkpoint:
        """What :meth:`write` keeps and :meth:`read` restores: the ranker's
        weights, the item table and the item features."""
        return tf.train.Checkpoint(ranker=self.ranker, item_vectors=self.item_vectors,
                                   item_features=self.item_features)
