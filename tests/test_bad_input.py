"""Each kind of bad input gets a clear error (file, row, field) or a counted skip."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import logging
import os
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import INTERACTIONS, ITEMS, write_csv
from PIL import Image

from mmrec.data import Catalogue, DataError, Dataset, Interactions, load_dataset
from mmrec.data.records import parse_timestamp
from mmrec.data.splits import SplitConfig, make_split
from mmrec.data.tables import read_table
from mmrec.data.timestamps import TIMESTAMP_UNITS, timestamp_seconds


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


# --- Bad input that real exports produce ------------------------------------------------


def tiny_split_dataset() -> Dataset:
    """Users a and b, items 0-2, times 5, 3 and 7 (the split-file tests' log)."""
    log = Interactions.build(users=["a", "a", "b"], items=[0, 1, 2], timestamps=[5, 3, 7])
    return Dataset("tiny", Catalogue.build(["0", "1", "2"], ["x", "y", "z"]), log)


def reencode(path: Path, encoding: str) -> None:
    """Rewrites a UTF-8 text file in ``encoding`` (a cp1252 export, a BOM)."""
    path.write_bytes(path.read_text(encoding="utf-8").encode(encoding))


@contextlib.contextmanager
def local_time_zone(name: str):
    """The process's local time zone set to ``name`` (naive-time bugs show here)."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = name
    time.tzset()
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = before
        time.tzset()


def write_splits(path: Path, rows: list[tuple[str, str, str, str]]) -> None:
    write_csv(path, [{"user_id": u, "item_id": i, "timestamp": t, "split": s}
                     for u, i, t, s in rows])


# 1. A text field over the csv module's default limit of 131,072 characters.

def test_text_field_over_the_csv_default_limit_is_read(shop_folder):
    description = "soft merino wool " * 12_000  # 204,000 characters
    items = [dict(ITEMS[0], description=description.strip())] + ITEMS[1:]
    dataset = load_dataset(shop_folder(items=items))
    assert dataset.catalogue.texts[0] == "Red wool coat " + description.strip()
    assert dataset.report.count() == dataset.report.count("timestamp earlier") == 2


# 2. Bytes that are not UTF-8.

def test_cp1252_file_read_as_utf8_names_file_row_field_and_the_fix(shop_folder):
    folder = shop_folder(items=[ITEMS[0], dict(ITEMS[1], title="Café crème"), ITEMS[2]])
    reencode(folder / "items.csv", "cp1252")
    with pytest.raises(DataError) as error:
        load_dataset(folder)
    assert (Path(error.value.file).name, error.value.row, error.value.field) == (
        "items.csv", 2, "title")
    assert str(error.value) == (
        f"file {folder / 'items.csv'}, row 2, field 'title': bytes b'\\xe9' in "
        "b'Caf\\xe9 cr\\xe8me' are not valid utf-8: the file is probably not UTF-8 (a "
        "Latin-1 or cp1252 export?); as cp1252 it reads 'Café crème'. Name the file's "
        "encoding with the encoding option: data.encoding = \"cp1252\" in the TOML config, "
        "--encoding cp1252 on the command line, encoding=\"cp1252\" in Python")


def test_encoding_option_reads_a_cp1252_folder_and_its_split_file(shop_folder):
    rows = [dict(r, user_id="Zoë" if r["user_id"] == "u2" else r["user_id"])
            for r in INTERACTIONS]
    folder = shop_folder(items=[ITEMS[0], dict(ITEMS[1], title="Café crème"), ITEMS[2]],
                         interactions=rows)
    write_splits(folder / "splits.csv", [(r["user_id"], r["item_id"], r["timestamp"], s)
                                         for r, s in zip(rows, ["train", "valid", "train",
                                                                "test", "test"])])
    for name in ("items.csv", "interactions.csv", "splits.csv"):
        reencode(folder / name, "cp1252")
    dataset = load_dataset(folder, encoding="cp1252")
    assert dataset.catalogue.metadata["title"][1] == "Café crème"
    assert dataset.interactions.user_ids.tolist() == ["u1", "Zoë"]
    assert dataset.read_options == {"encoding": "cp1252", "timestamp_unit": "auto"}
    assert dataset.explicit_split.tolist() == ["train", "valid", "train", "test", "test"]
    # The split file alone, read the way the data set was read:
    split = make_split(dataset, SplitConfig(split_file=str(folder / "splits.csv")))
    assert split.sizes() == {"train": 2, "valid": 1, "test": 2, "cold_items": 0}


def test_latin1_jsonl_names_row_and_field(tmp_path):
    (tmp_path / "items.jsonl").write_bytes(
        b'{"item_id": "a", "title": "Plain"}\n{"item_id": "b", "title": "Cr\xe8me"}\n')
    write_csv(tmp_path / "interactions.csv", [{"user_id": "u", "item_id": "a", "timestamp": 1}])
    with pytest.raises(DataError, match="probably not UTF-8") as error:
        load_dataset(tmp_path)
    assert (Path(error.value.file).name, error.value.row, error.value.field) == (
        "items.jsonl", 2, "title")
    assert "as cp1252 it reads 'Crème'" in str(error.value)
    dataset = load_dataset(tmp_path, encoding="latin-1")
    assert dataset.catalogue.texts == ["Plain", "Crème"]


def test_latin1_atomic_file_names_row_and_field(tmp_path):
    folder = tmp_path / "tiny"
    folder.mkdir()
    (folder / "tiny.item").write_bytes(
        b"item_id:token\tname:token_seq\na\tThe First\nb\tL'\xe9t\xe9\n")
    (folder / "tiny.inter").write_bytes(
        b"user_id:token\titem_id:token\ttimestamp:float\nu1\ta\t10\nu1\tb\t20\n")
    with pytest.raises(DataError, match="Name the file's encoding") as error:
        load_dataset(folder)
    assert (Path(error.value.file).name, error.value.row, error.value.field) == (
        "tiny.item", 2, "name")
    assert load_dataset(folder, encoding="latin-1").catalogue.texts == ["The First", "L'été"]


def test_non_utf8_split_file_names_row_and_field(tmp_path):
    dataset = tiny_split_dataset()
    path = tmp_path / "splits.csv"
    path.write_bytes(b"user_id,item_id,timestamp,split\na,0,5,train\nb\xe9,2,7,test\n")
    with pytest.raises(DataError, match="probably not UTF-8") as error:
        make_split(dataset, SplitConfig(split_file=str(path)))
    assert (error.value.file, error.value.row, error.value.field) == (
        str(path), 2, "user_id")


def test_unknown_encoding_and_unit_are_refused_by_name(shop_folder):
    with pytest.raises(DataError, match="unknown text encoding 'klingon'"):
        load_dataset(shop_folder(), encoding="klingon")
    with pytest.raises(DataError, match="unknown text encoding 'base64'"):
        read_table(shop_folder() / "items.csv", encoding="base64")  # bytes-to-bytes codec
    with pytest.raises(ValueError, match=r"timestamp_unit must be one of \('auto', 's', "
                                         r"'ms', 'us', 'ns'\), got 'minutes'"):
        load_dataset(shop_folder(), timestamp_unit="minutes")


# 3. A UTF-8 byte-order mark.

def test_byte_order_mark_is_read_through(shop_folder, tmp_path):
    folder = shop_folder()
    for name in ("items.csv", "interactions.csv"):
        reencode(folder / name, "utf-8-sig")
    columns, _ = read_table(folder / "items.csv")
    assert columns[0] == "item_id"
    dataset = load_dataset(folder)
    assert dataset.catalogue.item_ids.tolist() == ["i1", "i2", "i3"]
    assert len(dataset.interactions) == 5
    jsonl = tmp_path / "jsonl"
    jsonl.mkdir()
    (jsonl / "items.jsonl").write_text('{"item_id": "a", "title": "A"}\n', encoding="utf-8-sig")
    (jsonl / "interactions.jsonl").write_text(
        '{"user_id": "u", "item_id": "a", "timestamp": 1}\n', encoding="utf-8-sig")
    assert load_dataset(jsonl).catalogue.item_ids.tolist() == ["a"]
    atomic = tmp_path / "tiny"
    atomic.mkdir()
    (atomic / "tiny.item").write_text("item_id:token\tname:token_seq\na\tThe First\n",
                                      encoding="utf-8-sig")
    (atomic / "tiny.inter").write_text("user_id:token\titem_id:token\ttimestamp:float\n"
                                       "u1\ta\t10\n", encoding="utf-8-sig")
    assert load_dataset(atomic).catalogue.texts == ["The First"]


def test_split_file_with_byte_order_mark(tmp_path):
    dataset = tiny_split_dataset()
    path = tmp_path / "splits.csv"
    path.write_text("user_id,item_id,timestamp,split\na,0,5,valid\nb,2,7,test\n",
                    encoding="utf-8-sig")
    split = make_split(dataset, SplitConfig(split_file=str(path)))
    assert split.valid.tolist() == [0] and split.test.tolist() == [2]


# 4. Epoch timestamps in milliseconds, microseconds or nanoseconds.

@pytest.mark.parametrize("unit,factor,name", [
    ("ms", 10**3, "milliseconds"), ("us", 10**6, "microseconds"),
    ("ns", 10**9, "nanoseconds")])
def test_epoch_units_are_detected_converted_and_reported(shop_folder, unit, factor, name):
    start = 1_704_103_200
    rows = [dict(r, timestamp=str((start + int(r["timestamp"])) * factor))
            for r in INTERACTIONS]
    dataset = load_dataset(shop_folder(interactions=rows))
    assert dataset.interactions.timestamp.tolist() == [start + 100, start + 200, start + 150,
                                                       start + 300, start + 250]
    assert dataset.report.count(f"timestamps in {name}") == 5
    file = dataset.report.entries()[0].file
    assert dataset.report.summary()[0] == (
        f"{file}: kept 5 x timestamps in {name} (detected from their magnitude), converted "
        f"to seconds (e.g. row 1 timestamp={(start + 100) * factor})")
    assert dataset.report.entries()[0].kept
    # Said explicitly, the unit is not "detected" and nothing is reported.
    explicit = load_dataset(shop_folder(interactions=rows), timestamp_unit=unit)
    assert explicit.interactions.timestamp.tolist() == dataset.interactions.timestamp.tolist()
    assert explicit.report.count("timestamps in") == 0
    assert timestamp_seconds((start + 100) * factor) == start + 100
    assert timestamp_seconds(str((start + 100) * factor), unit) == start + 100


def test_one_unit_per_file_decided_by_the_median(shop_folder):
    # A clock reset (0) and a seconds-sized value in a milliseconds file: the file's
    # median is milliseconds, so every row is milliseconds, never a mix.
    stamps = ["1704103200000", "1704103300000", "0", "1704103400000", "1704103500"]
    rows = [dict(r, timestamp=t) for r, t in zip(INTERACTIONS, stamps)]
    dataset = load_dataset(shop_folder(interactions=rows))
    assert dataset.interactions.timestamp.tolist() == [
        1704103200.0, 1704103300.0, 0.0, 1704103400.0, 1704103.5]
    assert dataset.report.count("timestamps in milliseconds") == 5


def test_explicit_seconds_override_detection_and_iso_is_already_seconds(shop_folder):
    rows = [dict(r, timestamp=str(int(r["timestamp"]) * 10**12)) for r in INTERACTIONS]
    dataset = load_dataset(shop_folder(interactions=rows), timestamp_unit="s")
    assert dataset.interactions.timestamp[0] == 1e14 and not dataset.report.count("timestamps")
    iso = [dict(r, timestamp="2024-01-01T10:00:00Z") for r in INTERACTIONS[:1]] + [
        dict(r, timestamp=str((1704103200 + k) * 1000)) for k, r in enumerate(INTERACTIONS[1:])]
    dataset = load_dataset(shop_folder(interactions=iso))
    assert dataset.interactions.timestamp.tolist() == [1704103200.0 + k for k in
                                                       (0, 0, 1, 2, 3)]
    assert dataset.report.count("timestamps in milliseconds") == 4  # the numbers only


def test_single_values_use_the_same_bands():
    assert timestamp_seconds(1704103200) == 1704103200.0
    assert timestamp_seconds(1704103200123) == 1704103200.123
    assert timestamp_seconds(1704103200123456) == 1704103200.123456
    assert timestamp_seconds("1704103200123456789") == 1704103200.1234567
    assert timestamp_seconds("2024-01-01T10:00:00Z") == 1704103200.0
    assert timestamp_seconds("2024-01-01T10:00:00") == 1704103200.0  # no zone: UTC
    assert timestamp_seconds(dt.datetime(2024, 1, 1, 10)) == 1704103200.0
    assert timestamp_seconds(99_999_999_999) == 99_999_999_999.0  # seconds: year 5138
    assert timestamp_seconds(100_000_000_000) == 100_000_000.0  # milliseconds: 1973
    assert parse_timestamp is timestamp_seconds  # the former name still imports
    with pytest.raises(DataError) as error:
        timestamp_seconds("soon", file="events.jsonl", row=3, field="ts")
    assert str(error.value) == ("file events.jsonl, row 3, field 'ts': timestamp 'soon' is "
                                "neither a number nor an ISO-8601 time")
    with pytest.raises(ValueError, match="got 'h'"):
        timestamp_seconds(1, "h")
    assert TIMESTAMP_UNITS == ("auto", "s", "ms", "us", "ns")


def test_split_file_in_milliseconds_matches_interactions_in_milliseconds(shop_folder):
    rows = [dict(r, timestamp=str(int(r["timestamp"]) * 10**10)) for r in INTERACTIONS]
    folder = shop_folder(interactions=rows)
    write_splits(folder / "splits.csv", [(r["user_id"], r["item_id"], r["timestamp"], s)
                                         for r, s in zip(rows, ["train", "valid", "train",
                                                                "test", "test"])])
    dataset = load_dataset(folder)
    assert dataset.explicit_split.tolist() == ["train", "valid", "train", "test", "test"]
    assert dataset.report.count("split row matches no interaction") == 0
    assert dataset.report.count("timestamps in milliseconds") == 10  # both files


# 5. Ids written differently in the two files.

def test_zero_padded_ids_that_match_nothing_stop_with_examples(shop_folder):
    items = [dict(r, item_id=i) for r, i in zip(ITEMS, ["7", "12", "3"])]
    padded = {"i1": "007", "i2": "012", "i3": "003"}
    rows = [dict(r, item_id=padded[r["item_id"]]) for r in INTERACTIONS]
    with pytest.raises(DataError) as error:
        load_dataset(shop_folder(items=items, interactions=rows))
    assert (Path(error.value.file).name, error.value.row, error.value.field) == (
        "interactions.csv", 1, "item_id")
    assert str(error.value).split(": ", 1)[1] == (
        "5 of 5 interactions name an item id that is not in items.csv (e.g. '007', '012', "
        "'003'), whose ids are such as '7', '12', '3'; ids are compared as text: '007' in "
        "interactions.csv and '7' in items.csv differ; with leading zeros and a trailing "
        "'.0' removed, 5 of the 5 would match. Write the ids the same way in both files")


def test_integer_ids_against_float_ids_stop_with_the_normalised_match(tmp_path):
    pq.write_table(pa.table({"item_id": [7.0, 12.0, 3.0], "title": ["a", "b", "c"]}),
                   tmp_path / "items.parquet")
    pq.write_table(pa.table({"user_id": ["u", "u", "v"], "item_id": [7, 12, 3],
                             "timestamp": [1, 2, 3]}), tmp_path / "interactions.parquet")
    with pytest.raises(DataError, match="3 of 3 interactions name an item id") as error:
        load_dataset(tmp_path)
    assert ("ids are compared as text: '7' in interactions.parquet and '7.0' in "
            "items.parquet differ" in str(error.value))


def test_unrelated_ids_stop_without_a_normalised_hint(shop_folder):
    rows = [dict(r, item_id=f"sku-{k}") for k, r in enumerate(INTERACTIONS)]
    rows[0] = dict(INTERACTIONS[0])  # one of five matches: still most are unknown
    with pytest.raises(DataError) as error:
        load_dataset(shop_folder(interactions=rows))
    assert error.value.row == 2
    assert str(error.value).split(": ", 1)[1] == (
        "4 of 5 interactions name an item id that is not in items.csv (e.g. 'sku-1', "
        "'sku-2', 'sku-3'), whose ids are such as 'i1', 'i2', 'i3'; check that both files "
        "come from the same catalogue and id column")


def test_a_few_unknown_ids_stay_counted_skips_that_name_the_normalised_match(shop_folder):
    items = [dict(r, item_id=i) for r, i in zip(ITEMS, ["7", "12", "3"])]
    rows = [dict(r, item_id={"i1": "7", "i2": "12", "i3": "3"}[r["item_id"]])
            for r in INTERACTIONS]
    rows += [{"user_id": "u3", "item_id": "0012", "timestamp": "400"},
             {"user_id": "u3", "item_id": "99", "timestamp": "500"}]
    dataset = load_dataset(shop_folder(items=items, interactions=rows))
    assert len(dataset.interactions) == 5
    assert dataset.report.count("unknown item id") == 2
    file = dataset.report.entries()[0].file
    assert dataset.report.summary()[:2] == [
        f"{file}: skipped 1 x unknown item id (not in the catalogue; ids are compared as "
        "text: '0012' in interactions.csv and '12' in items.csv differ, but match once "
        "leading zeros and a trailing '.0' are removed) (e.g. row 6 item_id='0012')",
        f"{file}: skipped 1 x unknown item id (not in the catalogue) (e.g. row 7 item_id='99')"]


# 6. Parquet: text stored as binary, and timestamps without a zone.

def test_parquet_binary_text_is_decoded_and_pictures_stay_bytes(tmp_path):
    picture = io.BytesIO()
    Image.fromarray(np.full((5, 5, 3), 90, dtype=np.uint8)).save(picture, "PNG")
    pq.write_table(pa.table({
        "item_id": pa.array([b"a", b"b"], pa.binary()),
        "title": pa.array(["Café".encode(), "Crème".encode()], pa.binary()),
        "image": pa.array([picture.getvalue(), picture.getvalue()], pa.binary())}),
        tmp_path / "items.parquet")
    pq.write_table(pa.table({"user_id": pa.array([b"u", b"u"], pa.binary()),
                             "item_id": pa.array([b"a", b"b"], pa.binary()),
                             "timestamp": pa.array([b"10", b"20"], pa.binary())}),
                   tmp_path / "interactions.parquet")
    dataset = load_dataset(tmp_path, image_size=4)
    assert dataset.catalogue.item_ids.tolist() == ["a", "b"]
    assert dataset.catalogue.metadata["title"] == ["Café", "Crème"]
    assert dataset.interactions.user_ids.tolist() == ["u"]
    assert dataset.interactions.timestamp.tolist() == [10.0, 20.0]
    assert dataset.catalogue.image_mask.all()  # the picture bytes were decoded as a picture


def test_parquet_binary_text_in_another_encoding(tmp_path):
    pq.write_table(pa.table({"item_id": ["a", "b"],
                             "title": pa.array([b"Plain", "Crème".encode("cp1252")])}),
                   tmp_path / "items.parquet")
    write_csv(tmp_path / "interactions.csv", [{"user_id": "u", "item_id": "a", "timestamp": 1}])
    with pytest.raises(DataError) as error:
        load_dataset(tmp_path)
    assert (Path(error.value.file).name, error.value.row, error.value.field) == (
        "items.parquet", 2, "title")
    assert "bytes b'\\xe8' in b'Cr\\xe8me' are not valid utf-8" in str(error.value)
    assert "b'Cr" not in load_dataset(tmp_path, encoding="cp1252").catalogue.texts[1]
    assert load_dataset(tmp_path, encoding="cp1252").catalogue.texts == ["Plain", "Crème"]


def test_parquet_naive_timestamps_are_utc_whatever_the_local_zone(tmp_path):
    moments = [dt.datetime(2024, 1, 2, 10), dt.datetime(2024, 1, 2, 11)]
    pq.write_table(pa.table({"item_id": ["a"], "title": ["A"]}), tmp_path / "items.parquet")
    pq.write_table(pa.table({"user_id": ["u", "v"], "item_id": ["a", "a"],
                             "timestamp": pa.array(moments, pa.timestamp("us"))}),
                   tmp_path / "interactions.parquet")
    iso = tmp_path / "iso"
    iso.mkdir()
    write_csv(iso / "items.csv", [{"item_id": "a", "title": "A"}])
    write_csv(iso / "interactions.csv", [{"user_id": u, "item_id": "a", "timestamp": m}
                                         for u, m in (("u", "2024-01-02T10:00:00"),
                                                      ("v", "2024-01-02T11:00:00"))])
    for zone in ("Pacific/Kiritimati", "America/Adak", "UTC"):  # UTC+14, UTC-10
        with local_time_zone(zone):
            parquet_times = load_dataset(tmp_path).interactions.timestamp.tolist()
            iso_times = load_dataset(iso).interactions.timestamp.tolist()
        assert parquet_times == iso_times == [1704189600.0, 1704193200.0], zone


def test_parquet_nanosecond_timestamps_are_read(tmp_path):
    pq.write_table(pa.table({"item_id": ["a"], "title": ["A"]}), tmp_path / "items.parquet")
    pq.write_table(pa.table({"user_id": ["u"], "item_id": ["a"], "timestamp": pa.array(
        [1704189600123456789], pa.timestamp("ns", tz="UTC"))}),
        tmp_path / "interactions.parquet")
    assert load_dataset(tmp_path).interactions.timestamp.tolist() == [1704189600.123456]


# 7. An explicit split with nothing to validate on.

def test_split_without_valid_rows_warns_that_early_stopping_is_blind(shop_folder, caplog):
    folder = shop_folder()
    write_splits(folder / "splits.csv", [(r["user_id"], r["item_id"], r["timestamp"], s)
                                         for r, s in zip(INTERACTIONS, ["train", "train",
                                                                        "train", "test",
                                                                        "test"])])
    with caplog.at_level(logging.WARNING, logger="mmrec.data"):
        dataset = load_dataset(folder)
    warnings = [r for r in caplog.records
                if r.name == "mmrec.data" and "early stopping" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
    assert warnings[0].getMessage() == (
        f"{folder / 'splits.csv'}: the split labels no interaction 'valid' (train 3, test 2): "
        "early stopping has nothing to watch and the best epoch cannot be chosen; label "
        "some rows 'valid' (e.g. each user's second-to-last) or train a fixed number of "
        "epochs")
    assert make_split(dataset).sizes()["valid"] == 0


def test_mmrec_layout_without_valid_label_warns(tmp_path, caplog):
    folder = tmp_path / "baby"
    folder.mkdir()
    np.save(folder / "image_feat.npy", np.zeros((2, 3)))
    (folder / "baby.inter").write_text("userID\titemID\trating\ttimestamp\tx_label\n"
                                       "0\t0\t5\t1\t0\n0\t1\t5\t2\t2\n")
    with caplog.at_level(logging.WARNING, logger="mmrec.data"):
        load_dataset(folder)
    assert any("baby.inter: the split labels no interaction 'valid' (train 1, test 1)"
               in r.getMessage() for r in caplog.records if r.name == "mmrec.data")


def test_split_with_valid_rows_does_not_warn(tmp_path, caplog):
    path = tmp_path / "splits.csv"
    path.write_text("user_id,item_id,timestamp,split\na,0,5,valid\nb,2,7,test\n")
    with caplog.at_level(logging.WARNING, logger="mmrec.data"):
        make_split(tiny_split_dataset(), SplitConfig(split_file=str(path)))
    assert not [r for r in caplog.records if "early stopping" in r.getMessage()]


# The options reach the readers from the command line and from a TOML file.

def test_encoding_and_timestamp_unit_reach_the_readers_from_the_cli_and_toml(shop_folder,
                                                                            tmp_path):
    import json
    import subprocess
    import sys
    rows = [dict(r, timestamp=str(1_700_000_000_000 + int(r["timestamp"]) * 1000))
            for r in INTERACTIONS]  # milliseconds, as a warehouse exports them
    folder = shop_folder(items=[ITEMS[0], dict(ITEMS[1], title="Café crème"), ITEMS[2]],
                         interactions=rows)
    reencode(folder / "items.csv", "cp1252")

    def describe(*options: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "mmrec.cli", "data", "describe",
                               "--dataset", str(folder), "--json", *options],
                              capture_output=True, text=True, timeout=120, check=False)

    refused = describe()
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "row 2, field 'title'" in refused.stderr and "--encoding cp1252" in refused.stderr
    read = describe("--encoding", "cp1252")
    assert read.returncode == 0, read.stderr[-2000:]
    # detected as milliseconds: 1,700,000,100,000 ms is 2023-11-14 22:15:00 UTC
    assert json.loads(read.stdout)["time_range"][0] == "2023-11-14T22:15:00+00:00"
    (tmp_path / "read.toml").write_text('[data]\nencoding = "cp1252"\n')
    as_micro = describe("--config", str(tmp_path / "read.toml"), "--timestamp-unit", "us")
    assert as_micro.returncode == 0, as_micro.stderr[-2000:]
    assert json.loads(as_micro.stdout)["time_range"][0] == "1970-01-20T16:13:20.100000+00:00"
