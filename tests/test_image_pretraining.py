"""Image-encoder pretraining: which pictures, what it learns, how a run records it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from mmrec.config import RunConfig, TrainConfig
from mmrec.data.fashion_mnist import load_fashion_mnist, photos_outside
from mmrec.data.shop import ShopConfig, generate_shop
from mmrec.model.image_encoder import ImageEncoder
from mmrec.train.image_pretraining import pretrain_image_encoder, pretrain_model_images
from mmrec.train.trainer import train

from test_train import CONFIG, SHOP, with_train


@pytest.fixture(scope="module")
def shop_pictures() -> np.ndarray:
    return generate_shop(ShopConfig(**SHOP)).catalogue.images


def test_the_shop_offers_the_fashion_mnist_photos_it_did_not_pick(shop_pictures):
    images, labels = generate_shop(ShopConfig(**SHOP)).outside_pictures()
    all_images, all_labels = load_fashion_mnist()
    assert images.shape[1:] == (28, 28, 1) and len(labels) == len(images)
    # At least the catalogue's own 200 are gone (more if Fashion-MNIST repeats one).
    assert len(all_images) - 250 < len(images) <= len(all_images) - len(shop_pictures)
    catalogue = {picture.tobytes() for picture in shop_pictures}
    assert not any(picture.tobytes() in catalogue for picture in images)
    # Labels stay with their pictures.
    index = {picture.tobytes(): label for picture, label in zip(all_images, all_labels)}
    assert all(index[images[i, ..., 0].tobytes()] == labels[i] for i in range(0, len(images), 997))


def test_items_without_a_picture_are_not_compared(shop_pictures):
    # A blank placeholder row must not knock blank photos out of the set.
    pictures = shop_pictures.copy()
    pictures[0] = load_fashion_mnist()[0][0, ..., np.newaxis]
    mask = np.ones(len(pictures), bool)
    mask[0] = False
    with_mask, _ = photos_outside(pictures, mask)
    without_mask, _ = photos_outside(pictures)
    assert len(with_mask) == len(without_mask) + 1


def test_a_data_set_without_outside_pictures_is_refused_before_the_folder_is_written(
        shop_folder, tmp_path):
    config = RunConfig.from_dict({
        "data": {"batch_size": 2, "history_length": 2, "max_text_tokens": 6, "vocab_size": 50,
                 "image_size": 8},
        "model": {"embedding_dim": 8, "token_dim": 8, "image_channels": [4], "image_grid": 2},
        "train": {"epochs": 1, "eval_k": 3, "image_pretraining": "outside-catalogue"}})
    with pytest.raises(ValueError, match=r"offers none.*image_pretraining = \"none\""):
        train(str(shop_folder()), config, tmp_path / "run", verbose=0)
    assert not (tmp_path / "run").exists()


def test_pictures_of_another_shape_are_refused():
    encoder_model = type("M", (), {})()
    encoder_model.item_tower = type("T", (), {"image_encoder": ImageEncoder((4,), 2, 4)})()
    features = type("F", (), {"images": np.zeros((3, 8, 8, 3), np.uint8)})()
    with pytest.raises(ValueError, match=r"\(28, 28, 1\), the catalogue's \(8, 8, 3\)"):
        pretrain_model_images(encoder_model, features, TrainConfig(
            image_pretraining="outside-catalogue"),
            lambda: (np.zeros((5, 28, 28, 1), np.uint8), None))


def test_pretraining_teaches_the_encoder_classes_and_pixels():
    images, labels = load_fashion_mnist()
    images, labels = images[:3000, ..., np.newaxis], labels[:3000]
    tf.keras.utils.set_random_seed(0)
    encoder = ImageEncoder((16, 16), 2, 16)
    encoder(images[:2])
    before = [w.numpy().copy() for w in encoder.weights]
    report = pretrain_image_encoder(encoder, images, labels, epochs=3, batch_size=128,
                                    seed=1, verbose=0)
    assert set(report) == {"reconstruction_loss", "class_loss", "class_accuracy"}
    assert report["reconstruction_loss"][-1] < report["reconstruction_loss"][0]
    # Ten classes: chance is 0.1; this small encoder reached 0.46 to 0.57
    # over six weight seeds.
    assert report["class_accuracy"][-1] > 0.35
    assert report["class_accuracy"][-1] > report["class_accuracy"][0]
    changed = {w.name.split("/", 1)[1] for w, old in zip(encoder.weights, before)
               if not np.allclose(w.numpy(), old)}
    # Every weight moved, batch-norm moving statistics included.
    assert len(changed) == len(before), sorted(changed)


def test_reconstruction_alone_without_labels():
    images = load_fashion_mnist()[0][:1000, ..., np.newaxis]
    report = pretrain_image_encoder(ImageEncoder((8,), 2, 8), images, None, epochs=2,
                                    batch_size=100, seed=1, verbose=0)
    assert list(report) == ["reconstruction_loss"] and len(report["reconstruction_loss"]) == 2
    assert report["reconstruction_loss"][1] < report["reconstruction_loss"][0]
    with pytest.raises(ValueError, match="3 labels for 1000 pictures"):
        pretrain_image_encoder(ImageEncoder((8,), 2, 8), images, np.zeros(3), verbose=0)


@pytest.mark.slow
def test_a_run_pretrains_before_training_and_records_it(tmp_path):
    config = with_train(epochs=1, image_pretraining="outside-catalogue", image_pretraining_epochs=1)
    metrics = train("shop", config, tmp_path / "run", verbose=0)
    record = metrics["image_pretraining"]
    assert record["source"] == "outside-catalogue" and record["pictures"] > 69_000
    assert len(record["class_accuracy"]) == 1 and record["class_accuracy"][0] > 0.3
    assert metrics["epochs_done"] == 1 and np.isfinite(metrics["history"][0]["loss"])


def test_a_model_without_pictures_skips_pretraining_and_says_why(tmp_path):
    config = dataclasses.replace(
        with_train(epochs=1, image_pretraining="outside-catalogue"),
        model=dataclasses.replace(CONFIG.model, modalities="text"))
    metrics = train("shop", config, tmp_path / "run", verbose=0)
    assert "no image encoder" in metrics["image_pretraining"]["skipped"]


def test_config_refuses_an_unknown_source_or_zero_epochs():
    with pytest.raises(ValueError, match="train.image_pretraining must be one of"):
        TrainConfig(image_pretraining="catalogue")
    with pytest.raises(ValueError, match="image_pretraining_epochs must be at least 1"):
        RunConfig.from_dict({"train": {"image_pretraining_epochs": 0}})
