"""Configuration of data preparation, in one dataclass with documented defaults.

The CLI and the Python API read the same dataclass; a TOML file's ``[data]``
table maps onto it key by key, and an unknown key or an impossible value is
refused before any work starts.

Example:

    config = DataConfig(history_length=10, cold_item_share=0.1)
    config = DataConfig.from_dict({"history_length": 10})
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from mmrec.data.splits import SplitConfig


def default_cache_dir() -> str:
    """``$MMREC_CACHE`` or ``~/.cache/mmrec``."""
    return os.environ.get("MMREC_CACHE", str(Path.home() / ".cache" / "mmrec"))


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """What the input pipelines produce.

    Attributes:
      history_length: H, how many of the user's latest clicks feed the user
        tower (most recent first, padded, with a mask).
      max_text_tokens: L, token ids per item text (longer texts are cut).
      vocab_size: target size of the WordPiece vocabulary learned from the
        catalogue text.
      vocab_file: a vocab file to use instead of learning one.
      image_size: side of the square images decoded from a data folder's
        pictures (built-in data sets keep their native size).
      image_channels: 1 (grayscale) or 3 (RGB) for a data folder's pictures.
      batch_size: training examples per batch.
      shuffle_buffer: examples in the shuffle buffer (0 turns shuffling off).
      split: the train/valid/test split (see :class:`SplitConfig`).
      seed: seeds shuffling.
      cache_dir: where prepared item features are cached, keyed by content.
    """

    history_length: int = 20
    max_text_tokens: int = 32
    vocab_size: int = 4000
    vocab_file: str | None = None
    image_size: int = 64
    image_channels: int = 3
    batch_size: int = 256
    shuffle_buffer: int = 100_000
    split: SplitConfig = dataclasses.field(default_factory=SplitConfig)
    seed: int = 42
    cache_dir: str = dataclasses.field(default_factory=default_cache_dir)

    def __post_init__(self) -> None:
        positive = ("history_length", "max_text_tokens", "image_size", "batch_size")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"data.{name} must be at least 1, got {getattr(self, name)}")
        if self.vocab_size < 10:
            raise ValueError(f"data.vocab_size must be at least 10, got {self.vocab_size}")
        if self.image_channels not in (1, 3):
            raise ValueError(f"data.image_channels must be 1 or 3, got {self.image_channels}")
        if self.shuffle_buffer < 0:
            raise ValueError(f"data.shuffle_buffer must be >= 0, got {self.shuffle_buffer}")

    @classmethod
    def from_dict(cls, values: dict) -> "DataConfig":
        """Builds from a TOML-style dict; unknown keys are an error."""
        values = dict(values)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown data config key(s) {unknown}; known: {sorted(known)}")
        if isinstance(values.get("split"), dict):
            split = values["split"]
            split_known = {f.name for f in dataclasses.fields(SplitConfig)}
            bad = sorted(set(split) - split_known)
            if bad:
                raise ValueError(f"unknown data.split key(s) {bad}; known: {sorted(split_known)}")
            if "time_fractions" in split:
                split = {**split, "time_fractions": tuple(split["time_fractions"])}
            values["split"] = SplitConfig(**split)
        return cls(**values)
