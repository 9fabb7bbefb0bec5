"""A loaded data set: a catalogue, a click log, and what loading skipped.

Example:

    from mmrec.data import load_dataset
    ds = load_dataset("movielens-100k")
    len(ds.catalogue), len(ds.interactions), ds.report.summary()
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import numpy as np

from mmrec.data.catalogue import Catalogue
from mmrec.data.interactions import Interactions
from mmrec.data.problems import LoadReport


@dataclasses.dataclass
class Dataset:
    """Everything a reader produced.

    Attributes:
      name: a short name ("movielens-100k", "shop", or the folder name).
      catalogue: the items and their content.
      interactions: the click log, indices into ``catalogue``.
      report: counted skips and repairs made while loading.
      explicit_split: optional per-row "train"/"valid"/"test" labels that the
        source prescribes (a split file, MMRec's x_label); None if not given.
      ground_truth: generator-only knowledge (true utilities); None for real data.
      source: where the data came from, for the describe output.
      read_options: how a folder's files were read, {"encoding": ...,
        "timestamp_unit": ...}, so a split file given later is read the same
        way; empty for built-in data sets (the defaults apply).
      reference_scorers: scorers that know what no model can (a simulated
        shop's oracle and true-attributes scorer), by display name; each has
        ``fit(interactions, split, num_items)`` and ``score(queries,
        query_indices)`` like :class:`mmrec.evaluate.baselines.Baseline`, so
        evaluation can set a model beside them without knowing the data set.
      outside_pictures: for image pretraining, a function returning pictures
        of the catalogue's kind that are *not* in the catalogue (uint8 [M, H,
        W, C]) and their class labels (int [M], or None); None when the data
        set has no such pictures.
    """

    name: str
    catalogue: Catalogue
    interactions: Interactions
    report: LoadReport = dataclasses.field(default_factory=LoadReport)
    explicit_split: Any = None
    ground_truth: Any = None
    source: str = ""
    read_options: dict = dataclasses.field(default_factory=dict)
    reference_scorers: dict[str, Any] = dataclasses.field(default_factory=dict)
    outside_pictures: Callable[[], tuple[np.ndarray, np.ndarray | None]] | None = None
