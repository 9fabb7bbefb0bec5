"""Readers for every supported source produce the same contracts."""

from __future__ import annotations

import io
import json

import numpy as np
import pyarrow as pa
import pytest
import pyarrow.parquet as pq
from conftest import INTERACTIONS, ITEMS
from PIL import Image

from mmrec.data import load_dataset
from mmrec.data.movielens import load_movielens_100k


def test_movielens_100k_from_the_wheel():
    dataset = load_movielens_100k()
    log, catalogue = dataset.interactions, dataset.catalogue
    assert (log.num_users, len(catalogue), len(log)) == (943, 1682, 100_000)
    assert catalogue.images is None and not catalogue.image_mask.any()
    assert catalogue.text_mask.all()
    toy_story = catalogue.index()["1"]
    assert catalogue.texts[toy_story] == "Toy Story 1995 Animation Children's Comedy"
    assert catalogue.metadata["title"][toy_story] == "Toy Story"
    # The first row of ml-100k.inter is user 196 rating item 242 at 881250949.
    assert log.user_ids[log.user[0]] == "196"
    assert catalogue.item_ids[log.item[0]] == "242" and log.timestamp[0] == 881250949


def test_jsonl_and_parquet_read_like_csv(tmp_path, shop_folder):
    csv_dataset = load_dataset(shop_folder(), image_size=8)
    jsonl = tmp_path / "jsonl"
    jsonl.mkdir()
    (jsonl / "items.jsonl").write_text("\n".join(json.dumps(
        {k: v for k, v in r.items() if k != "image_path"}) for r in ITEMS))
    (jsonl / "interactions.jsonl").write_text("\n".join(json.dumps(
        dict(r, timestamp=int(r["timestamp"]))) for r in INTERACTIONS))
    parquet = tmp_path / "parquet"
    parquet.mkdir()
    encoded = []
    for k in range(3):
        buffer = io.BytesIO()
        Image.fromarray(np.full((5, 5, 3), 40 * (k + 1), dtype=np.uint8)).save(buffer, "PNG")
        encoded.append(buffer.getvalue())
    pq.write_table(pa.table({"item_id": [r["item_id"] for r in ITEMS],
                             "title": [r["title"] for r in ITEMS],
                             "description": [r["description"] for r in ITEMS],
                             "image": encoded}), parquet / "items.parquet")
    pq.write_table(pa.table({k: [r[k] for r in INTERACTIONS] for k in INTERACTIONS[0]}),
                   parquet / "interactions.parquet")
    for folder in (jsonl, parquet):
        dataset = load_dataset(folder, image_size=8)
        assert dataset.catalogue.texts == csv_dataset.catalogue.texts
        np.testing.assert_array_equal(dataset.interactions.item, csv_dataset.interactions.item)
        np.testing.assert_array_equal(dataset.interactions.timestamp,
                                      csv_dataset.interactions.timestamp)
    parquet_dataset = load_dataset(parquet, image_size=8)
    assert parquet_dataset.catalogue.image_mask.all()
    np.testing.assert_array_equal(parquet_dataset.catalogue.images, csv_dataset.catalogue.images)


def test_pictures_are_decoded_and_resized(shop_folder):
    dataset = load_dataset(shop_folder(), image_size=6, image_channels=1)
    images = dataset.catalogue.images
    assert images.shape == (3, 6, 6, 1) and images.dtype == np.uint8
    assert images[0].mean() < images[1].mean() < images[2].mean()


def test_precomputed_features_align_with_kept_items(shop_folder):
    folder = shop_folder(items=ITEMS + [dict(ITEMS[0])])  # a duplicate row, skipped
    np.save(folder / "text_feat.npy", np.arange(8, dtype=np.float32).reshape(4, 2))
    dataset = load_dataset(folder)
    np.testing.assert_array_equal(dataset.catalogue.text_features, [[0, 1], [2, 3], [4, 5]])
    assert dataset.catalogue.coverage()["text_features"] == 1.0


def test_recbole_atomic_folder(tmp_path):
    folder = tmp_path / "tiny"
    folder.mkdir()
    (folder / "tiny.item").write_text(
        "item_id:token\tname:token_seq\tprice:float\tgenre:token\n"
        "a\tThe First\t1.5\tdrama\nb\tSecond One\t2.0\tcomedy\n")
    (folder / "tiny.inter").write_text(
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
        "u1\ta\t5\t10\nu1\tb\t3\t20\nu2\tb\t4\t15\n")
    dataset = load_dataset(folder)
    assert dataset.catalogue.texts == ["The First drama", "Second One comedy"]  # no float
    assert len(dataset.interactions) == 3 and dataset.interactions.num_users == 2


def test_mmrec_layout_with_x_label(tmp_path):
    folder = tmp_path / "baby"
    folder.mkdir()
    np.save(folder / "image_feat.npy", np.random.default_rng(0).random((4, 6)))
    np.save(folder / "text_feat.npy", np.random.default_rng(1).random((4, 3)))
    rows = ["userID\titemID\trating\ttimestamp\tx_label"]
    rows += [f"{u}\t{i}\t5\t{t}\t{x}" for u, i, t, x in [
        (0, 0, 1, 0), (0, 1, 2, 1), (0, 2, 3, 2), (1, 3, 1, 0), (1, 9, 2, 0), (1, 0, 3, 2)]]
    (folder / "baby.inter").write_text("\n".join(rows) + "\n")
    dataset = load_dataset(folder)
    assert len(dataset.catalogue) == 4
    assert dataset.catalogue.image_features.shape == (4, 6)
    assert dataset.catalogue.text_features.shape == (4, 3)
    assert dataset.report.count("unknown item id") == 1  # item 9 has no feature row
    assert dataset.explicit_split.tolist() == ["train", "valid", "test", "train", "test"]
    coverage = dataset.catalogue.coverage()
    assert coverage["text"] == 0.0 and coverage["image_features"] == 1.0


def test_picture_resize_weights_are_a_normalised_antialiased_triangle():
    from mmrec.data.images import resize_pixels, resize_weights
    assert np.array_equal(resize_weights(5, 5), np.eye(5))            # same size: copied
    halves = resize_weights(8, 4)
    np.testing.assert_allclose(halves.sum(1), 1.0)
    # shrinking by 2: each output pixel is a triangle over 4 input pixels (antialiased)
    np.testing.assert_allclose(halves[1, 1:5], [1 / 8, 3 / 8, 3 / 8, 1 / 8])
    flat = np.full((9, 7, 3), 200, np.uint8)
    assert (resize_pixels(flat, 4, 3) == 200).all() and (resize_pixels(flat, 13, 1) == 200).all()
    red = np.zeros((4, 4, 3), np.uint8)
    red[..., 0] = 255
    assert (resize_pixels(red, 2, 1) == 76).all()                     # 0.299 * 255, ITU-R 601


def test_a_parquet_feed_streams_in_batches_with_rows_numbered_across_them(tmp_path,
                                                                          monkeypatch):
    import mmrec.data.tables as tables
    from mmrec.data.tables import read_table
    monkeypatch.setattr(tables, "PARQUET_BATCH_ROWS", 4)
    times = pa.array(np.arange(10) * 1_000_000_000 + 123, pa.timestamp("ns"))  # +123 ns
    pq.write_table(pa.table({"user_id": [f"u{i % 3}" for i in range(10)],
                             "item_id": [str(i) for i in range(10)], "timestamp": times}),
                   tmp_path / "clicks.parquet", row_group_size=3)
    columns, rows = read_table(tmp_path / "clicks.parquet")
    assert columns == ["user_id", "item_id", "timestamp"]
    first = next(rows)
    assert first[0] == 1 and first[1]["item_id"] == "0"
    rest = list(rows)
    assert [number for number, _ in rest] == list(range(2, 11))
    assert [row["item_id"] for _, row in rest] == [str(i) for i in range(1, 10)]
    assert rest[-1][1]["timestamp"].microsecond == 0 and rest[-1][1]["timestamp"].second == 9


def test_a_damaged_parquet_file_is_named_when_it_is_opened(tmp_path):
    from mmrec.data.problems import DataError
    from mmrec.data.tables import read_table
    path = tmp_path / "clicks.parquet"
    pq.write_table(pa.table({"item_id": ["a", "b"]}), path)
    path.write_bytes(path.read_bytes()[:-12])          # the footer cut off
    with pytest.raises(DataError, match="clicks.parquet.*not a readable Parquet file"):
        read_table(path)
