"""Each kind of bad input gets a clear error (file, row, field) or a counted skip."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import INTERACTIONS, ITEMS, write_csv

from mmrec.data import DataError, load_dataset


def test_well_formed_folder_loads_without_problems(shop_folder):
    dataset = load_dataset(shop_folder(), image_size=16)
    assert len(dataset.catalogue) == 3 and len(dataset.interactions) == 5
    # The fixture log goes back in time twice on purpose; nothing else is reported.
    assert dataset.report.count() == dataset.report.count("timestamp earlier") == 2
    assert dataset.catalogue.image_mask.all() and dataset.catalogue.text_mask.all()
    assert dataset.catalogue.images.shape == (3, 16, 16, 3)


def test_malformed_row_names_file_and_row(shop_folder):
    folder = shop_folder()
    with open(folder / "interactions.csv", "a") as handle:
        handle.write("u3,i1\n")  # two fields where three are expected
    with pytest.raises(DataError) as error:
        load_dataset(folder)
    assert "interactions.csv" in str(error.value)
    assert error.value.row == 6
    assert "expected 3 fields" in str(error.value)


def test_missing_column_names_the_field(shop_folder):
    folder = shop_folder(interactions=[{k: v for k, v in r.items() if k != "timestamp"}
                                       for r in INTERACTIONS])
    with pytest.raises(DataError) as error:
        load_dataset(folder)
    assert error.value.field == "timestamp"
    assert "interactions.csv" in str(error.value)


def test_missing_item_id_column_in_items(shop_folder):
    folder = shop_folder(items=[{"sku": r["item_id"], "title": r["title"]} for r in ITEMS])
    with pytest.raises(DataError, match="missing required column 'item_id'") as error:
        load_dataset(folder)
    assert "items.csv" in str(error.value)


def test_unknown_item_is_a_counted_skip(shop_folder):
    rows = INTERACTIONS + [{"user_id": "u1", "item_id": "nope", "timestamp": "400"},
                           {"user_id": "u2", "item_id": "gone", "timestamp": "500"}]
    dataset = load_dataset(shop_folder(interactions=rows))
    assert len(dataset.interactions) == 5
    assert dataset.report.count("unknown item id") == 2
    assert any("row 6 item_id='nope'" in line for line in dataset.report.summary())


def test_corrupt_and_missing_images_keep_the_item_without_image(shop_folder):
    folder = shop_folder()
    (folder / "img" / "i2.png").write_bytes(b"this is not a png")
    (folder / "img" / "i3.png").unlink()
    dataset = load_dataset(folder, image_size=8)
    assert len(dataset.catalogue) == 3
    assert dataset.catalogue.image_mask.tolist() == [True, False, False]
    assert not dataset.catalogue.images[1:].any()  # no fake pixels where none were read
    assert dataset.report.count("corrupt image") == 1
    assert dataset.report.count("missing image file") == 1


def test_empty_text_is_counted_and_masked(shop_folder):
    items = [dict(ITEMS[0]), dict(ITEMS[1], title="", description="  "), dict(ITEMS[2])]
    dataset = load_dataset(shop_folder(items=items))
    assert dataset.catalogue.text_mask.tolist() == [True, False, True]
    assert dataset.report.count("empty text") == 1


def test_duplicate_rows_are_counted_skips(shop_folder):
    items = ITEMS + [dict(ITEMS[0], title="second copy")]
    interactions = INTERACTIONS + [dict(INTERACTIONS[0])]
    dataset = load_dataset(shop_folder(items=items, interactions=interactions))
    assert len(dataset.catalogue) == 3
    assert dataset.catalogue.metadata["title"][0] == "Red wool coat"  # first row kept
    assert len(dataset.interactions) == 5
    assert dataset.report.count("duplicate item id") == 1
    assert dataset.report.count("duplicate interaction") == 1


def test_non_monotonic_timestamps_are_counted_and_sorted(shop_folder):
    # INTERACTIONS goes 100, 200, 150 (back in time), 300, 250 (back in time).
    dataset = load_dataset(shop_folder())
    assert dataset.report.count("timestamp earlier than the row before") == 2
    order = dataset.interactions.chronological_order()
    assert np.all(np.diff(dataset.interactions.timestamp[order][:3]) > 0)


def test_bad_timestamp_names_row_and_field(shop_folder):
    rows = [dict(r) for r in INTERACTIONS]
    rows[3]["timestamp"] = "yesterday"
    with pytest.raises(DataError) as error:
        load_dataset(shop_folder(interactions=rows))
    assert (error.value.row, error.value.field) == (4, "timestamp")
    assert "'yesterday'" in str(error.value)


def test_iso_timestamps_are_accepted(shop_folder):
    rows = [dict(r, timestamp=f"2024-01-0{k + 1}T10:00:00Z") for k, r in enumerate(INTERACTIONS)]
    dataset = load_dataset(shop_folder(interactions=rows))
    assert dataset.interactions.timestamp[0] == 1704103200.0


def test_empty_ids_are_errors(shop_folder):
    rows = [dict(r) for r in INTERACTIONS]
    rows[1]["user_id"] = ""
    with pytest.raises(DataError) as error:
        load_dataset(shop_folder(interactions=rows))
    assert (error.value.row, error.value.field) == (2, "user_id")


def test_bad_jsonl_line_names_the_row(tmp_path):
    (tmp_path / "items.jsonl").write_text(
        json.dumps({"item_id": "a", "title": "A"}) + "\n{not json}\n")
    write_csv(tmp_path / "interactions.csv", [{"user_id": "u", "item_id": "a", "timestamp": 1}])
    with pytest.raises(DataError) as error:
        load_dataset(tmp_path)
    assert error.value.row == 2 and "items.jsonl" in str(error.value)


def test_atomic_header_without_type_is_an_error(tmp_path):
    folder = tmp_path / "mini"
    folder.mkdir()
    (folder / "mini.inter").write_text("user_id\titem_id:token\ttimestamp:float\nu\ti\t1\n")
    with pytest.raises(DataError, match="needs a type suffix") as error:
        load_dataset(folder)
    assert error.value.field == "user_id" and error.value.row == 0


def test_misaligned_feature_matrix_is_an_error(shop_folder):
    folder = shop_folder()
    np.save(folder / "text_feat.npy", np.zeros((2, 4), dtype=np.float32))
    with pytest.raises(DataError, match=r"expected a \[3, D\] matrix") as error:
        load_dataset(folder)
    assert "text_feat.npy" in str(error.value)


def test_unknown_name_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="neither a built-in data set"):
        load_dataset(tmp_path / "does-not-exist")
    with pytest.raises(DataError, match="not a data folder"):
        load_dataset(tmp_path)
