"""The Fashion-MNIST loader and the simulated shop, on the real images.

The shop is a benchmark only if its promises hold: same seed, same data;
image-only attributes never leak into text; clicks follow the written-down
utilities, the interest shift is real, and the ground truth's user indices
are those of the click log. Each test below can fail if one of them breaks.
"""

from __future__ import annotations

import gzip
import re
import time
from pathlib import Path

import numpy as np
import pytest

from mmrec.data import fashion_mnist
from mmrec.data.fashion_mnist import CATEGORY_WORDS, CLASS_NAMES, load_fashion_mnist
from mmrec.data.problems import DataError
from mmrec.data.shop import (
    ATTRIBUTE_OFFSETS,
    ATTRIBUTE_VALUES,
    BRANDS,
    FIT_WORDS,
    MATERIALS,
    ShopConfig,
    generate_shop,
)

SMALL = dict(num_items=500, num_users=200, num_clicks=5_000)

# Words that would give an image-only attribute (shade, pattern) away in text.
IMAGE_ONLY_WORDS = ("light", "medium", "dark", "plain", "pattern", "stripe", "check",
                    "black", "white", "grey", "gray", "pale", "solid", "print")


@pytest.fixture(scope="module")
def default_shop():
    started = time.perf_counter()
    dataset = generate_shop()
    return dataset, time.perf_counter() - started


@pytest.fixture(scope="module")
def small_shop():
    return generate_shop(ShopConfig(**SMALL))


@pytest.fixture(scope="module")
def shifted_shop():
    return generate_shop(ShopConfig(**SMALL, shift_share=0.5))


def row_utilities(dataset, rows) -> np.ndarray:
    """[len(rows), N] true utilities at each row's time, with its session focus."""
    truth, log = dataset.ground_truth, dataset.interactions
    return np.stack([truth.utility(int(log.user[r]), log.timestamp[r], truth.session_focus[r])
                     for r in rows])


# --- Fashion-MNIST loader ---------------------------------------------------------------

def test_loader_reads_all_images_train_first():
    images, labels = load_fashion_mnist()
    assert images.shape == (70_000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (70_000,) and labels.dtype == np.int64
    assert np.array_equal(np.bincount(labels), np.full(10, 7_000))
    assert np.array_equal(np.bincount(labels[:60_000]), np.full(10, 6_000))
    assert labels[0] == CLASS_NAMES.index("Ankle boot")  # the first training image
    assert load_fashion_mnist()[0] is images  # cached in-process
    assert not images.flags.writeable  # shared, so read-only
    assert len(CLASS_NAMES) == len(CATEGORY_WORDS) == 10
    assert CLASS_NAMES[0] == "T-shirt/top" and CATEGORY_WORDS[9] == "ankle boots"


def link_real_files(folder: Path, except_name: str | None = None) -> Path:
    source = fashion_mnist.find_fashion_mnist_dir()
    folder.mkdir(exist_ok=True)
    for name in fashion_mnist.FILE_NAMES:
        if name != except_name:
            (folder / name).symlink_to(source / name)
    return folder


def test_loader_follows_environment_variable(tmp_path, monkeypatch):
    default_images, default_labels = load_fashion_mnist()
    folder = link_real_files(tmp_path / "fmnist")
    monkeypatch.setenv(fashion_mnist.ENV_DIRECTORY, str(folder))
    assert fashion_mnist.find_fashion_mnist_dir() == folder
    assert fashion_mnist.fashion_mnist_source() == str(folder)
    images, labels = load_fashion_mnist()
    assert images is not default_images  # read from the new place, not the cache
    assert np.array_equal(images, default_images) and np.array_equal(labels, default_labels)


def test_missing_data_says_how_to_get_it(tmp_path, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv(fashion_mnist.ENV_DIRECTORY, str(empty))
    monkeypatch.delenv(fashion_mnist.ENV_ALLOW_DOWNLOAD, raising=False)
    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", tmp_path / "no-debian")
    monkeypatch.setattr(fashion_mnist, "KERAS_CACHE_DIR", tmp_path / "no-keras")
    with pytest.raises(DataError) as caught:
        load_fashion_mnist()
    message = str(caught.value)
    assert "apt-get install dataset-fashion-mnist" in message
    assert "MMREC_FASHION_MNIST_DIR" in message and "MMREC_ALLOW_DOWNLOAD=1" in message
    assert str(empty) in message  # says where it looked
    with pytest.raises(DataError, match="Fashion-MNIST"):
        generate_shop(ShopConfig(**SMALL))


def test_incomplete_folder_names_the_missing_file(tmp_path, monkeypatch):
    folder = link_real_files(tmp_path / "partial", except_name="t10k-labels-idx1-ubyte.gz")
    monkeypatch.setenv(fashion_mnist.ENV_DIRECTORY, str(folder))
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz missing"):
        load_fashion_mnist()


HEADER = (0x803).to_bytes(4, "big") + b"".join(
    n.to_bytes(4, "big") for n in (60_000, 28, 28))


@pytest.mark.parametrize("content, complaint", [
    (gzip.compress((0x801).to_bytes(4, "big") + bytes(100)), "magic number"),
    (gzip.compress(HEADER + bytes(1000)), "bytes; expected"),
    (gzip.compress(HEADER[:4] + (5).to_bytes(4, "big") + HEADER[8:] + bytes(5 * 784)),
     "dimensions"),
    (b"not gzip at all", "gzip"),
    (gzip.compress(b"\x00\x00"), "too short"),
])
def test_corrupt_idx_file_is_named(tmp_path, monkeypatch, content, complaint):
    name = "train-images-idx3-ubyte.gz"
    folder = link_real_files(tmp_path / "corrupt", except_name=name)
    (folder / name).write_bytes(content)
    monkeypatch.setenv(fashion_mnist.ENV_DIRECTORY, str(folder))
    with pytest.raises(DataError, match=complaint) as caught:
        load_fashion_mnist()
    assert str(folder / name) in str(caught.value)


# --- the shop: size, determinism, content ---------------------------------------------

def test_default_shop_size_and_coverage(default_shop):
    dataset, seconds = default_shop
    catalogue, log = dataset.catalogue, dataset.interactions
    assert dataset.name == "shop"
    assert "Fashion-MNIST" in dataset.source and "seed=0" in dataset.source
    assert len(catalogue) == 5_000 and log.num_users == 2_000
    assert 90_000 <= len(log) <= 110_000
    assert np.bincount(log.user, minlength=log.num_users).min() >= 5
    assert catalogue.coverage()["text"] == 1.0 and catalogue.coverage()["image"] == 1.0
    assert catalogue.images.shape == (5_000, 28, 28, 1) and catalogue.images.dtype == np.uint8
    assert all(re.fullmatch(r"shop-\d{5}", item_id) for item_id in catalogue.item_ids)
    assert all(re.fullmatch(r"u\d{4}", user_id) for user_id in log.user_ids)
    assert set(catalogue.metadata) == {"title", *ATTRIBUTE_VALUES}
    assert seconds < 15, f"default shop took {seconds:.1f} s to generate"


def test_catalogue_images_are_the_fashion_mnist_images(small_shop):
    images, labels = load_fashion_mnist()
    catalogue = small_shop.catalogue
    index = np.array([int(item_id.split("-")[1]) for item_id in catalogue.item_ids])
    assert np.array_equal(catalogue.images[..., 0], images[index])
    assert catalogue.metadata["category"] == [CLASS_NAMES[k] for k in labels[index]]


def test_same_seed_same_shop_other_seed_other_shop(small_shop):
    again = generate_shop(ShopConfig(**SMALL))
    assert np.array_equal(again.catalogue.item_ids, small_shop.catalogue.item_ids)
    assert again.catalogue.texts == small_shop.catalogue.texts
    assert again.catalogue.metadata == small_shop.catalogue.metadata
    for field in ("user", "item", "timestamp", "user_ids"):
        assert np.array_equal(getattr(again.interactions, field),
                              getattr(small_shop.interactions, field))
    assert np.array_equal(again.ground_truth.session_focus, small_shop.ground_truth.session_focus)
    assert np.array_equal(again.ground_truth.taste_before, small_shop.ground_truth.taste_before)

    other = generate_shop(ShopConfig(**SMALL, seed=1))
    assert not np.array_equal(other.catalogue.item_ids, small_shop.catalogue.item_ids)
    assert other.catalogue.texts != small_shop.catalogue.texts
    assert len(other.interactions) != len(small_shop.interactions) or not np.array_equal(
        other.interactions.item, small_shop.interactions.item)


def test_text_names_text_attributes_and_never_image_only_ones(default_shop):
    catalogue = default_shop[0].catalogue
    meta = catalogue.metadata
    forbidden = re.compile("|".join(IMAGE_ONLY_WORDS))
    leaks = [text for text in catalogue.texts if forbidden.search(text.lower())]
    assert not leaks, f"image-only attribute words in text, e.g. {leaks[:3]}"
    for i, text in enumerate(catalogue.texts):
        assert meta["brand"][i] in text and meta["material"][i] in text.lower()
        assert CATEGORY_WORDS[CLASS_NAMES.index(meta["category"][i])] in text
        fit_words = FIT_WORDS[ATTRIBUTE_VALUES["fit"].index(meta["fit"][i])]
        other_words = FIT_WORDS[1 - ATTRIBUTE_VALUES["fit"].index(meta["fit"][i])]
        words = set(re.findall(r"[a-z]+", text.lower()))
        assert words & set(fit_words) and not words & set(other_words), text
        assert text.startswith(meta["title"][i] + ". ")
    assert set(meta["brand"]) == set(BRANDS) and set(meta["material"]) == set(MATERIALS)
    assert len(set(catalogue.texts)) > len(catalogue) // 4  # templates vary


def test_measured_attributes_follow_the_pixels(default_shop):
    catalogue = default_shop[0].catalogue
    images = catalogue.images[..., 0].astype(float)
    meta = {name: np.array(values) for name, values in catalogue.metadata.items()}
    lit = images > 0
    brightness = (images * lit).sum(axis=(1, 2)) / lit.sum(axis=(1, 2))
    columns = lit.any(axis=1).sum(axis=1)
    texture = np.abs(np.diff(images, axis=2)).sum(axis=(1, 2)) / lit.sum(axis=(1, 2))
    for category in CLASS_NAMES:
        inside = meta["category"] == category
        # Fashion-MNIST is negated: bright pixels are a dark product.
        shade = [brightness[inside & (meta["shade"] == s)].mean()
                 for s in ("light", "medium", "dark")]
        assert shade[0] < shade[1] < shade[2], (category, shade)
        assert (columns[inside & (meta["fit"] == "wide")].mean()
                >= columns[inside & (meta["fit"] == "slim")].mean()), category
        assert (texture[inside & (meta["pattern"] == "patterned")].mean()
                > texture[inside & (meta["pattern"] == "plain")].mean()), category
    counts = {s: int((meta["shade"] == s).sum()) for s in ("light", "medium", "dark")}
    assert min(counts.values()) > 0.3 * len(catalogue), counts


# --- the shop: the click log and its ground truth -------------------------------------

def test_no_repeat_clicks_and_time_order(default_shop):
    log = default_shop[0].interactions
    pairs = log.user.astype(np.int64) * 100_000 + log.item
    assert len(np.unique(pairs)) == len(log)
    assert np.all(np.diff(log.timestamp) >= 0)
    assert np.array_equal(log.timestamp, np.round(log.timestamp))
    config = ShopConfig()
    assert log.timestamp.min() >= config.start_time
    assert log.timestamp.max() <= config.start_time + config.time_span_s
    assert log.item.min() >= 0 and log.item.max() < len(default_shop[0].catalogue)


def test_sessions_are_contiguous_and_have_one_focus(small_shop):
    truth, log = small_shop.ground_truth, small_shop.interactions
    assert len(truth.session) == len(truth.session_focus) == len(log)
    for session in np.unique(truth.session)[:300]:
        rows = np.flatnonzero(truth.session == session)
        assert len(np.unique(log.user[rows])) == 1
        assert len(np.unique(truth.session_focus[rows])) == 1
        assert log.timestamp[rows].max() - log.timestamp[rows].min() < 6 * 3600
    categories = truth.item_attributes["category"][log.item]
    assert (categories == truth.session_focus).mean() > 0.3  # vs 0.1 by chance


def test_clicks_follow_true_utility_of_the_right_user(default_shop):
    dataset = default_shop[0]
    log = dataset.interactions
    rows = np.random.default_rng(0).choice(len(log), size=2_000, replace=False)
    utility = row_utilities(dataset, rows)
    clicked = utility[np.arange(len(rows)), log.item[rows]]
    percentile = (utility < clicked[:, None]).mean(axis=1)
    assert clicked.mean() > utility.mean() + 2 * utility.std(axis=1).mean()
    assert np.median(percentile) > 0.95
    # Another user's tastes explain the same clicks far worse: indices line up.
    truth = dataset.ground_truth
    other_user = (log.user[rows] + 1) % log.num_users
    other = np.stack([truth.utility(int(u), t, f) for u, t, f in zip(
        other_user, log.timestamp[rows], truth.session_focus[rows])])
    other_percentile = (other < other[np.arange(len(rows)), log.item[rows]][:, None]).mean(axis=1)
    assert np.median(other_percentile) < np.median(percentile) - 0.2


def test_most_popular_is_weak_but_better_than_chance(default_shop):
    dataset = default_shop[0]
    log = dataset.interactions
    popularity = dataset.ground_truth.popularity
    clicks = np.bincount(log.item, minlength=len(dataset.catalogue))
    assert np.corrcoef(popularity, clicks)[0, 1] > 0.1
    top = np.argsort(-clicks)[:10]
    assert clicks[top].sum() / len(log) < 0.05  # no item dominates the log


def test_interest_shift_is_visible_after_t_shift(shifted_shop, small_shop):
    truth, log = shifted_shop.ground_truth, shifted_shop.interactions
    assert truth.shifted.sum() == 100
    assert np.array_equal(truth.taste_before[~truth.shifted], truth.taste_after[~truth.shifted])
    assert not np.allclose(truth.taste_before[truth.shifted], truth.taste_after[truth.shifted])
    late = np.flatnonzero(truth.shifted[log.user] & (log.timestamp >= truth.t_shift))
    early = np.flatnonzero(truth.shifted[log.user] & (log.timestamp < truth.t_shift))
    assert len(late) > 100 and len(early) > 100

    def mean_percentile(rows, at_time):
        scores = np.stack([truth.utility(int(log.user[r]), at_time(r), truth.session_focus[r])
                           for r in rows])
        clicked = scores[np.arange(len(rows)), log.item[rows]]
        return (scores < clicked[:, None]).mean(axis=1).mean()

    before = lambda r: truth.t_shift - 1  # noqa: E731
    after = lambda r: log.timestamp[r]  # noqa: E731
    assert mean_percentile(late, after) > mean_percentile(late, before) + 0.15
    assert mean_percentile(early, before) > 0.9
    assert shifted_shop.ground_truth.t_shift == ShopConfig(**SMALL).t_shift
    assert small_shop.ground_truth.taste_after is small_shop.ground_truth.taste_before
    assert not small_shop.ground_truth.shifted.any()


@pytest.fixture(scope="module")
def trend_shop():
    return generate_shop(ShopConfig(**SMALL, trend_weights=(1.0, 3.0, 3.0, 1.0, 1 / 3, 1 / 3),
                                    new_item_share=0.1))


def test_trend_reweighs_every_users_tastes_from_t_shift(trend_shop, small_shop):
    truth, log = trend_shop.ground_truth, trend_shop.interactions
    assert not truth.shifted.any()
    weights = np.repeat([1.0, 3.0, 3.0, 1.0, 1 / 3, 1 / 3],
                        [len(v) for v in ATTRIBUTE_VALUES.values()])
    np.testing.assert_allclose(truth.taste_after, truth.taste_before * weights)
    # Before T the shop is the one without a trend: same tastes for the same seed.
    np.testing.assert_array_equal(truth.taste_before, small_shop.ground_truth.taste_before)
    assert np.array_equal(truth.taste(0, truth.t_shift - 1), truth.taste_before[0])
    assert np.array_equal(truth.taste(0, truth.t_shift), truth.taste_after[0])

    # After T, the clicked items' image-only attributes follow the user's tastes
    # more closely, and the text-only ones less: compare how often the clicked
    # item has the user's favourite shade (image only) and brand (text only).
    def favourite_share(rows, group):
        offset = ATTRIBUTE_OFFSETS[group]
        size = len(ATTRIBUTE_VALUES[group])
        favourite = np.argmax(truth.taste_before[log.user[rows], offset:offset + size], axis=1)
        return (truth.item_attributes[group][log.item[rows]] == favourite).mean()

    early = np.flatnonzero(log.timestamp < truth.t_shift)
    late = np.flatnonzero(log.timestamp >= truth.t_shift)
    assert favourite_share(late, "shade") > favourite_share(early, "shade") + 0.05
    assert favourite_share(late, "brand") < favourite_share(early, "brand") - 0.05


def test_new_items_appear_only_after_t_shift(trend_shop, small_shop):
    truth, log = trend_shop.ground_truth, trend_shop.interactions
    new = truth.new_items
    assert new.sum() == 50 and not small_shop.ground_truth.new_items.any()
    assert not new[log.item[log.timestamp < truth.t_shift]].any()
    late_items = log.item[log.timestamp >= truth.t_shift]
    assert new[late_items].mean() > 0.05  # they are clicked once they exist
    # The catalogue is the same as without them: only when items may be clicked changes.
    assert np.array_equal(trend_shop.catalogue.item_ids, small_shop.catalogue.item_ids)


@pytest.mark.parametrize("bad", [
    dict(trend_weights=(1.0, 2.0)), dict(trend_weights=(1, 1, 1, 1, 1, -1)),
    dict(new_item_share=1.0), dict(new_item_share=-0.1),
    dict(num_items=70_001), dict(num_items=0), dict(num_users=0),
    dict(num_clicks=10, num_users=10), dict(shift_share=1.5), dict(shift_share=-0.1),
    dict(shift_at=2.0), dict(temperature=0.0), dict(mean_session_length=0.5),
    dict(focus_bonus=-1.0), dict(popularity_scale=-0.1), dict(taste_spread=(1.0, 1.0)),
    dict(time_span_days=0), dict(seed=-1), dict(min_clicks_per_user=0),
])
def test_config_rejects_bad_values(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        ShopConfig(**bad)
