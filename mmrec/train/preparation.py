"""Preparing a run: the data set, its item features, split, examples and queries.

Everything here happens before a model exists, and all of it can fail on the
user's data or config; so it runs first, and a run folder is written only
once it has all succeeded (see :func:`mmrec.train.trainer.train`).

Example:

    dataset = load_run_dataset("movielens-100k", config.data)
    data = prepare_data(dataset, config.data)
    check_config(config, data)          # refuses what the data cannot satisfy
    data.train_examples["history"].shape
"""

from __future__ import annotations

import dataclasses

import numpy as np

from mmrec.config import DataConfig, RunConfig
from mmrec.data.dataset import Dataset
from mmrec.data.registry import load_dataset
from mmrec.data.splits import Split, make_split
from mmrec.evaluate.queries import EvaluationQueries, build_queries
from mmrec.features.examples import build_examples
from mmrec.features.item_features import ItemFeatures, prepare_item_features
from mmrec.model.image_encoder import check_picture_size
from mmrec.model.towers import CatalogueSpec
from mmrec.train.image_pretraining import NO_OUTSIDE_PICTURES


@dataclasses.dataclass
class PreparedData:
    """A data set with its item features, split, training examples and queries."""

    dataset: Dataset
    features: ItemFeatures
    split: Split
    train_examples: dict[str, np.ndarray]
    valid: EvaluationQueries
    test: EvaluationQueries
    ranker_examples: dict[str, np.ndarray] | None = None  # the split's ranker clicks

    @property
    def train_item_counts(self) -> np.ndarray:
        return np.bincount(self.dataset.interactions.item[self.split.train],
                           minlength=len(self.dataset.catalogue))


def load_run_dataset(name: str, config: DataConfig) -> Dataset:
    """Loads the data set a run names, read as ``config`` says (a built-in data
    set with its options from ``config.dataset_options``)."""
    return load_dataset(name, **config.loader_options(name))


def prepare_data(dataset: Dataset, config: DataConfig, split: Split | None = None,
                 features: ItemFeatures | None = None) -> PreparedData:
    """Item features, split, examples and evaluation queries for ``dataset``."""
    features = features or prepare_item_features(dataset.catalogue, config)
    split = split or make_split(dataset, config.split)
    num_items = len(dataset.catalogue)
    examples = build_examples(dataset.interactions, split, "train", config.history_length,
                              num_items)
    if len(examples["item"]) == 0:
        raise ValueError("the split leaves no training interactions")
    return PreparedData(
        dataset=dataset, features=features, split=split, train_examples=examples,
        valid=build_queries(dataset.interactions, split, "valid", config.history_length),
        test=build_queries(dataset.interactions, split, "test", config.history_length),
        ranker_examples=(build_examples(dataset.interactions, split, "ranker",
                                        config.history_length, num_items)
                         if len(split.ranker) else None))


def check_config(config: RunConfig, data: PreparedData) -> None:
    """Refuses settings the data cannot satisfy, before any training."""
    num_items = len(data.dataset.catalogue)
    if config.train.eval_k > num_items:
        raise ValueError(f"train.eval_k ({config.train.eval_k}) is larger than the catalogue "
                         f"({num_items} items)")
    if config.data.batch_size > len(data.train_examples["item"]):
        raise ValueError(f"data.batch_size ({config.data.batch_size}) is larger than the "
                         f"{len(data.train_examples['item'])} training examples")
    spec = CatalogueSpec.from_features(data.features)
    if config.model.modalities == "image" and not spec.uses_image(config.model):
        raise ValueError(f"model.modalities='image' but data set {data.dataset.name!r} has no "
                         "images or image features")
    if spec.uses_image(config.model) and spec.image_shape is not None:
        check_picture_size(min(spec.image_shape[:2]), config.model.image_channels)
        if (config.train.image_pretraining != "none"
                and data.dataset.outside_pictures is None):
            raise ValueError(NO_OUTSIDE_PICTURES)
