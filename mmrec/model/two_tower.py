"""The multimodal two-tower retrieval model.

Retrieval has to score a whole catalogue per request, so users and items are
embedded separately and compared by a dot product: the item embeddings are
computed once and indexed, the user embedding once per request. This model
learns both towers with TFRS's in-batch softmax (``tfrs.tasks.Retrieval``):
the other positives of a batch are the negatives, corrected by their sampling
probability (logQ), and a batch's copies of the positive are not counted as
negatives.

History items are represented by the item tower too. Running every history
item of every example through the full tower is the naive price (H+1 tower
passes per example); by default (``history_encoding="table"``) history items
are read from a table of item embeddings that a callback refreshes every few
hundred steps, so a step runs the tower once per example. The table is not
differentiated through; the user tower's pooling and projection still are.

The model sees numbers only: item features live in untracked variables
(gathered by index inside the step), so the step compiles with XLA.

Example:

    model = TwoTowerModel(ModelConfig(), CatalogueSpec.from_features(features),
                          history_length=20, num_users=943)
    model.attach_item_features(features)
    model.compile(optimizer=tf.keras.optimizers.Adam(3e-3), jit_compile=True)
    model.fit(train_batches, epochs=5)
    model.refresh_item_table()
    scores = model.user_vectors(history, mask)[0] @ model.item_table.numpy().T
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import tensorflow as tf
from tensorflow.python.ops import resource_variable_ops
import tensorflow_recommenders as tfrs

from mmrec.config import ModelConfig, RunConfig
from mmrec.model.retrieval_task import Float32Retrieval
from mmrec.model.towers import CatalogueSpec, ItemTower, UserTower
from mmrec.progress import progress

ENCODE_CHUNK = 256
"""Items encoded at a time when the catalogue is encoded (item table refreshes,
export, fine-tuning jobs). The image encoder's activations grow with the
chunk: on a 60,000-item shop with 64x64 RGB pictures, 2,048 items at a time
raised peak memory by about 1.1 GiB over the data and model, 256 by nothing
measurable, and 256 was not slower (docs/BENCHMARKS.md)."""

ATTENTION_LAYERS = ("text_to_image_attention", "image_to_text_attention", "modality_gate",
                    "history_attention")
"""Layer names of the attention parameters a feedback job fine-tunes."""


class TwoTowerModel(tfrs.Model):
    """Item tower + user tower + TFRS retrieval loss.

    Args:
      config: the towers' shape.
      spec: what the item features hold.
      history_length: H.
      num_users: users with an id (for the optional user-id embedding).
      logq_correction: subtract log sampling probability from negatives.
      remove_accidental_hits: ignore in-batch copies of the positive.
      num_hard_negatives: 0 for every in-batch negative, else only this many
        highest-scoring negatives per query.
      num_catalogue_negatives: items drawn uniformly from the negative pool
        (:meth:`set_negative_pool`; by default the whole catalogue) each
        training step and added to every query's negatives, read from the
        item table without gradient.
    """

    def __init__(self, config: ModelConfig, spec: CatalogueSpec, history_length: int,
                 num_users: int, logq_correction: bool = True,
                 remove_accidental_hits: bool = True, num_hard_negatives: int = 0,
                 num_catalogue_negatives: int = 0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.config, self.spec = config, spec
        self.history_length, self.num_users = history_length, num_users
        self.logq_correction = logq_correction
        self.remove_accidental_hits = remove_accidental_hits
        self.num_catalogue_negatives = num_catalogue_negatives
        self.item_tower = ItemTower(config, spec, name="item_tower")
        self.user_tower = UserTower(config, history_length, num_users, name="user_tower")
        # float32 under a mixed policy too; the towers return float32 vectors.
        self.task = Float32Retrieval(temperature=config.temperature,
                                     remove_accidental_hits=remove_accidental_hits,
                                     num_hard_negatives=num_hard_negatives or None)
        # Untracked: item features and the derived embedding table are inputs,
        # not weights; checkpoints stay small and hold only what is learned.
        object.__setattr__(self, "_feature_tables", {})
        object.__setattr__(self, "_item_table", None)
        object.__setattr__(self, "_fit_variables", None)
        object.__setattr__(self, "_negative_pool", None)

    # -- item features -----------------------------------------------------------------
    def attach_item_features(self, features) -> None:
        """Holds the item-feature arrays as variables gathered inside the step."""
        if len(features) != self.spec.num_items:
            raise ValueError(f"features have {len(features)} items, the model was built for "
                             f"{self.spec.num_items}")
        with tf.init_scope():
            # Plain variables, outside any distribution strategy: every worker
            # builds the same arrays from the same data, so nothing is to be
            # mirrored or broadcast (a multi-worker strategy broadcasts every
            # variable it creates, and its collectives carry no uint8 pictures).
            tables = {name: resource_variable_ops.ResourceVariable(
                array, trainable=False, name=f"features/{name}")
                for name, array in features.arrays().items()}
            table = tf.Variable(tf.zeros([self.spec.num_items, self.config.embedding_dim]),
                                trainable=False, name="item_table")
        object.__setattr__(self, "_feature_tables", tables)
        object.__setattr__(self, "_item_table", table)

    def set_negative_pool(self, items: np.ndarray) -> None:
        """The items catalogue negatives are drawn from: those with training
        clicks. An item held out of training (a cold item under evaluation, a
        new one) must not be taught to be a negative."""
        items = np.unique(np.asarray(items, dtype=np.int32))
        if len(items) == 0 or items[0] < 0 or items[-1] >= self.spec.num_items:
            raise ValueError(f"set_negative_pool: {len(items)} items, which must be indices "
                             f"in [0, {self.spec.num_items})")
        with tf.init_scope():
            pool = tf.constant(items)
        object.__setattr__(self, "_negative_pool", pool)

    def mark_trained_items(self, items: np.ndarray) -> None:
        """Items with training clicks, added to those marked before: with
        ``item_bias`` their own bias scores them, and every other item scores
        at their mean (an item nobody clicked has learned no bias). A newly
        marked item's bias starts at that mean, where it scored before. Without
        ``item_bias`` nothing is recorded."""
        if self.item_tower.bias_trained is None:
            return
        items = np.unique(np.asarray(items, dtype=np.int64))
        if len(items) and (items[0] < 0 or items[-1] >= self.spec.num_items):
            raise ValueError(f"mark_trained_items: indices must be in [0, "
                             f"{self.spec.num_items})")
        marked = self.item_tower.bias_trained.numpy()
        new = items[marked[items] == 0]
        if len(new) and marked.any():  # they start where they scored: at the mean
            biases = self.item_tower.bias_table.numpy()
            biases[new] = biases[marked == 1].mean(0)
            self.item_tower.bias_table.assign(biases)
        marked[items] = 1.0
        self.item_tower.bias_trained.assign(marked)

    @property
    def item_table(self) -> tf.Variable:
        if self._item_table is None:
            raise RuntimeError("call attach_item_features() first")
        return self._item_table

    def gather_item_inputs(self, items: tf.Tensor) -> dict[str, tf.Tensor]:
        if not self._feature_tables:
            raise RuntimeError("call attach_item_features() first")
        inputs = {name: tf.gather(table, items) for name, table in self._feature_tables.items()}
        inputs["item"] = items
        return inputs

    def encode_items(self, items: tf.Tensor, training: bool = False, valid=None):
        """Item indices [B] to (embeddings [B, D], modality gate [B, 2]); ``valid``
        [B] bool marks real items among padding (see :class:`ItemTower`)."""
        inputs = self.gather_item_inputs(items)
        if valid is not None:
            inputs["valid"] = valid
        return self.item_tower(inputs, training=training)

    # -- users ------------------------------------------------------------------------
    def history_vectors(self, history: tf.Tensor, training: bool = False,
                        history_mask: tf.Tensor | None = None) -> tf.Tensor:
        """Item vectors [B, H, D] of the history entries.

        With the table, the ``history_fresh_items`` most recent entries still
        run through the item tower (with gradients): that item-to-item signal
        is what lets content embeddings pull apart early in training, when
        every table row still looks alike. Padded entries (``history_mask``
        False) are left out of the image encoder's batch statistics.
        """
        if self.config.history_encoding == "tower":
            fresh = history
        else:
            fresh = history[:, :self.config.history_fresh_items]
        vectors = []
        if fresh.shape[1]:
            valid = (None if history_mask is None
                     else tf.reshape(history_mask[:, :fresh.shape[1]], [-1]))
            encoded, _ = self.encode_items(tf.reshape(fresh, [-1]), training=training,
                                           valid=valid)
            vectors.append(tf.reshape(encoded, [-1, fresh.shape[1], self.config.embedding_dim]))
        if fresh.shape[1] < history.shape[1]:
            stale = history[:, fresh.shape[1]:]
            vectors.append(tf.stop_gradient(tf.gather(self.item_table, stale)))
        return tf.concat(vectors, 1) if len(vectors) > 1 else vectors[0]

    def user_vectors(self, history, history_mask, users=None, training: bool = False):
        """(user embeddings [B, D], history attention weights [B, H])."""
        return self.user_tower(self.history_vectors(history, training, history_mask),
                               history_mask, users, training=training)

    def call(self, inputs, training=False):
        return self.user_vectors(inputs["history"], inputs["history_mask"],
                                 inputs.get("user"), training=training)[0]

    # -- training ---------------------------------------------------------------------
    def fit_only(self, variables: list[tf.Variable] | None) -> None:
        """Makes ``fit`` update only ``variables`` (None: every trainable one).

        Set before ``compile``: the train step is traced with the list. A
        fine-tuning job passes :meth:`attention_variables`.
        """
        if variables is not None:
            known = {id(v) for v in self.trainable_variables}
            foreign = [v.name for v in variables if id(v) not in known]
            if foreign:
                raise ValueError(f"fit_only: not trainable variables of this model: {foreign}")
        object.__setattr__(self, "_fit_variables", None if variables is None else list(variables))

    def train_step(self, inputs):
        """TFRS's train step, restricted to the variables of :meth:`fit_only`."""
        with tf.GradientTape() as tape:
            loss = self.compute_loss(inputs, training=True)
            regularization_loss = tf.reduce_sum([tf.reduce_sum(part) for part in self.losses])
            total_loss = loss + regularization_loss
        # After the loss: the first trace builds the layers, and with them their variables.
        variables = self._fit_variables or self.trainable_variables
        gradients = tape.gradient(total_loss, variables)
        self.optimizer.apply_gradients(zip(gradients, variables))
        metrics = {metric.name: metric.result() for metric in self.metrics}
        metrics.update(loss=loss, regularization_loss=regularization_loss,
                       total_loss=total_loss)
        return metrics

    def compute_loss(self, batch, training=False) -> tf.Tensor:
        """The retrieval loss of a batch; an optional ``weight`` [B] weighs each
        click (a fine-tuning job weighs a purchase above a click). With
        ``content_loss_weight``, plus that weight times the same loss with the
        items' content-only vectors."""
        users, _ = self.user_vectors(batch["history"], batch["history_mask"], batch["user"],
                                     training=training)
        content_weight = (self.config.content_loss_weight
                          if self.item_tower.id_embedding is not None else 0.0)
        outputs = self.item_tower(self.gather_item_inputs(batch["item"]), training=training,
                                  with_content=content_weight > 0)
        ids, probability = batch["item"], batch["candidate_sampling_probability"]
        extra = None
        if training and self.num_catalogue_negatives:
            pool = (self._negative_pool if self._negative_pool is not None
                    else tf.range(self.spec.num_items))
            drawn = tf.gather(pool, tf.random.uniform([self.num_catalogue_negatives], 0,
                                                      tf.shape(pool)[0], tf.int32))
            extra = tf.stop_gradient(tf.gather(self.item_table, drawn))
            ids = tf.concat([ids, tf.cast(drawn, ids.dtype)], 0)
            probability = tf.concat([probability, tf.fill(
                tf.shape(drawn), 1.0 / tf.cast(tf.shape(pool)[0], probability.dtype))], 0)
        loss = self._retrieval_loss(users, outputs[0], extra, ids, probability, batch)
        if content_weight > 0:
            loss += content_weight * self._retrieval_loss(users, outputs[2], extra, ids,
                                                          probability, batch)
        return loss

    def _retrieval_loss(self, users, items, extra, ids, probability, batch) -> tf.Tensor:
        if extra is not None:  # the catalogue negatives follow the batch's items
            items = tf.concat([items, extra], 0)
        return self.task(
            users, items, sample_weight=batch.get("weight"),
            candidate_sampling_probability=probability if self.logq_correction else None,
            candidate_ids=ids if self.remove_accidental_hits else None,
            compute_metrics=False, compute_batch_metrics=False)

    def encode_catalogue(self, batch_size: int = ENCODE_CHUNK) -> tuple[np.ndarray, np.ndarray]:
        """Every item's embedding [N, D] and modality gate [N, 2], in chunks."""
        return self.encode_range(0, self.spec.num_items, batch_size)

    def encode_range(self, start: int, stop: int, batch_size: int = ENCODE_CHUNK,
                     desc: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Items ``start .. stop - 1``: embeddings [n, D] and modality gates [n, 2],
        ``batch_size`` items at a time (the encoder's activations for a whole
        large catalogue at once would cost gigabytes). With ``desc``, a progress
        bar of that name when there are at least two chunks."""
        if not 0 <= start < stop <= self.spec.num_items:
            raise ValueError(f"encode_range: need 0 <= start < stop <= {self.spec.num_items} "
                             f"items; got {start}, {stop}")
        vectors, gates = [], []
        chunks = range(start, stop, batch_size)
        for first in chunks if desc is None else progress(chunks, desc=desc, min_items=2):
            items = tf.range(first, min(first + batch_size, stop))
            chunk_vectors, chunk_gates = self._encode_for_table(items)
            vectors.append(chunk_vectors.numpy())
            gates.append(chunk_gates.numpy())
        return np.concatenate(vectors), np.concatenate(gates)

    def refresh_item_table(self, batch_size: int = ENCODE_CHUNK) -> np.ndarray:
        """Re-encodes every item into the table; returns the table as NumPy."""
        table, _ = self.encode_catalogue(batch_size)
        self.item_table.assign(table)
        return table

    def refresh_item_slice(self, start: int, count: int, batch_size: int = ENCODE_CHUNK) -> int:
        """Re-encodes ``count`` items from index ``start`` on (wrapping round the
        catalogue) into the table; returns where the next slice starts."""
        num_items = self.spec.num_items
        count = min(count, num_items)
        items = (np.arange(start, start + count) % num_items).astype(np.int32)
        for first in range(0, count, batch_size):
            chunk = tf.constant(items[first:first + batch_size])
            vectors, _ = self._encode_for_table(chunk)
            self.item_table.scatter_update(tf.IndexedSlices(vectors, chunk))
        return int((start + count) % num_items)

    @tf.function(reduce_retracing=True)
    def _encode_for_table(self, items):
        return self.encode_items(items, training=False)

    # -- weights on disk ----------------------------------------------------------------
    def write_checkpoint(self, folder: str | os.PathLike) -> Path:
        """Writes the weights (no optimizer state) to ``folder/weights``.

        Item features and the item table are inputs, not weights, and are not
        written: whoever reads the checkpoint attaches the features again.
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tf.train.Checkpoint(model=self).write(str(folder / "weights"))
        # Checkpoint.write keeps no "checkpoint" index file; folder checks look for one.
        (folder / "checkpoint").write_text('model_checkpoint_path: "weights"\n')
        return folder

    def read_checkpoint(self, folder: str | os.PathLike) -> None:
        """Reads weights :meth:`write_checkpoint` (or a run's ``best/``) wrote,
        and builds both towers so that every weight is in place on return."""
        tf.train.Checkpoint(model=self).read(str(Path(folder) / "weights")).expect_partial()
        self.build_towers()

    def build_towers(self) -> None:
        """Creates every weight (Keras builds layers on their first call): the item
        tower by encoding the catalogue, the user tower on one empty history."""
        self.refresh_item_table()
        history = tf.zeros([1, self.history_length], tf.int32)
        self.user_vectors(history, tf.ones([1, self.history_length], tf.bool),
                          tf.zeros([1], tf.int32))

    def copy_weights_from(self, other: "TwoTowerModel") -> None:
        """Takes every weight of ``other``, a model of the same config over a
        smaller catalogue (items appended since): the item-id vectors and
        biases of the items ``other`` did not have start at zero, as untrained
        ones do (and such items score at the trained items' mean bias).

        Raises:
          ValueError: the models differ in more than the catalogue size.
        """
        self.build_towers()
        other.build_towers()
        mine, theirs = self.weights, other.weights
        if len(mine) != len(theirs):
            raise ValueError(f"copy_weights_from: {len(theirs)} weights for {len(mine)}")
        for target, source in zip(mine, theirs):
            name = target.name.split("/", 1)[-1]
            if name != source.name.split("/", 1)[-1]:
                raise ValueError(f"copy_weights_from: weight {source.name} where {target.name} "
                                 "was expected (another config?)")
            value = source.numpy()
            if target.shape != value.shape:
                extra = target.shape[0] - value.shape[0]
                per_item = any(part in target.name for part in ("item_id_embedding",
                                                                  "item_bias"))
                if not per_item or extra < 0 or target.shape[1:] != value.shape[1:]:
                    raise ValueError(f"copy_weights_from: {name} is {target.shape}, the source "
                                     f"{value.shape}")
                value = np.concatenate([value, np.zeros((extra, *value.shape[1:]), value.dtype)])
            target.assign(value)

    def attention_variables(self) -> list[tf.Variable]:
        """Trainable variables of the cross-modal attention, the modality gate
        and the history attention pooling: what a feedback job fine-tunes."""
        return [v for v in self.trainable_variables
                if any(f"/{name}/" in f"/{v.name}" for name in ATTENTION_LAYERS)]


def build_two_tower(config: RunConfig, features, num_users: int) -> TwoTowerModel:
    """The model a run config describes, over ``features`` (an ItemFeatures).

    Training, loading a trained run and loading a published version build the
    model here, so all three get the same layers and the same weight names.
    """
    model = TwoTowerModel(config.model, CatalogueSpec.from_features(features),
                          history_length=config.data.history_length, num_users=num_users,
                          logq_correction=config.train.logq_correction,
                          remove_accidental_hits=config.train.remove_accidental_hits,
                          num_hard_negatives=config.train.hard_negative_count(
                              config.data.batch_size),
                          num_catalogue_negatives=config.train.catalogue_negatives)
    model.attach_item_features(features)
    return model
