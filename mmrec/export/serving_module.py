"""The SavedModel's serving graph: strings in, ranked item ids out.

Everything a request needs is inside the graph, so stock TF Serving can answer
it: id lookups (static hash tables), the user's frozen recent history, the
items each user has seen, the item embeddings, the user tower, the item tower
for new items, and tokenisation with tensorflow_text's WordPiece (whose ops
stock TF Serving links). Brute-force scoring keeps the graph free of custom
ANN ops.

Signatures:

* ``serving_default``: ``user_id`` [B] -> ``item_ids`` [B, K], ``scores`` [B, K].
  A known user is scored from their last H clicks at export time, with every
  item they saw excluded; an unknown user gets the popularity list.
* ``recommend_with_history``: ``user_id`` [B], ``history`` [B, H'] item ids,
  most recent first, "" padded (the user's clicks since the export, as a web
  tier reads them from the feedback store) -> the same plus
  ``history_attention`` [B, H]. The user is scored on the history given
  merged ahead of the one frozen at export (duplicates dropped, cut to H);
  left out are, for a known user, every item seen in the exported log, and,
  for any user, every item given. Unknown ids are masked out.
* ``embed_items``: ``item_id``, ``text``, ``image`` (encoded bytes, "" when
  absent) -> ``embedding`` [B, D], from raw content (cold-start items).
* ``user_embedding`` / ``user_embedding_with_history``: the user vector,
  history attention and the (merged) history's ids, for the in-process
  :class:`mmrec.serve.Recommender`, which leaves out the same items.

A version exported with a ranker (:class:`mmrec.model.ranker.RankingModel`)
answers in two stages: ``serving_default`` and ``recommend_with_history``
retrieve the top N = max(the ranker's candidates, K) by dot product, after
the same exclusions, and return the top K of those in the ranker's order,
with ``item_history_weights`` [B, K, H] (how much each history click weighed
for each returned item) and ``history_item_ids`` [B, H]; ``scores`` are then
the ranker's. A user served the popularity list keeps it as it is. It also
has:

* ``retrieve`` / ``retrieve_with_history``: retrieval alone, the outputs of
  ``serving_default`` / ``recommend_with_history`` without a ranker.
* ``rank_candidates``: ``user_id`` [B], ``history`` [B, H'], ``candidate_ids``
  [B, N] -> ``scores`` [B, N] (unknown ids -1e9), ``history_weights`` [B, N, H]
  and ``history_item_ids`` [B, H], for the in-process Recommender, which
  retrieves in NumPy or ScaNN and re-ranks here.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from mmrec.data.images import GRAY_WEIGHTS
from mmrec.export.serving_tables import ServingTables
from mmrec.features.text import TextTokenizer
from mmrec.model.ranker import RankingModel, score_candidates
from mmrec.model.two_tower import TwoTowerModel

NEG_INF = -1e9


def _resize_weights(in_size, out_size: int):
    """:func:`mmrec.data.images.resize_weights` in TensorFlow (dynamic ``in_size``)."""
    in_size = tf.cast(in_size, tf.float64)
    scale = in_size / out_size
    support = tf.maximum(scale, 1.0)
    centers = (tf.range(out_size, dtype=tf.float64) + 0.5) * scale
    positions = tf.range(in_size, dtype=tf.float64) + 0.5
    weights = tf.nn.relu(1.0 - tf.abs(positions[None, :] - centers[:, None]) / support)
    return weights / tf.reduce_sum(weights, axis=1, keepdims=True)


def decode_picture(encoded: tf.Tensor, size: tuple[int, int], channels: int) -> tf.Tensor:
    """Encoded bytes to uint8 [height, width, channels], the pixels training saw.

    The same decoding to RGB, resize weights, gray conversion and single final
    rounding as :func:`mmrec.data.images.decode_image`, written in TensorFlow
    so that stock TF Serving runs it (``embed_items``).
    """
    height, width = size
    rgb = tf.cast(tf.io.decode_image(encoded, channels=3, expand_animations=False), tf.float64)
    shape = tf.shape(rgb)
    resized = tf.tensordot(_resize_weights(shape[0], height), rgb, axes=[[1], [0]])
    resized = tf.transpose(tf.tensordot(resized, _resize_weights(shape[1], width),
                                        axes=[[1], [1]]), [0, 2, 1])
    if channels == 1:
        resized = tf.tensordot(resized, tf.constant(GRAY_WEIGHTS, tf.float64)[:, None],
                               axes=[[2], [0]])
    return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)


class ServingModule(tf.Module):
    """A trained two-tower model with its lookup tables, ready to save.

    Args:
      model: the trained model (its towers are saved with it).
      tables: item and user ids, frozen histories, seen items, popularity.
      item_embeddings: float32 [N, D] the item tower's outputs.
      tokenizer: the WordPiece tokenizer of the item text.
      k: how many items the recommending signatures return.
      ranker: the ranking stage, or None to serve retrieval alone; it scores
        with the served item embeddings and its own per-item features (one
        row per item, in the tables' order).
    """

    def __init__(self, model: TwoTowerModel, tables: ServingTables, item_embeddings: np.ndarray,
                 tokenizer: TextTokenizer, k: int, ranker: RankingModel | None = None) -> None:
        super().__init__(name="mmrec_serving")
        item_ids, user_ids = tables.item_ids, tables.user_ids
        histories, history_mask = tables.histories, tables.history_mask
        seen_indptr = tables.seen_indptr
        num_items, num_users = len(item_ids), len(user_ids)
        self.k = int(min(k, num_items))
        self.history_length = int(histories.shape[1])
        self.user_tower = model.user_tower
        self.item_tower = model.item_tower
        self.image_shape = model.spec.image_shape if model.item_tower.image_encoder else None
        self.tokenizer = tokenizer
        self.item_ids = tf.Variable(item_ids.astype(str).astype(object), trainable=False,
                                    dtype=tf.string, name="item_ids")
        self.user_ids = tf.Variable(user_ids.astype(str).astype(object), trainable=False,
                                    dtype=tf.string, name="user_ids")
        self.item_embeddings = tf.Variable(item_embeddings.astype(np.float32), trainable=False,
                                           name="item_embeddings")
        self.popularity = tf.Variable(tables.popularity.astype(np.float32), trainable=False,
                                      name="popularity")
        self.retired = tf.Variable(tables.retired.astype(bool), trainable=False, name="retired")
        # Row U of the user arrays is the unknown user: no history, nothing seen.
        self.histories = tf.Variable(np.vstack([histories, np.zeros_like(histories[:1])]),
                                     trainable=False, name="histories")
        self.history_mask = tf.Variable(np.vstack([history_mask, np.zeros_like(
            history_mask[:1])]), trainable=False, name="history_mask")
        self.seen_indptr = tf.Variable(np.append(seen_indptr, seen_indptr[-1]).astype(np.int64),
                                       trainable=False, name="seen_indptr")
        self.seen_items = tf.Variable(tables.seen_items.astype(np.int32), trainable=False,
                                      name="seen_items")
        self.item_table = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
            tf.constant(item_ids.astype(str).astype(object), tf.string),
            tf.range(num_items, dtype=tf.int32)), default_value=-1)
        self.user_table = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
            tf.constant(user_ids.astype(str).astype(object), tf.string),
            tf.range(num_users, dtype=tf.int32)), default_value=num_users)
        self.num_users = num_users
        # embed_items reads raw text and pixels; a model trained on precomputed
        # vectors cannot embed new items from raw content.
        self.embeds_raw_content = (model.spec.text_feature_dim is None
                                   and model.spec.image_feature_dim is None)
        self.reranks = ranker is not None
        if ranker is not None:
            self._attach_ranker(ranker, num_items)

    def _attach_ranker(self, ranker: RankingModel, num_items: int) -> None:
        rows = int(ranker.item_features.shape[0])
        if rows != num_items or ranker.history_length != self.history_length:
            raise ValueError(f"the ranker was built for {rows} items and a history of "
                             f"{ranker.history_length}; the version has {num_items} items and "
                             f"a history of {self.history_length}")
        self.ranker = ranker.ranker
        self.ranker_features = tf.Variable(ranker.item_features.numpy(), trainable=False,
                                           name="ranker_item_features")
        self.candidates = int(min(max(ranker.config.candidates, self.k), num_items))
        self.rank_candidates = tf.function(
            self._rank_candidates,
            input_signature=[tf.TensorSpec([None], tf.string, name="user_id"),
                             tf.TensorSpec([None, None], tf.string, name="history"),
                             tf.TensorSpec([None, None], tf.string, name="candidate_ids")])

    # -- helpers (traced into each signature) -------------------------------------------
    def _user_rows(self, user_id):
        return self.user_table.lookup(user_id)

    def _ids_to_indices(self, history):
        """Item ids [B, H'] (any H', "" padded) to (indices, mask); unknown ids masked."""
        indices = self.item_table.lookup(history)
        return tf.maximum(indices, 0), indices >= 0

    def _merged_history(self, rows, history):
        """The history given (newest first) ahead of the one frozen at export,
        duplicates dropped (the first, newest, occurrence kept), cut to H.

        Returns (indices [B, H], mask [B, H], given indices [B, H'], given mask).
        """
        given, given_mask = self._ids_to_indices(history)
        frozen, frozen_mask = self._frozen_history(rows)
        items = tf.concat([given, frozen], 1)
        valid = tf.concat([given_mask, frozen_mask], 1)
        length = tf.shape(items)[1]
        positions = tf.range(length)
        earlier = positions[None, :] < positions[:, None]          # [L, L]: j before i
        same = tf.equal(items[:, :, None], items[:, None, :]) & valid[:, None, :]
        repeated = tf.reduce_any(same & earlier[None], -1)
        keep = valid & ~repeated
        order = tf.argsort(tf.where(keep, positions[None, :], positions[None, :] + length),
                           axis=1, stable=True)[:, :self.history_length]
        merged = tf.ensure_shape(tf.gather(items, order, batch_dims=1),
                                 [None, self.history_length])
        mask = tf.ensure_shape(tf.gather(keep, order, batch_dims=1), [None, self.history_length])
        return tf.where(mask, merged, 0), mask, given, given_mask

    def _user_vectors(self, rows, history, mask):
        vectors = tf.gather(self.item_embeddings, history)
        return self.user_tower(vectors, mask, rows, training=False)

    def _frozen_history(self, rows):
        """The history frozen at export: (indices [B, H], mask [B, H])."""
        return tf.gather(self.histories, rows), tf.gather(self.history_mask, rows)

    def _history_ids(self, history, mask):
        """History indices [B, H] as item ids, "" where masked."""
        return tf.where(mask, tf.gather(self.item_ids, history), "")

    def _user_outputs(self, rows, history, mask):
        users, attention = self._user_vectors(rows, history, mask)
        return {"embedding": users, "history_attention": attention,
                "history_item_ids": self._history_ids(history, mask),
                "known_user": rows < self.num_users}

    def _scatter_mask(self, batch_rows, items):
        """bool [B, N]: True at (b, items of row b)."""
        updates = tf.ones_like(items.values, dtype=tf.bool)
        coordinates = tf.stack([tf.cast(items.value_rowids(), tf.int32), items.values], 1)
        shape = tf.stack([tf.shape(batch_rows)[0], tf.shape(self.item_embeddings)[0]])
        return tf.scatter_nd(coordinates, updates, shape)

    def _top_k(self, scores):
        scores = tf.where(self.retired[None], NEG_INF, scores)  # retired: never recommended
        values, indices = tf.math.top_k(scores, k=self.k)
        return {"item_ids": tf.gather(self.item_ids, indices), "scores": values}

    def _default_request(self, user_id):
        """A user scored on the history frozen at export: (scores [B, I] with what
        they saw left out, popularity for an unknown user; users; history; mask;
        personal [B])."""
        rows = self._user_rows(user_id)
        known = rows < self.num_users
        history, mask = self._frozen_history(rows)
        users, attention = self._user_vectors(rows, history, mask)
        scores = tf.matmul(users, self.item_embeddings, transpose_b=True)
        scores = tf.where(self._scatter_mask(rows, self._seen(rows)), NEG_INF, scores)
        popular = tf.broadcast_to(self.popularity[None], tf.shape(scores))
        scores = tf.where(known[:, None], scores, popular)
        return scores, users, attention, history, mask, known

    def _history_request(self, user_id, history):
        """A user scored on the history given merged ahead of the frozen one; the
        same parts as :meth:`_default_request`."""
        rows = self._user_rows(user_id)
        merged, mask, given, given_mask = self._merged_history(rows, history)
        users, attention = self._user_vectors(rows, merged, mask)
        scores = tf.matmul(users, self.item_embeddings, transpose_b=True)
        # Neither a known user nor any known history item: popularity.
        personal = tf.logical_or(tf.reduce_any(mask, -1), rows < self.num_users)
        popular = tf.broadcast_to(self.popularity[None], tf.shape(scores))
        scores = tf.where(personal[:, None], scores, popular)
        # Left out: what a known user saw in the exported log, and every item given.
        # (An unknown user's row has seen nothing.)
        scores = tf.where(self._scatter_mask(rows, self._seen(rows)), NEG_INF, scores)
        scores = tf.where(self._scatter_mask(rows, tf.ragged.boolean_mask(given, given_mask)),
                          NEG_INF, scores)
        return scores, users, attention, merged, mask, personal

    def _rerank(self, users, history, mask, candidates):
        """The ranker's scores [B, N] and history weights [B, N, H] of candidate
        indices [B, N], from the served item vectors (what it was trained on)."""
        retrieval = tf.einsum("bd,bnd->bn", users, tf.gather(self.item_embeddings, candidates))
        return score_candidates(self.ranker, self.item_embeddings, self.ranker_features,
                                history, mask, candidates, retrieval)

    def _two_stage(self, scores, users, history, mask, personal):
        """The top N by ``scores``, re-ordered by the ranker, cut to K. Items left
        out stay last; a row served popularity keeps its order."""
        scores = tf.where(self.retired[None], NEG_INF, scores)
        retrieved, candidates = tf.math.top_k(scores, k=self.candidates)
        ranked, weights = self._rerank(users, history, mask, candidates)
        usable = retrieved > NEG_INF / 2
        ranked = tf.where(personal[:, None], ranked, retrieved)
        order = tf.argsort(tf.where(usable, ranked, 2 * NEG_INF), axis=1,
                           direction="DESCENDING", stable=True)[:, :self.k]
        chosen = tf.gather(candidates, order, batch_dims=1)
        return {"item_ids": tf.gather(self.item_ids, chosen),
                "scores": tf.gather(tf.where(usable, ranked, NEG_INF), order, batch_dims=1),
                "item_history_weights": tf.gather(weights, order, batch_dims=1),
                "history_item_ids": self._history_ids(history, mask)}

    # -- signatures ---------------------------------------------------------------------
    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="user_id")])
    def serving_default(self, user_id):
        scores, users, _, history, mask, personal = self._default_request(user_id)
        if self.reranks:
            return self._two_stage(scores, users, history, mask, personal)
        return self._top_k(scores)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="user_id")])
    def retrieve(self, user_id):
        return self._top_k(self._default_request(user_id)[0])

    def _seen(self, rows):
        """Every item each row's user saw in the exported log (ragged [B, None])."""
        starts = tf.gather(self.seen_indptr, rows)
        ends = tf.gather(self.seen_indptr, rows + 1)
        return tf.gather(self.seen_items, tf.ragged.range(starts, ends))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="user_id"),
                                  tf.TensorSpec([None, None], tf.string, name="history")])
    def recommend_with_history(self, user_id, history):
        scores, users, attention, merged, mask, personal = self._history_request(user_id,
                                                                                 history)
        if self.reranks:
            return {**self._two_stage(scores, users, merged, mask, personal),
                    "history_attention": attention}
        return {**self._top_k(scores), "history_attention": attention}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="user_id"),
                                  tf.TensorSpec([None, None], tf.string, name="history")])
    def retrieve_with_history(self, user_id, history):
        scores, _, attention, _, _, _ = self._history_request(user_id, history)
        return {**self._top_k(scores), "history_attention": attention}

    def _rank_candidates(self, user_id, history, candidate_ids):
        rows = self._user_rows(user_id)
        merged, mask, _, _ = self._merged_history(rows, history)
        users, _ = self._user_vectors(rows, merged, mask)
        indices = self.item_table.lookup(candidate_ids)
        scores, weights = self._rerank(users, merged, mask, tf.maximum(indices, 0))
        return {"scores": tf.where(indices >= 0, scores, NEG_INF), "history_weights": weights,
                "history_item_ids": self._history_ids(merged, mask)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="user_id")])
    def user_embedding(self, user_id):
        rows = self._user_rows(user_id)
        return self._user_outputs(rows, *self._frozen_history(rows))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="user_id"),
                                  tf.TensorSpec([None, None], tf.string, name="history")])
    def user_embedding_with_history(self, user_id, history):
        rows = self._user_rows(user_id)
        merged, mask, _, _ = self._merged_history(rows, history)
        return self._user_outputs(rows, merged, mask)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="item_id"),
                                  tf.TensorSpec([None], tf.string, name="text"),
                                  tf.TensorSpec([None], tf.string, name="image")])
    def embed_items(self, item_id, text, image):
        indices = self.item_table.lookup(item_id)
        tokens = self.tokenizer(text)
        inputs = {"item": tf.maximum(indices, 0), "item_known": indices >= 0,
                  "token_ids": tokens,
                  "text_mask": tf.strings.length(tf.strings.strip(text)) > 0}
        if self.image_shape is not None:
            height, width, channels = self.image_shape

            def decode(encoded):
                return tf.cond(
                    tf.strings.length(encoded) > 0,
                    lambda: decode_picture(encoded, (height, width), channels),
                    lambda: tf.zeros([height, width, channels], tf.uint8))

            inputs["images"] = tf.map_fn(decode, image, fn_output_signature=tf.TensorSpec(
                [height, width, channels], tf.uint8))
            inputs["image_mask"] = tf.strings.length(image) > 0
        embedding, gate = self.item_tower(inputs, training=False)
        return {"embedding": embedding, "modality_gate": gate}

    def signatures(self) -> dict:
        signatures = {"serving_default": self.serving_default,
                      "recommend_with_history": self.recommend_with_history,
                      "user_embedding": self.user_embedding,
                      "user_embedding_with_history": self.user_embedding_with_history}
        if self.embeds_raw_content:
            signatures["embed_items"] = self.embed_items
        if self.reranks:
            signatures.update(retrieve=self.retrieve,
                              retrieve_with_history=self.retrieve_with_history,
                              rank_candidates=self.rank_candidates)
        return signatures
