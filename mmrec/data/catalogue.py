"""The item catalogue: ids, text, pixels, precomputed features and masks.

A multimodal catalogue is rarely complete: MovieLens has text but no pictures,
a shop may have a photo missing or a blank description. The catalogue keeps an
explicit per-item mask for every modality, so the model can tell "no image"
from "a black image".

Example:

    catalogue = Catalogue.build(
        item_ids=["a", "b"], texts=["red shirt", ""],
        images=None, metadata={"title": ["Red shirt", "Plain"]})
    catalogue.text_mask      # array([ True, False])
    catalogue.coverage()     # {'text': 0.5, 'image': 0.0, ...}
"""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np

from mmrec.data.problems import DataError


@dataclasses.dataclass
class Catalogue:
    """Items with their content; row ``i`` of every array is item index ``i``.

    Attributes:
      item_ids: external item ids as strings, [N], unique.
      texts: the text the text encoder reads, "" where the item has none.
      text_mask: bool [N], True where the item has non-empty text.
      images: uint8 [N, H, W, C] decoded pixels, zeros where absent, or None
        when the catalogue has no images at all.
      image_mask: bool [N], True where the item has a usable image.
      text_features: optional float32 [N, Dt] precomputed text vectors.
      image_features: optional float32 [N, Di] precomputed image vectors.
      metadata: per-item display fields (title, category, ...), lists of [N].
    """

    item_ids: np.ndarray
    texts: list[str]
    text_mask: np.ndarray
    images: np.ndarray | None
    image_mask: np.ndarray
    text_features: np.ndarray | None = None
    image_features: np.ndarray | None = None
    metadata: dict[str, list] = dataclasses.field(default_factory=dict)

    @classmethod
    def build(cls, item_ids, texts, images: np.ndarray | None = None,
              image_mask: np.ndarray | None = None,
              text_features: np.ndarray | None = None,
              image_features: np.ndarray | None = None,
              metadata: dict[str, list] | None = None) -> "Catalogue":
        """Validates shapes and derives the masks that are not given."""
        item_ids = np.asarray([str(i) for i in item_ids], dtype=object)
        n = len(item_ids)
        texts = [t.strip() if isinstance(t, str) else "" for t in texts]
        if len(texts) != n:
            raise DataError(f"catalogue has {n} items but {len(texts)} texts")
        if len(set(item_ids.tolist())) != n:
            raise DataError("catalogue item ids are not unique")
        if images is not None:
            if images.dtype != np.uint8 or images.ndim != 4 or len(images) != n:
                raise DataError(
                    f"images must be uint8 [N={n}, H, W, C]; got {images.dtype} {images.shape}")
            if image_mask is None:
                image_mask = np.ones(n, dtype=bool)
        image_mask = (np.zeros(n, dtype=bool) if image_mask is None
                      else np.asarray(image_mask, dtype=bool))
        for name, feats in (("text_features", text_features), ("image_features", image_features)):
            if feats is not None and (feats.ndim != 2 or len(feats) != n):
                raise DataError(f"{name} must be [N={n}, D]; got {feats.shape}")
        return cls(
            item_ids=item_ids, texts=texts,
            text_mask=np.array([bool(t) for t in texts], dtype=bool),
            images=images, image_mask=image_mask,
            text_features=None if text_features is None else text_features.astype(np.float32),
            image_features=None if image_features is None else image_features.astype(np.float32),
            metadata=dict(metadata or {}))

    def __len__(self) -> int:
        return len(self.item_ids)

    def index(self) -> dict[str, int]:
        """Maps external item id to item index."""
        return {item_id: i for i, item_id in enumerate(self.item_ids.tolist())}

    def coverage(self) -> dict[str, float]:
        """Share of items with each modality, in [0, 1]."""
        n = max(len(self), 1)
        return {
            "text": float(self.text_mask.sum()) / n,
            "image": float(self.image_mask.sum()) / n,
            "text_features": 0.0 if self.text_features is None else 1.0,
            "image_features": 0.0 if self.image_features is None else 1.0,
        }

    def content_hash(self) -> str:
        """A digest of everything the item features are computed from."""
        digest = hashlib.sha256()
        digest.update("\x1f".join(self.item_ids.tolist()).encode())
        digest.update("\x1e".join(self.texts).encode())
        for array in (self.images, self.image_mask, self.text_features, self.image_features):
            if array is not None:
                digest.update(str(array.shape).encode())
                digest.update(np.ascontiguousarray(array).tobytes())
        return digest.hexdigest()
