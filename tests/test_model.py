"""The towers: embedding shapes, modality masks and gates, history masks, ablations.

Most tests build an untrained model on a small simulated shop whose catalogue
has been edited: item 0 has no picture and item 1 no text, so what the masks
promise (a missing modality contributes nothing, and the gate says so) can be
checked against items that have both.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.framework import config as tf_config

from mmrec.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from mmrec.data import Catalogue, load_dataset
from mmrec.data.shop import ShopConfig, generate_shop
from mmrec.data.splits import make_split
from mmrec.features.examples import build_examples
from mmrec.features.item_features import prepare_item_features
from mmrec.features.pipeline import make_dataset
from mmrec.model.cross_modal import ConcatFusion, CrossModalFusion
from mmrec.model.history_pooling import HistoryAttentionPooling, HistoryMeanPooling
from mmrec.model.towers import CatalogueSpec
from mmrec.model.two_tower import ATTENTION_LAYERS, TwoTowerModel

HISTORY = 4
DATA = DataConfig(batch_size=32, history_length=HISTORY, max_text_tokens=10, vocab_size=200)
TINY = ModelConfig(embedding_dim=16, token_dim=16, attention_heads=2, image_channels=(8, 8),
                   image_grid=2)
NO_IMAGE, NO_TEXT = 0, 1  # the edited items of the shop catalogue
BOTH = 2  # an item with text and a picture


@pytest.fixture(scope="module")
def shop():
    return generate_shop(ShopConfig(num_items=200, num_users=60, num_clicks=1500))


@pytest.fixture(scope="module")
def features(shop):
    """Item features of the shop with item 0's picture and item 1's text removed."""
    catalogue = shop.catalogue
    texts = list(catalogue.texts)
    texts[NO_TEXT] = ""
    image_mask = np.ones(len(catalogue), dtype=bool)
    image_mask[NO_IMAGE] = False
    edited = Catalogue.build(catalogue.item_ids, texts, images=catalogue.images.copy(),
                             image_mask=image_mask)
    features = prepare_item_features(edited, DATA)
    assert features.image_mask.tolist()[:3] == [False, True, True]
    assert features.text_mask.tolist()[:3] == [True, False, True]
    return features


@pytest.fixture(scope="module")
def movielens_features():
    return prepare_item_features(load_dataset("movielens-100k").catalogue,
                                 DataConfig(history_length=HISTORY, max_text_tokens=8,
                                            vocab_size=300))


def build(features, config: ModelConfig = TINY, history_length: int = HISTORY,
          seed: int = 0) -> TwoTowerModel:
    tf.keras.utils.set_random_seed(seed)
    model = TwoTowerModel(config, CatalogueSpec.from_features(features),
                          history_length=history_length, num_users=60)
    model.attach_item_features(features)
    return model


@pytest.fixture(scope="module")
def model(features):
    model = build(features)
    model.refresh_item_table()
    return model


def encode_all(model) -> tuple[np.ndarray, np.ndarray]:
    vectors, gate = model.encode_items(tf.range(model.spec.num_items))
    return vectors.numpy(), gate.numpy()


def users(model, history, mask):
    vectors, weights = model.user_vectors(tf.constant(history, tf.int32),
                                          tf.constant(mask, tf.bool))
    return vectors.numpy(), weights.numpy()


# --- item tower ------------------------------------------------------------------------

def test_item_embeddings_are_unit_vectors_and_gates_split_between_modalities(model, features):
    vectors, gate = encode_all(model)
    assert vectors.dtype == np.float32 and vectors.shape == (200, 16)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert gate.dtype == np.float32 and gate.shape == (200, 2)
    both = features.text_mask & features.image_mask
    assert both.sum() == 198
    np.testing.assert_allclose(gate[both].sum(1), 1.0, atol=1e-6)
    # every item starts at an even split (zero gate kernel) ...
    np.testing.assert_allclose(gate[both], 0.5, atol=1e-6)


def test_modality_gate_is_a_softmax_of_each_items_content(features):
    model = build(features)
    encode_all(model)
    gate_layer = model.item_tower.fusion.gate
    kernel = np.random.default_rng(0).normal(0, 0.3, gate_layer.kernel.shape)
    gate_layer.kernel.assign(kernel.astype(np.float32))  # as training would move it
    _, gate = encode_all(model)
    both = features.text_mask & features.image_mask
    np.testing.assert_allclose(gate[both].sum(1), 1.0, atol=1e-6)
    assert (gate[both] > 0).all() and (gate[both] < 1).all()
    assert np.ptp(gate[both, 0]) > 1e-2  # differs by item


def test_image_statistics_are_learnt_in_training_and_fixed_when_serving(features):
    """Batch normalisation in the image encoder: training steps move its moving
    statistics, and outside training an item's vector does not depend on which
    other items share its batch (a served catalogue is encoded in chunks)."""
    model = build(features)
    model.encode_items(tf.constant([BOTH]))  # builds the layers
    norms = [layer for layer in model.item_tower.image_encoder.stages
             if isinstance(layer, tf.keras.layers.BatchNormalization)]
    assert len(norms) == len(TINY.image_channels)
    before = norms[0].moving_mean.numpy().copy()
    model.encode_items(tf.range(BOTH, BOTH + 32), training=True)
    assert np.abs(norms[0].moving_mean.numpy() - before).max() > 0
    alone, _ = model.encode_items(tf.constant([BOTH]))
    among, _ = model.encode_items(tf.range(BOTH, BOTH + 32))
    np.testing.assert_allclose(alone.numpy()[0], among.numpy()[0], rtol=1e-5, atol=1e-6)
    trained, _ = model.encode_items(tf.range(BOTH, BOTH + 32), training=True)
    assert np.abs(trained.numpy()[0] - among.numpy()[0]).max() > 1e-4  # batch statistics


def test_padded_history_slots_do_not_feed_the_image_statistics(features):
    """A history's padded slots hold item 0; in training they must not move the
    batch-norm statistics, which follow the real history items alone."""
    config = dataclasses.replace(TINY, history_encoding="tower")
    history = np.zeros((2, HISTORY), np.int32)
    history[0, :2] = [BOTH, BOTH + 1]
    history[1, :1] = [BOTH + 2]
    mask = history > 0
    padded = build(features, config)
    padded.user_vectors(tf.constant(history), tf.constant(mask))  # builds the layers
    alone = build(features, config)  # the same weights: the same seed, built the same way
    alone.user_vectors(tf.constant(history), tf.constant(mask))
    padded.user_vectors(tf.constant(history), tf.constant(mask), training=True)
    alone.encode_items(tf.constant([BOTH, BOTH + 1, BOTH + 2]), training=True)

    def statistics(model):
        return [layer.moving_mean.numpy() for layer in model.item_tower.image_encoder.stages
                if isinstance(layer, tf.keras.layers.BatchNormalization)]
    for with_padding, real_only in zip(statistics(padded), statistics(alone)):
        np.testing.assert_allclose(with_padding, real_only, rtol=1e-4, atol=1e-6)
    # a batch of empty histories falls back to every slot instead of dividing by zero
    padded.user_vectors(tf.zeros((2, HISTORY), tf.int32), tf.zeros((2, HISTORY), tf.bool),
                        training=True)
    assert all(np.isfinite(m).all() for m in statistics(padded))


@pytest.mark.parametrize("fusion", ["cross_attention", "concat"])
def test_item_without_picture_is_masked_not_fed_zero_pixels(features, fusion):
    model = build(features, dataclasses.replace(TINY, fusion=fusion))
    before, gate = encode_all(model)
    np.testing.assert_array_equal(gate[NO_IMAGE], [1.0, 0.0])
    # new pixels stored for the item without a picture, and for one with a picture
    noise = np.random.default_rng(0).integers(0, 256, features.images.shape[1:], dtype=np.uint8)
    images = features.images.copy()
    images[NO_IMAGE] = noise
    images[BOTH] = noise
    model.attach_item_features(dataclasses.replace(features, images=images))
    after, gate_after = encode_all(model)
    np.testing.assert_allclose(after[NO_IMAGE], before[NO_IMAGE], atol=1e-6)
    np.testing.assert_array_equal(gate_after[NO_IMAGE], [1.0, 0.0])
    assert np.abs(after[BOTH] - before[BOTH]).max() > 1e-4
    untouched = np.arange(3, 200)
    np.testing.assert_allclose(after[untouched], before[untouched], atol=1e-6)


def test_item_without_text_puts_the_gate_on_the_image(model, features):
    _, gate = encode_all(model)
    np.testing.assert_array_equal(gate[NO_TEXT], [0.0, 1.0])
    assert not features.token_ids[NO_TEXT].any()
    # token ids stored for an item whose text mask is off are ignored too
    token_ids = features.token_ids.copy()
    token_ids[NO_TEXT] = token_ids[BOTH]
    fresh = build(features)
    before, _ = encode_all(fresh)
    fresh.attach_item_features(dataclasses.replace(features, token_ids=token_ids))
    after, gate_after = encode_all(fresh)
    np.testing.assert_allclose(after[NO_TEXT], before[NO_TEXT], atol=1e-6)
    np.testing.assert_array_equal(gate_after[NO_TEXT], [0.0, 1.0])


def test_gate_of_a_one_modality_item_is_exact_whatever_the_logits(features):
    model = build(features)
    encode_all(model)
    gate_layer = model.item_tower.fusion.gate
    gate_layer.bias.assign([-100.0, 100.0])  # the image is strongly preferred ...
    _, gate = encode_all(model)
    np.testing.assert_array_equal(gate[BOTH], [0.0, 1.0])
    np.testing.assert_array_equal(gate[NO_IMAGE], [1.0, 0.0])  # ... but item 0 has none
    gate_layer.bias.assign([100.0, -100.0])
    _, gate = encode_all(model)
    np.testing.assert_array_equal(gate[NO_TEXT], [0.0, 1.0])


@pytest.fixture
def mixed_float16():
    tf.keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        yield
    finally:
        tf.keras.mixed_precision.set_global_policy("float32")


def test_item_with_no_modality_stays_finite_under_mixed_float16(shop, mixed_float16):
    catalogue = shop.catalogue
    texts = list(catalogue.texts)
    texts[0] = ""
    image_mask = np.ones(len(catalogue), dtype=bool)
    image_mask[0] = False
    bare = prepare_item_features(Catalogue.build(catalogue.item_ids, texts,
                                                 images=catalogue.images.copy(),
                                                 image_mask=image_mask), DATA)
    model = build(bare)
    vectors, gate = model.encode_items(tf.range(4))
    assert model.item_tower.fusion.gate.compute_dtype == "float16"
    assert np.isfinite(vectors.numpy()).all() and np.isfinite(gate.numpy()).all()


def test_user_without_history_stays_finite_under_mixed_float16(features, mixed_float16):
    model = build(features)
    model.refresh_item_table()
    vectors, weights = users(model, [[0, 0, 0, 0], [5, 7, 0, 0]],
                             [[False] * HISTORY, [True, True, False, False]])
    assert model.user_tower.pooling.compute_dtype == "float16"
    assert np.isfinite(vectors).all() and np.isfinite(weights).all()
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-3)
    np.testing.assert_array_equal(weights[0], 0.0)
    np.testing.assert_allclose(weights[1], [0.5, 0.5, 0, 0], atol=1e-3)


def test_text_only_catalogue_builds_no_image_path(movielens_features):
    assert movielens_features.images is None and movielens_features.text_mask.all()
    model = build(movielens_features)
    tower = model.item_tower
    assert tower.use_text and not tower.use_image
    assert tower.image_encoder is None and tower.fusion is None
    vectors, gate = encode_all(model)
    assert vectors.shape == (1682, 16)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(gate, np.tile([1.0, 0.0], (1682, 1)))
    # with no cross-modal layers, only the history attention is fine-tunable
    model.refresh_item_table()
    users(model, [[1, 2, 0, 0]], [[True, True, False, False]])
    names = [v.name for v in model.attention_variables()]
    assert names and all("/history_attention/" in name for name in names)
    assert not any("image_encoder" in v.name for v in model.variables)


# --- user tower ------------------------------------------------------------------------

def test_single_click_gets_all_the_attention(model):
    vectors, weights = users(model, [[5, 0, 0, 0], [0, 9, 0, 0]],
                             [[True, False, False, False], [False, True, False, False]])
    assert weights.shape == (2, HISTORY)
    np.testing.assert_allclose(weights, [[1, 0, 0, 0], [0, 1, 0, 0]], atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_attention_weights_sum_to_one_over_real_clicks_and_skip_padding(features):
    model = build(features)
    model.refresh_item_table()
    rng = np.random.default_rng(1)
    lengths = np.array([1, 2, 3, 4, 2, 3])
    history = rng.integers(0, 200, (len(lengths), HISTORY))
    mask = np.arange(HISTORY)[None, :] < lengths[:, None]
    users(model, history, mask)
    # a trained query (whatever its initial value) makes the weights differ by click
    query = model.user_tower.pooling.query
    query.assign(3.0 * rng.normal(size=query.shape))
    vectors, weights = users(model, history, mask)
    np.testing.assert_allclose(weights.sum(1), 1.0, atol=1e-5)
    assert (weights[~mask] == 0).all() and (weights[mask] > 0).all()
    full = weights[lengths == 4][0]
    assert np.ptp(full) > 1e-3
    assert np.isfinite(vectors).all()
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_padded_history_entries_do_not_change_the_user(model):
    mask = [[True, True, False, False], [False, False, False, False]]
    base, base_weights = users(model, [[5, 7, 0, 0], [0, 0, 0, 0]], mask)
    moved, moved_weights = users(model, [[5, 7, 99, 150], [3, 4, 5, 6]], mask)
    np.testing.assert_allclose(moved, base, atol=1e-6)
    np.testing.assert_allclose(moved_weights, base_weights, atol=1e-7)
    # while a real click does change it
    other, _ = users(model, [[5, 8, 0, 0], [0, 0, 0, 0]], mask)
    assert np.abs(other[0] - base[0]).max() > 1e-4


def test_user_without_history_is_finite(model):
    vectors, weights = users(model, [[0, 0, 0, 0], [11, 12, 13, 14]],
                             [[False] * HISTORY, [False] * HISTORY])
    assert np.isfinite(vectors).all()
    np.testing.assert_array_equal(weights, 0.0)
    np.testing.assert_array_equal(vectors[0], vectors[1])


def test_user_without_history_is_a_unit_vector(features):
    model = build(features)
    model.refresh_item_table()
    vectors, _ = users(model, [[0, 0, 0, 0]], [[False] * HISTORY])
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_history_summary_starts_as_the_pooled_history_and_respects_the_mask(features):
    config = dataclasses.replace(TINY, history_summary_units=(8,))
    history, mask = [[5, 7, 9, 0]], [[True, True, True, False]]
    plain = build(features)  # each built and called before the next draws weights
    plain.refresh_item_table()
    users(plain, history, mask)
    summarised = build(features, config)
    summarised.refresh_item_table()
    # the summary's output layer starts at zero: the same user as without it
    np.testing.assert_allclose(users(summarised, history, mask)[0],
                               users(plain, history, mask)[0], atol=1e-6)
    names = [v.name for v in summarised.user_tower.trainable_variables]
    assert "user_tower/history_summary_0/kernel:0" in names
    assert "user_tower/history_summary_output/kernel:0" in names
    output = summarised.user_tower.summary[-1]
    output.kernel.assign(tf.random.normal(output.kernel.shape, seed=1))
    moved, _ = users(summarised, history, mask)
    assert np.abs(moved - users(plain, history, mask)[0]).max() > 1e-3
    # padding still does not count; the latest click does
    np.testing.assert_allclose(users(summarised, [[5, 7, 9, 150]], mask)[0], moved, atol=1e-6)
    other_latest, _ = users(summarised, [[6, 7, 9, 0]], mask)
    assert np.abs(other_latest - moved).max() > 1e-4
    assert not any("history_summary" in v.name for v in summarised.attention_variables())


# --- ablations -------------------------------------------------------------------------

@pytest.mark.parametrize("fusion,pooling", [("concat", "attention"),
                                            ("cross_attention", "mean"),
                                            ("concat", "mean")])
def test_ablations_give_the_same_shapes(features, fusion, pooling):
    model = build(features, dataclasses.replace(TINY, fusion=fusion, history_pooling=pooling))
    assert isinstance(model.item_tower.fusion,
                      ConcatFusion if fusion == "concat" else CrossModalFusion)
    assert isinstance(model.user_tower.pooling,
                      HistoryMeanPooling if pooling == "mean" else HistoryAttentionPooling)
    vectors, gate = encode_all(model)
    assert vectors.shape == (200, 16) and gate.shape == (200, 2)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(gate[NO_IMAGE], [1.0, 0.0])
    np.testing.assert_array_equal(gate[NO_TEXT], [0.0, 1.0])
    if fusion == "concat":  # no learned gate: both modalities count the same
        np.testing.assert_allclose(gate[BOTH:], 0.5)
    model.refresh_item_table()
    user, weights = users(model, [[5, 7, 9, 0]], [[True, True, True, False]])
    assert user.shape == (1, 16) and weights.shape == (1, HISTORY)
    np.testing.assert_allclose(np.linalg.norm(user), 1.0, atol=1e-5)
    if pooling == "mean":
        np.testing.assert_allclose(weights, [[1 / 3, 1 / 3, 1 / 3, 0]], atol=1e-6)


# --- fine-tunable variables ------------------------------------------------------------

def test_attention_variables_are_the_attention_layers_only(features):
    model = build(features)
    model.refresh_item_table()
    users(model, [[1, 2, 0, 0]], [[True, True, False, False]])
    chosen = model.attention_variables()
    names = [v.name for v in chosen]
    for layer in ATTENTION_LAYERS:
        assert any(f"/{layer}/" in name for name in names), layer
    assert {"text_to_image_attention", "image_to_text_attention", "modality_gate",
            "history_attention"} == set(ATTENTION_LAYERS)
    for name in names:
        assert any(f"/{layer}/" in name for layer in ATTENTION_LAYERS), name
        for other in ("token_embedding", "conv_", "text_encoder", "image_encoder",
                      "item_id_embedding", "content_projection", "user_projection",
                      "no_history", "text_norm", "image_norm"):
            assert other not in name, name
    trainable = {id(v) for v in model.trainable_variables}
    assert all(id(v) in trainable for v in chosen)
    assert 0 < len(chosen) < len(model.trainable_variables)
    # every variable under those layers is chosen, none left behind
    expected = [v for v in model.trainable_variables
                if any(f"/{layer}/" in v.name for layer in ATTENTION_LAYERS)]
    assert len(chosen) == len(expected)


def test_concat_ablation_has_no_cross_modal_attention_to_fine_tune(features):
    model = build(features, dataclasses.replace(TINY, fusion="concat"))
    model.refresh_item_table()
    users(model, [[1, 2, 0, 0]], [[True, True, False, False]])
    names = [v.name for v in model.attention_variables()]
    assert names and all("/history_attention/" in name for name in names)


# --- the loss --------------------------------------------------------------------------

def test_hard_negatives_keep_the_highest_scoring_in_batch_negatives(shop, features):
    split = make_split(shop)
    examples = build_examples(shop.interactions, split, "train", HISTORY, 200)
    batch = next(iter(make_dataset(examples, DATA, training=True)))
    batch_size = int(batch["item"].shape[0])

    def loss(hard_negatives: int) -> float:
        tf.keras.utils.set_random_seed(0)  # the same weights for every variant
        model = TwoTowerModel(TINY, CatalogueSpec.from_features(features),
                              history_length=HISTORY, num_users=60,
                              num_hard_negatives=hard_negatives)
        model.attach_item_features(features)
        model.refresh_item_table()
        return float(model.compute_loss(batch, training=False))

    every = loss(0)
    # keeping every negative is the plain in-batch softmax
    np.testing.assert_allclose(loss(batch_size - 1), every, rtol=1e-5)
    # fewer negatives, smaller partition function: the loss shrinks, never grows
    few, one = loss(4), loss(1)
    assert one < few < every


def test_content_loss_adds_the_loss_of_the_items_without_their_id_vectors(shop, features):
    split = make_split(shop)
    examples = build_examples(shop.interactions, split, "train", HISTORY, 200)
    batch = next(iter(make_dataset(examples, DATA, training=True)))

    def model_with(content_loss_weight: float, id_vectors=None) -> TwoTowerModel:
        # Users read their history from the table alone, filled before the id
        # vectors are set: every model below has the same users.
        model = build(features, dataclasses.replace(TINY, content_loss_weight=content_loss_weight,
                                                    history_fresh_items=0))
        model.refresh_item_table()
        model.compute_loss(batch)  # builds the id vectors
        if id_vectors is not None:
            model.item_tower.id_embedding.embeddings.assign(id_vectors)
        return model

    plain = float(model_with(0.0).compute_loss(batch))
    # id vectors start at zero: the content-only items are the items, the loss doubles
    np.testing.assert_allclose(float(model_with(1.0).compute_loss(batch)), 2 * plain, rtol=1e-5)
    # with id vectors, the second term is the loss of a model whose id vectors are zero
    ids = tf.random.normal([200, 16], stddev=0.5, seed=2)
    with_ids = float(model_with(0.0, ids).compute_loss(batch))
    assert abs(with_ids - plain) > 1e-3
    np.testing.assert_allclose(float(model_with(0.5, ids).compute_loss(batch)),
                               with_ids + 0.5 * plain, rtol=1e-5)


def test_catalogue_negatives_come_from_the_pool_and_only_in_training(shop, features):
    split = make_split(shop)
    examples = build_examples(shop.interactions, split, "train", HISTORY, 200)
    batch = next(iter(make_dataset(examples, DATA, training=True)))

    def model_with(catalogue_negatives: int) -> TwoTowerModel:
        model = build(features)
        model.num_catalogue_negatives = catalogue_negatives
        model.refresh_item_table()
        return model

    plain = model_with(0)
    plain_loss = float(plain.compute_loss(batch))  # builds the user tower
    mixed = model_with(64)
    # in evaluation the loss is the in-batch loss: no draws
    np.testing.assert_allclose(float(mixed.compute_loss(batch)), plain_loss, rtol=1e-6)
    # in training more negatives make a larger softmax denominator
    tf.keras.utils.set_random_seed(3)
    plain_training = float(plain.compute_loss(batch, training=True))
    tf.keras.utils.set_random_seed(3)
    assert float(mixed.compute_loss(batch, training=True)) > plain_training
    # the draws come from the pool: over a pool of one item every draw is the
    # same, and two seeds give the same loss (no dropout: only the draws vary)
    def training_loss(model, seed: int) -> float:
        tf.keras.utils.set_random_seed(seed)
        return float(model.compute_loss(batch, training=True))

    steady = build(features, dataclasses.replace(TINY, dropout=0.0))
    steady.num_catalogue_negatives = 64
    steady.refresh_item_table()
    assert abs(training_loss(steady, 1) - training_loss(steady, 2)) > 1e-4
    steady.set_negative_pool(np.array([7, 7]))
    np.testing.assert_allclose(training_loss(steady, 1), training_loss(steady, 2), rtol=1e-6)
    with pytest.raises(ValueError, match=r"indices in \[0, 200\)"):
        steady.set_negative_pool(np.array([3, 200]))


def test_hard_negative_share_sizes_the_count_by_the_batch():
    assert TrainConfig().hard_negative_count(256) == 128  # the default share, 0.5
    assert TrainConfig(hard_negative_share=1.0).hard_negative_count(256) == 0  # all
    assert TrainConfig(hard_negative_share=0.125).hard_negative_count(256) == 32
    assert TrainConfig(hard_negative_share=0.001).hard_negative_count(64) == 1
    assert TrainConfig(hard_negative_share=0.999).hard_negative_count(64) == 63


# --- configuration ---------------------------------------------------------------------

@pytest.mark.parametrize("changes,message", [
    ({"embedding_dim": -4}, "model.embedding_dim must be at least 1, got -4"),
    ({"token_dim": 0}, "model.token_dim must be at least 1"),
    ({"token_dim": 10, "attention_heads": 4},
     r"token_dim \(10\) must be divisible by model.attention_heads \(4\)"),
    ({"embedding_dim": 10, "token_dim": 8, "attention_heads": 4},
     r"embedding_dim \(10\) must be divisible by model.attention_heads \(4\)"),
    ({"modalities": "video"}, "model.modalities must be one of .*'video'"),
    ({"fusion": "sum"}, "model.fusion must be one of"),
    ({"history_pooling": "max"}, "model.history_pooling must be one of"),
    ({"history_encoding": "cache"}, "model.history_encoding must be one of"),
    ({"image_channels": (8, 0)}, "model.image_channels must be positive"),
    ({"image_channels": ()}, "model.image_channels must be positive"),
    ({"history_summary_units": (16, 0)}, "model.history_summary_units must be positive"),
    ({"content_loss_weight": -0.1}, "model.content_loss_weight must be >= 0"),
    ({"text_layers": -1}, "model.text_layers must be >= 0"),
    ({"temperature": 0.0}, "model.temperature must be positive"),
    ({"dropout": 1.0}, r"model.dropout must be in \[0, 1\)"),
    ({"modalities": "none", "item_id_embedding": False}, "requires item_id_embedding=True"),
])
def test_impossible_model_configs_are_refused(changes, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(**changes)


def test_shipped_shop_config_turns_the_id_vector_off_and_pretrains_the_cnn():
    from pathlib import Path
    path = Path(__file__).resolve().parents[1] / "configs" / "shop.toml"
    config = RunConfig.from_toml(path)
    assert config.model == dataclasses.replace(ModelConfig(), item_id_embedding=False,
                                               history_summary_units=(128,))
    assert config.train == dataclasses.replace(TrainConfig(), image_pretraining="outside-catalogue",
                                               hard_negative_share=1.0)
    assert config.train.hard_negative_count(config.data.batch_size) == 0


def test_run_config_refuses_unknown_keys_and_tables():
    with pytest.raises(ValueError, match=r"unknown model config key\(s\) \['embeding_dim'\]"):
        RunConfig.from_dict({"model": {"embeding_dim": 8}})
    with pytest.raises(ValueError, match=r"unknown train config key\(s\) \['epoch'\]"):
        RunConfig.from_dict({"train": {"epoch": 2}})
    with pytest.raises(ValueError, match=r"unknown config table\(s\) \['optimiser'\]"):
        RunConfig.from_dict({"optimiser": {"name": "adam"}})
    with pytest.raises(ValueError, match="data.history_length must be at least 1, got 0"):
        DataConfig(history_length=0)
    with pytest.raises(ValueError, match="train.jit must be one of"):
        TrainConfig(jit="maybe")
    for share in (0.0, 1.5):
        with pytest.raises(ValueError, match=r"train.hard_negative_share must be in \(0, 1\]"):
            TrainConfig(hard_negative_share=share)
    with pytest.raises(ValueError, match="train.catalogue_negatives must be >= 0, got -1"):
        TrainConfig(catalogue_negatives=-1)
    # a valid document round-trips, TOML lists becoming tuples
    config = RunConfig(data=DATA, model=TINY, train=TrainConfig(epochs=3))
    assert RunConfig.from_dict(config.to_dict()) == config
    assert RunConfig.from_dict({"model": {"image_channels": [4, 8]}}).model.image_channels == (4, 8)


# --- XLA -------------------------------------------------------------------------------

@pytest.fixture
def nondeterministic_ops():
    """XLA has no deterministic MaxPool gradient, and train() turns op determinism on
    for the whole process; these tests compile the model's own step, so turn it off."""
    was_on = tf_config.is_op_determinism_enabled()
    tf_config.disable_op_determinism()
    try:
        yield
    finally:
        if was_on:
            tf_config.enable_op_determinism()


@pytest.mark.parametrize("history_encoding,hard_negatives", [
    ("table", 4),  # the default path, keeping 4 hard negatives per click
    pytest.param("tower", 0, marks=pytest.mark.slow)])
def test_jit_compiled_training_step_with_images(shop, features, history_encoding,
                                                hard_negatives, nondeterministic_ops):
    config = DataConfig(batch_size=8, history_length=2, max_text_tokens=10, vocab_size=200)
    split = make_split(shop)
    examples = build_examples(shop.interactions, split, "train", config.history_length, 200)
    batches = make_dataset(examples, config, training=True).take(3)
    tf.keras.utils.set_random_seed(0)
    model = TwoTowerModel(dataclasses.replace(TINY, history_encoding=history_encoding),
                          CatalogueSpec.from_features(features),
                          history_length=config.history_length, num_users=60,
                          num_hard_negatives=hard_negatives)
    model.attach_item_features(features)
    assert model.item_tower.image_encoder is not None
    model.refresh_item_table()
    weights_before = [v.numpy() for v in model.item_tower.image_encoder.trainable_variables]
    model.compile(optimizer=tf.keras.optimizers.Adam(0.01), jit_compile=True)
    history = model.fit(batches, epochs=1, verbose=0)
    assert model._jit_compile is True
    assert np.isfinite(history.history["loss"]).all()
    # the image encoder was trained through the compiled step
    weights_after = [v.numpy() for v in model.item_tower.image_encoder.trainable_variables]
    assert any(np.abs(a - b).max() > 0 for a, b in zip(weights_after, weights_before))


def test_a_rolling_refresh_re_encodes_only_its_slice_and_wraps_round(features):
    model = build(features)
    vectors, _ = model.encode_catalogue()
    count = len(vectors)
    stale = np.zeros_like(vectors)
    model.item_table.assign(stale)
    assert model.refresh_item_slice(5, 10, batch_size=4) == 15  # chunks of 4: 4 + 4 + 2
    table = model.item_table.numpy()
    np.testing.assert_allclose(table[5:15], vectors[5:15], atol=1e-5)
    assert not table[:5].any() and not table[15:].any()
    assert model.refresh_item_slice(count - 3, 5) == 2
    table = model.item_table.numpy()
    np.testing.assert_allclose(table[[count - 3, count - 2, count - 1, 0, 1]],
                               vectors[[count - 3, count - 2, count - 1, 0, 1]], atol=1e-5)
    assert not table[2:5].any()
    assert model.refresh_item_slice(0, 10 * count) == 0  # at most the catalogue, once
    np.testing.assert_allclose(model.item_table.numpy(), vectors, atol=1e-5)


def test_a_range_of_items_encodes_as_in_the_whole_catalogue(features):
    model = build(features)
    vectors, gates = model.encode_catalogue()
    part_vectors, part_gates = model.encode_range(3, 12, batch_size=4)  # 4 + 4 + 1
    np.testing.assert_allclose(part_vectors, vectors[3:12], atol=1e-5)
    np.testing.assert_allclose(part_gates, gates[3:12], atol=1e-6)
    for start, stop in ((5, 5), (-1, 3), (0, len(vectors) + 1)):
        with pytest.raises(ValueError, match="encode_range: need 0 <= start < stop"):
            model.encode_range(start, stop)


def test_an_item_bias_adds_to_the_cosine_and_items_nobody_clicked_score_at_the_mean(features):
    config = dataclasses.replace(TINY, item_bias=True, item_id_embedding=False)
    model = build(features, config)
    model.build_towers()
    count = model.spec.num_items
    vectors, _ = model.encode_catalogue()
    assert vectors.shape == (count, TINY.embedding_dim)
    np.testing.assert_allclose(np.linalg.norm(vectors[:, :-1], axis=1), 1.0, atol=1e-5)
    assert not vectors[:, -1].any()  # every bias starts at zero
    history = tf.constant([[3, 5, 0, 0]], tf.int32)
    user, _ = model.user_vectors(history, history > 0)
    user = user.numpy()[0]
    assert user[-1] == 1.0 and np.linalg.norm(user[:-1]) == pytest.approx(1.0, abs=1e-5)

    biases = (np.arange(count, dtype=np.float32) / count)[:, None]
    model.item_tower.bias_table.assign(biases)
    model.mark_trained_items(np.array([2, 4, 6, 4]))
    vectors, _ = model.encode_catalogue()
    mean = biases[[2, 4, 6], 0].mean()
    np.testing.assert_allclose(vectors[[2, 4, 6], -1], biases[[2, 4, 6], 0], atol=1e-6)
    untrained = np.setdiff1d(np.arange(count), [2, 4, 6])
    np.testing.assert_allclose(vectors[untrained, -1], mean, atol=1e-6)
    # score = cosine of the other dimensions + the item's bias
    np.testing.assert_allclose(vectors @ user, vectors[:, :-1] @ user[:-1] + vectors[:, -1],
                               atol=1e-5)
    # an item marked later starts at the mean, where it scored before
    model.mark_trained_items(np.array([10]))
    assert model.item_tower.bias_table.numpy()[10, 0] == pytest.approx(mean)
    with pytest.raises(ValueError, match="mark_trained_items"):
        model.mark_trained_items(np.array([count]))

    # items appended to the catalogue later have no bias of their own: the mean
    grown_features = dataclasses.replace(
        features, token_ids=np.concatenate([features.token_ids, features.token_ids[:3]]),
        text_mask=np.concatenate([features.text_mask, features.text_mask[:3]]),
        images=np.concatenate([features.images, features.images[:3]]),
        image_mask=np.concatenate([features.image_mask, features.image_mask[:3]]),
        key=features.key + "+3")
    grown = build(grown_features, config)
    grown.copy_weights_from(model)
    grown_vectors, _ = grown.encode_catalogue()
    np.testing.assert_allclose(grown_vectors[:count], model.encode_catalogue()[0], atol=1e-5)
    np.testing.assert_allclose(grown_vectors[count:, -1], mean, atol=1e-6)  # 10 joined at it


def test_training_with_an_item_bias_moves_the_clicked_items_biases_alone(
        shop, features, nondeterministic_ops):
    config = dataclasses.replace(TINY, item_bias=True, item_id_embedding=False)
    model = build(features, config)
    examples = build_examples(shop.interactions, make_split(shop), "train", HISTORY, 200)
    keep = examples["item"] >= 20  # items 0-19 get no training click
    examples = {name: array[keep] for name, array in examples.items()}
    from mmrec.train.fitting import fit_examples
    run = RunConfig(data=DATA, model=config, train=TrainConfig(learning_rate=0.01))
    fit_examples(model, examples, run, epochs=1, jit=True)
    clicked = np.unique(examples["item"])
    biases = model.item_tower.bias_table.numpy()[:, 0]
    assert np.abs(biases[clicked]).max() > 0
    others = np.setdiff1d(np.arange(model.spec.num_items), clicked)
    assert len(others) and not biases[others].any()
    marked = model.item_tower.bias_trained.numpy()
    assert marked[clicked].all() and not marked[others].any()
    # the compiled step trained them; untrained items now score at the mean
    vectors = model.item_table.numpy()
    np.testing.assert_allclose(vectors[others, -1], biases[clicked].mean(), atol=1e-5)
