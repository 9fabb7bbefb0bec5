"""Item features, prepared once per catalogue and cached by content.

The model reads items as numbers: token ids, pixels, masks, precomputed
vectors. Learning the vocabulary and tokenising the catalogue takes seconds to
minutes, so the result is written to ``<cache_dir>/features/<key>/`` where the
key is a hash of the catalogue content and of the settings that shape the
features; a second run with the same data starts at once.

Example:

    features = prepare_item_features(dataset.catalogue, DataConfig())
    features.token_ids.shape    # (num_items, max_text_tokens)
    features.save("runs/ml/item_features")
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from mmrec.config import DataConfig
from mmrec.data.catalogue import Catalogue

logger = logging.getLogger("mmrec.features")
ARRAYS = ("token_ids", "text_mask", "images", "image_mask", "text_features", "image_features")
FORMAT_VERSION = 1


@dataclasses.dataclass
class ItemFeatures:
    """Per-item model inputs; row ``i`` is item index ``i``.

    Attributes:
      token_ids: int32 [N, L] WordPiece ids, 0-padded.
      text_mask: bool [N], True where the item has text.
      images: uint8 [N, H, W, C], or None when no item has a picture.
      image_mask: bool [N], True where the item has a picture.
      text_features, image_features: optional float32 [N, D] precomputed vectors.
      vocabulary: the WordPiece tokens; id = position.
      key: the content key the features were cached under.
    """

    token_ids: np.ndarray
    text_mask: np.ndarray
    images: np.ndarray | None
    image_mask: np.ndarray
    text_features: np.ndarray | None
    image_features: np.ndarray | None
    vocabulary: list[str]
    key: str

    def __len__(self) -> int:
        return len(self.token_ids)

    def arrays(self) -> dict[str, np.ndarray]:
        """The arrays that exist, by name."""
        return {name: getattr(self, name) for name in ARRAYS if getattr(self, name) is not None}

    def save(self, folder: str | os.PathLike) -> Path:
        """Writes ``arrays.npz``, ``vocab.txt`` and ``meta.json`` atomically."""
        folder = Path(folder)
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
        try:
            np.savez(staging / "arrays.npz", **self.arrays())
            (staging / "vocab.txt").write_text("\n".join(self.vocabulary) + "\n",
                                               encoding="utf-8")
            (staging / "meta.json").write_text(json.dumps(
                {"key": self.key, "format": FORMAT_VERSION, "items": len(self),
                 "shapes": {k: list(v.shape) for k, v in self.arrays().items()}}, indent=2))
            if folder.exists():
                shutil.rmtree(folder)
            staging.rename(folder)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike) -> "ItemFeatures":
        folder = Path(folder)
        missing = [n for n in ("arrays.npz", "vocab.txt", "meta.json") if not (folder / n).is_file()]
        if missing:
            raise FileNotFoundError(f"{folder} is not a prepared item-feature folder: "
                                    f"missing {', '.join(missing)}")
        meta = json.loads((folder / "meta.json").read_text())
        with np.load(folder / "arrays.npz", allow_pickle=False) as stored:
            arrays = {name: stored[name] if name in stored else None for name in ARRAYS}
        vocabulary = (folder / "vocab.txt").read_text(encoding="utf-8").splitlines()
        return cls(vocabulary=vocabulary, key=meta["key"], **arrays)


def feature_key(catalogue: Catalogue, config: DataConfig) -> str:
    """Hash of the catalogue content and the settings that shape the features."""
    digest = hashlib.sha256()
    digest.update(f"v{FORMAT_VERSION}:{catalogue.content_hash()}".encode())
    digest.update(f"L={config.max_text_tokens}:V={config.vocab_size}".encode())
    if config.vocab_file:
        digest.update(Path(config.vocab_file).read_bytes())
    return digest.hexdigest()[:20]


def build_item_features(catalogue: Catalogue, config: DataConfig, key: str) -> ItemFeatures:
    """Learns or reads the vocabulary and tokenises every item text."""
    from mmrec.features.text import TextTokenizer, learn_vocabulary, read_vocabulary

    texts = catalogue.texts
    if config.vocab_file:
        vocabulary = read_vocabulary(config.vocab_file)
    else:
        logger.info("learning a WordPiece vocabulary from %d item texts", len(texts))
        vocabulary = learn_vocabulary(texts, config.vocab_size)
    token_ids = TextTokenizer(vocabulary, config.max_text_tokens).token_ids(texts)
    return ItemFeatures(
        token_ids=token_ids, text_mask=catalogue.text_mask.copy(),
        images=catalogue.images, image_mask=catalogue.image_mask.copy(),
        text_features=catalogue.text_features, image_features=catalogue.image_features,
        vocabulary=vocabulary, key=key)


def prepare_item_features(catalogue: Catalogue, config: DataConfig = DataConfig(),
                          use_cache: bool = True) -> ItemFeatures:
    """The item features of ``catalogue``, from the cache when present."""
    key = feature_key(catalogue, config)
    cached = Path(config.cache_dir) / "features" / key
    if use_cache and (cached / "meta.json").is_file():
        try:
            logger.info("item features from cache %s", cached)
            return ItemFeatures.load(cached)
        except (OSError, ValueError, KeyError) as error:
            logger.warning("ignoring unreadable feature cache %s: %s", cached, error)
    features = build_item_features(catalogue, config, key)
    if use_cache:
        features.save(cached)
    return features
