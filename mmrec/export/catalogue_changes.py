"""Changing a published catalogue without retraining: add new items, retire old ones.

New products arrive every day and retired ones must leave the lists the same
day; retraining for either would take hours and move every other item. The
item tower reads content, so a new item is placed by its text and picture
alone, as a cold item is in training: :func:`add_items` embeds the new items
with the live version's item tower and publishes the next version with them
appended. Existing items keep their vectors bit for bit (they are copied, not
re-encoded), the new ones have no trained id vector (zero, like any untrained
item) and the version records which items were trained and which were added,
so a later fine-tuning job knows. :func:`retire_items` publishes the next
version in which the given items are never recommended (they may stay in
users' histories, where they still describe a taste).

Both publish through :func:`mmrec.export.publish.publish`, so a change that
dies leaves no partial version, and TF Serving and ``Recommender.reload()``
pick the new version up.

What this does not do: it does not learn anything (a new item's id vector
stays zero until a fine-tuning job trains it), and it cannot embed items of a
model trained on precomputed feature vectors (it has no encoder for raw
content).

Example:

    change = add_items("saved_models/mmrec", "new_items.csv")
    change.version, change.added[:3], change.report.summary()
    retire_items("saved_models/mmrec", ["sku-123", "sku-456"])
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Iterable

import numpy as np

from mmrec.data.problems import DataError, LoadReport
from mmrec.data.tabular import read_items
from mmrec.export.publish import PublishedModel, load_published, publish
from mmrec.export.serving_tables import ServingTables
from mmrec.features.item_features import ItemFeatures
from mmrec.features.text import TextTokenizer
from mmrec.model.two_tower import build_two_tower

logger = logging.getLogger("mmrec.export")


@dataclasses.dataclass
class CatalogueChange:
    """What a catalogue change published.

    Attributes:
      version: the new version's folder.
      added: item ids appended (``add_items``).
      retired: item ids retired (``retire_items``).
      report: rows skipped or repaired while reading new items.
    """

    version: Path
    added: list[str] = dataclasses.field(default_factory=list)
    retired: list[str] = dataclasses.field(default_factory=list)
    report: LoadReport = dataclasses.field(default_factory=LoadReport)


def _new_item_features(published: PublishedModel, texts: list[str], text_mask: np.ndarray,
                       images: np.ndarray | None, image_mask: np.ndarray) -> ItemFeatures:
    """The version's item features with the new items' rows appended."""
    features = published.features
    tokens = TextTokenizer(features.vocabulary, int(features.token_ids.shape[1])).token_ids(texts)
    appended = None
    if features.images is not None:
        appended = np.concatenate([features.images, images])
    return ItemFeatures(
        token_ids=np.concatenate([features.token_ids, tokens.astype(features.token_ids.dtype)]),
        text_mask=np.concatenate([features.text_mask, text_mask]),
        images=appended, image_mask=np.concatenate([features.image_mask, image_mask]),
        text_features=None, image_features=None, vocabulary=features.vocabulary,
        key=f"{features.key}+{len(texts)}")


def add_items(model_dir: str | os.PathLike, items: str | os.PathLike, *,
              encoding: str = "utf-8") -> CatalogueChange:
    """Embeds the items of table ``items`` from their content and publishes the
    next version with them appended.

    Args:
      model_dir: the folder of versions; the latest is extended.
      items: an items table in the data loaders' schema (docs/DATA.md):
        ``item_id``, text columns, optional ``image_path`` (relative to the
        table's folder) or ``image`` bytes.
      encoding: the table's text encoding.

    Raises:
      DataError: the table holds no item the version does not already have, or
        cannot be read (file, row and field named).
      ValueError: the version was trained on precomputed feature vectors.
    """
    published = load_published(model_dir, task="add items to")
    features = published.features
    if features.text_features is not None or features.image_features is not None:
        raise ValueError("catalogue add embeds items from their text and pictures; this "
                         "version was trained on precomputed feature vectors, which it cannot "
                         "compute for new items")
    size, channels = ((64, 3) if features.images is None
                      else (int(features.images.shape[1]), int(features.images.shape[3])))
    catalogue, report = read_items(items, image_size=size, image_channels=channels,
                                   encoding=encoding)
    known = set(published.tables.item_ids.tolist())
    new = [i for i, item_id in enumerate(catalogue.item_ids.tolist()) if item_id not in known]
    already = len(catalogue) - len(new)
    if already:
        examples = [i for i in catalogue.item_ids.tolist() if i in known][:3]
        report.skip(str(items), "item already in the version (kept as it is)",
                    count=already, value=", ".join(examples))
    if not new:
        raise DataError(f"no new items: all {len(catalogue)} are already in version "
                        f"{published.number}", file=str(items))
    if features.images is None and catalogue.image_mask[new].any():
        report.skip(str(items), "picture ignored (the model reads no pictures)",
                    count=int(catalogue.image_mask[new].sum()), kept=True)
    images = None
    if features.images is not None:
        images = (catalogue.images[new] if catalogue.images is not None
                  else np.zeros((len(new), *features.images.shape[1:]), np.uint8))
    image_mask = (catalogue.image_mask[new] if features.images is not None
                  else np.zeros(len(new), bool))
    grown = _new_item_features(published, [catalogue.texts[i] for i in new],
                               catalogue.text_mask[new], images, image_mask)

    model = build_two_tower(published.config, grown, len(published.tables.user_ids))
    model.copy_weights_from(published.model)
    old_count = published.tables.num_items
    vectors, new_gates = model.encode_range(old_count, old_count + len(new),
                                            desc="embedding new items")
    tables = _appended_tables(published.tables, catalogue, new)
    embeddings = np.concatenate([published.item_embeddings, vectors])
    ranker = (published.ranker.with_items(embeddings, new_gates)
              if published.ranker is not None else None)
    version = publish(
        model, grown, tables, published.config, model_dir, k=published.k, data=published.data,
        split=published.split,
        lineage={"from": "version", "version": published.number, "change": "add items",
                 "items": len(new)},
        item_embeddings=embeddings, gates=np.concatenate([published.gates, new_gates]),
        ranker=ranker)
    added = [str(catalogue.item_ids[i]) for i in new]
    logger.info("added %d items as version %s", len(added), version.name)
    return CatalogueChange(version=version, added=added, report=report)


def _appended_tables(tables: ServingTables, catalogue, new: list[int]) -> ServingTables:
    """``tables`` with the new items appended: untrained, not retired, never clicked."""
    count = len(new)
    metadata = {}
    for key, values in tables.metadata.items():
        fresh = catalogue.metadata.get(key)
        metadata[key] = list(values) + [str(fresh[i]) if fresh else "" for i in new]
    return dataclasses.replace(
        tables,
        item_ids=np.concatenate([tables.item_ids, catalogue.item_ids[new].astype(str)]),
        metadata=metadata,
        trained_items=np.concatenate([tables.trained_items, np.zeros(count, bool)]),
        retired=np.concatenate([tables.retired, np.zeros(count, bool)]),
        popularity=np.concatenate([tables.popularity, np.zeros(count, np.float32)]))


def retire_items(model_dir: str | os.PathLike, item_ids: Iterable[str]) -> CatalogueChange:
    """Publishes the next version in which ``item_ids`` are never recommended.

    Raises:
      DataError: an id is not in the version (all unknown ones are named).
    """
    published = load_published(model_dir, task="retire items of")
    wanted = [str(i).strip() for i in item_ids if str(i).strip()]
    index = published.tables.item_index()
    unknown = [i for i in wanted if i not in index]
    if unknown or not wanted:
        raise DataError(f"cannot retire {len(unknown)} item id(s) that version "
                        f"{published.number} does not have: {unknown[:10]}" if unknown
                        else "no item ids to retire")
    retired = published.tables.retired.copy()
    retired[[index[i] for i in wanted]] = True
    version = publish(
        published.model, published.features,
        dataclasses.replace(published.tables, retired=retired), published.config, model_dir,
        k=published.k, data=published.data, split=published.split,
        lineage={"from": "version", "version": published.number, "change": "retire items",
                 "items": len(wanted)},
        item_embeddings=published.item_embeddings, gates=published.gates,
        ranker=published.ranker)
    return CatalogueChange(version=version, retired=wanted)
