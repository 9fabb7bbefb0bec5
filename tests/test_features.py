"""Item features: WordPiece vocabulary, tokenisation, and the content-keyed cache."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from mmrec.config import DataConfig
from mmrec.data import Catalogue
from mmrec.features import item_features as item_features_module
from mmrec.features.item_features import ItemFeatures, prepare_item_features
from mmrec.features.text import TextTokenizer, learn_vocabulary, write_vocabulary

TEXTS = ["red wool coat", "blue denim jeans", "red denim jacket", "blue wool scarf",
         "green linen shirt", "red linen shirt"]


def test_learned_vocabulary_tokenises_known_and_unknown_words():
    vocab = learn_vocabulary(TEXTS * 3, vocab_size=200)
    assert vocab[:2] == ["[PAD]", "[UNK]"]
    assert {"red", "wool", "denim", "shirt"} <= set(vocab)
    tokenizer = TextTokenizer(vocab, max_tokens=6)
    ids = tokenizer(["RED Wool", "zzz", ""]).numpy()
    assert ids.shape == (3, 6) and ids.dtype == np.int32
    assert ids[0, :2].tolist() == [vocab.index("red"), vocab.index("wool")]  # case-folded
    assert (ids[0, 2:] == 0).all()  # padded
    assert (ids[1] != 0).any() and (ids[2] == 0).all()
    # any number of texts, in batches: the same ids as one call
    np.testing.assert_array_equal(tokenizer.token_ids(TEXTS, batch_size=2), tokenizer(TEXTS))
    assert tokenizer.token_ids([]).shape == (0, 6)


def test_tokenizer_truncates_to_max_tokens():
    vocab = learn_vocabulary(TEXTS * 3, vocab_size=200)
    ids = TextTokenizer(vocab, max_tokens=3)([" ".join(["red"] * 10)]).numpy()
    assert ids.tolist() == [[vocab.index("red")] * 3]


def test_item_features_are_cached_by_content(tmp_path, monkeypatch):
    config = DataConfig(cache_dir=str(tmp_path), max_text_tokens=8, vocab_size=100)
    catalogue = Catalogue.build([str(i) for i in range(6)], TEXTS)
    first = prepare_item_features(catalogue, config)
    assert first.token_ids.shape == (6, 8) and first.images is None
    assert (tmp_path / "features" / first.key / "arrays.npz").is_file()

    def must_not_rebuild(*args, **kwargs):
        raise AssertionError("features were rebuilt although cached")

    monkeypatch.setattr(item_features_module, "build_item_features", must_not_rebuild)
    second = prepare_item_features(catalogue, config)
    np.testing.assert_array_equal(second.token_ids, first.token_ids)
    assert second.vocabulary == first.vocabulary
    changed = Catalogue.build([str(i) for i in range(6)], TEXTS[:-1] + ["new text"])
    with pytest.raises(AssertionError, match="rebuilt"):
        prepare_item_features(changed, config)  # other content, other key
    with pytest.raises(AssertionError, match="rebuilt"):
        prepare_item_features(catalogue, dataclasses.replace(config, max_text_tokens=9))


def test_supplied_vocab_file_is_used(tmp_path):
    path = tmp_path / "vocab.txt"
    write_vocabulary(["[PAD]", "[UNK]", "red", "shirt"], path)
    config = DataConfig(cache_dir=str(tmp_path), max_text_tokens=4, vocab_file=str(path))
    features = prepare_item_features(Catalogue.build(["a", "b"], ["red shirt", "blue"]), config)
    assert features.vocabulary == ["[PAD]", "[UNK]", "red", "shirt"]
    assert features.token_ids.tolist() == [[2, 3, 0, 0], [1, 0, 0, 0]]


def test_bad_vocab_file_is_refused(tmp_path):
    path = tmp_path / "vocab.txt"
    write_vocabulary(["red", "shirt"], path)
    config = DataConfig(cache_dir=str(tmp_path), vocab_file=str(path))
    with pytest.raises(ValueError, match=r"must start with \[PAD\] and \[UNK\]"):
        prepare_item_features(Catalogue.build(["a"], ["red"]), config)


def test_saved_features_round_trip(tmp_path):
    images = np.random.default_rng(0).integers(0, 255, (2, 4, 4, 1), dtype=np.uint8)
    catalogue = Catalogue.build(["a", "b"], ["red shirt", ""], images=images,
                                image_mask=np.array([True, False]),
                                image_features=np.ones((2, 3), dtype=np.float32))
    features = prepare_item_features(catalogue, DataConfig(cache_dir=str(tmp_path)),
                                     use_cache=False)
    loaded = ItemFeatures.load(features.save(tmp_path / "saved"))
    for name, array in features.arrays().items():
        np.testing.assert_array_equal(getattr(loaded, name), array)
    assert loaded.text_features is None and loaded.key == features.key
    assert loaded.text_mask.tolist() == [True, False]


def test_data_config_refuses_bad_values():
    with pytest.raises(ValueError, match="history_length must be at least 1"):
        DataConfig(history_length=0)
    with pytest.raises(ValueError, match="unknown data config key"):
        DataConfig.from_dict({"histroy_length": 5})
    with pytest.raises(ValueError, match=r"unknown data.split config key\(s\) \[.cold_share.\]"):
        DataConfig.from_dict({"split": {"cold_share": 0.1}})
    config = DataConfig.from_dict({"history_length": 5, "split": {"cold_item_share": 0.2}})
    assert config.history_length == 5 and config.split.cold_item_share == 0.2
