"""Configuration of data preparation, in one dataclass with documented defaults.

The CLI and the Python API read the same dataclasses; a TOML file's
``[data]``, ``[model]`` and ``[train]`` tables map onto them key by key, and
an unknown key, a value of the wrong type or an impossible value is refused
before any work starts, naming the key. A built-in data set's own options sit
in a table under ``[data]`` named after it (``[data.shop]``); the data
registry owns and checks them.

Example:

    config = DataConfig(history_length=10, cold_item_share=0.1)
    config = DataConfig.from_dict({"history_length": 10, "shop": {"num_items": 500}})
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from mmrec.data import registry
from mmrec.data.splits import SplitConfig
from mmrec.typed_fields import checked_values


def read_toml(path: str | os.PathLike) -> dict:
    """A TOML file as a dict, or an error naming the file (what every command's
    ``--config`` reads; each takes its own tables from it).

    Raises:
      SystemExit: the file cannot be read.
      ValueError: it is not valid TOML.
    """
    import tomllib
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except OSError as error:
        raise SystemExit(f"mmrec: cannot read config {path}: {error}") from error
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"{path}: not valid TOML: {error}") from error


def set_key(document: dict, keys: list[str], value) -> None:
    """Sets ``document[k1]...[kn] = value`` in a TOML document (in place), making
    the tables on the way; a path through a value that is not a table is refused.

    Example:

        set_key(document, ["data", "shop", "num_items"], 500)
    """
    table = document
    for key in keys[:-1]:
        table = table.setdefault(key, {})
        if not isinstance(table, dict):
            raise ValueError(f"{'.'.join(keys[:-1])} is not a table")
    table[keys[-1]] = value


def default_cache_dir() -> str:
    """``$MMREC_CACHE`` or ``~/.cache/mmrec``."""
    return os.environ.get("MMREC_CACHE", str(Path.home() / ".cache" / "mmrec"))


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """What the input pipelines produce.

    Attributes:
      history_length: H, how many of the user's latest clicks feed the user
        tower (most recent first, padded, with a mask). On MovieLens-100K,
        3 seeds, 50 gave test NDCG@10 0.1002 ± 0.0061 against 0.1004 ± 0.0022
        for 20 (one seed had suggested +9%): no gain, more spread, so 20.
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
      encoding: text encoding of a data folder's files ("utf-8" reads
        through a byte-order mark; "cp1252" or "latin-1" for spreadsheet
        exports that are not UTF-8).
      timestamp_unit: unit of a data folder's epoch timestamps: "auto"
        (detected from their magnitude, and reported), "s", "ms", "us", "ns".
      dataset_options: a built-in data set's options by its name (the shop's
        size and shoppers: :class:`mmrec.data.shop.ShopConfig`); in TOML, a
        ``[data.shop]`` table. Options of other data sets than the one
        loaded are ignored.
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
    encoding: str = "utf-8"
    timestamp_unit: str = "auto"
    dataset_options: dict[str, dict] = dataclasses.field(default_factory=dict)

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
        _check_choice("data.timestamp_unit", self.timestamp_unit, TIMESTAMP_UNITS)
        try:
            "".encode(self.encoding)
        except LookupError:
            raise ValueError(f"data.encoding {self.encoding!r} is not a text encoding Python "
                             "knows (e.g. utf-8, cp1252, latin-1)") from None
        # Checked (unknown keys, wrong types) and held as complete tables, so two
        # configs of the same data set compare equal however they were written.
        object.__setattr__(self, "dataset_options", {
            name: registry.options_table(registry.dataset_options(name, table))
            for name, table in self.dataset_options.items()})

    @classmethod
    def from_dict(cls, values: dict) -> "DataConfig":
        """Builds from a TOML-style dict (``[data]`` and its sub-tables).

        Unknown keys and values of the wrong type are refused, naming the key.
        """
        values = dict(values)
        options = dict(values.pop("dataset_options", None) or {})
        for name in registry.WITH_OPTIONS:
            if name in values:
                options[name] = values.pop(name)
        values = checked_values(cls, values, "data")
        if "split" in values:
            if not isinstance(values["split"], dict):
                raise ValueError("data.split must be a table, e.g. [data.split]")
            values["split"] = SplitConfig(**checked_values(SplitConfig, values["split"],
                                                           "data.split"))
        return cls(**values, dataset_options=options)

    def loader_options(self, dataset: str) -> dict:
        """The keyword arguments :func:`mmrec.data.registry.load_dataset` takes to
        read ``dataset`` as this config says.

        Example:

            dataset = load_dataset("shop", **config.loader_options("shop"))
        """
        return {"image_size": self.image_size, "image_channels": self.image_channels,
                "options": self.dataset_options.get(str(dataset)), "encoding": self.encoding,
                "timestamp_unit": self.timestamp_unit}

    def to_dict(self) -> dict:
        """The ``[data]`` table (options as ``[data.NAME]`` sub-tables), without the
        machine-specific cache folder."""
        document = dataclasses.asdict(self)
        document.pop("cache_dir", None)
        document.update(document.pop("dataset_options"))
        return document


TIMESTAMP_UNITS = ("auto", "s", "ms", "us", "ns")
MODALITIES = ("both", "text", "image", "none")
FUSIONS = ("cross_attention", "concat")
POOLINGS = ("attention", "mean")
HISTORY_ENCODINGS = ("table", "tower")


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The two-tower model's shape.

    Attributes:
      embedding_dim: D, size of the L2-normalised user and item embeddings
        (with ``item_bias``, the first D - 1 dimensions are normalised).
      token_dim: width of text tokens, image patches and the fusion layers.
      text_layers: Transformer encoder blocks over the item text.
      attention_heads: heads of every attention layer (text encoder,
        cross-modal attention, history pooling).
      image_channels: output channels of each CNN stage (each stage halves the
        picture); the last feature map is pooled to ``image_grid`` x
        ``image_grid`` patch tokens.
      image_grid: side of the patch grid the image encoder emits.
      modalities: "both", "text", "image" or "none" (id-only); a modality the
        catalogue lacks is dropped automatically.
      fusion: "cross_attention" (text and image tokens attend to each other,
        then a per-item gate mixes them) or "concat" (the ablation: pooled
        vectors concatenated).
      item_id_embedding: add a learned per-item vector to the content vector
        (memorises warm items; content alone still places cold items).
      item_id_dropout: share of training items whose id vector is dropped, so
        the content path learns to stand alone.
      content_loss_weight: weight of a second retrieval loss in which every
        item is its content vector alone, without its id vector (0 turns it
        off; moot without ``item_id_embedding``). A cold item has nothing but
        its content vector; this loss trains that vector to land where the
        item's clicks say it belongs, on every click rather than on the
        ``item_id_dropout`` share of them.
      item_bias: the last of the ``embedding_dim`` dimensions carries a
        learned per-item bias, and every user vector's last dimension is 1, so
        a score is the cosine of the other dimensions plus the item's bias.
        Content alone cannot say how popular an item is, and the
        logQ-corrected loss takes popularity out of the negatives, so without
        an id vector nothing else can hold it (a popularity prior added to the
        scores lifted shop validation by 15%, docs/BENCHMARKS.md). One number
        per item memorises far less than an id vector. Items without training
        clicks (held out, or added to a published version later) score at the
        mean bias of the trained items. Off: on the shop it lowered validation
        NDCG@10 to 0.0420 from 0.0465 (seed 2, 3 epochs), its top 10 moving
        from the 50th to the 79th popularity percentile.
      user_id_embedding: add a learned per-user vector to the user tower.
      history_pooling: "attention" (learned query, recency encoding, padding
        mask) or "mean" (the ablation).
      history_summary_units: hidden layer sizes of a small network that reads
        three summaries of the history (the attention-pooled vector, the plain
        mean and the latest click) and adds its output to the pooled vector;
        () turns it off. A linear map of a weighted mean cannot turn "how
        often a user picks this attribute" into a taste (a log-ratio, which
        saturates); a ReLU layer can. Its last layer starts at zero, so
        training starts from the attention-pooled vector.
      history_encoding: "table" (history items are read from a table of item
        embeddings refreshed during training; fast) or "tower" (every history
        item runs through the item tower each step; exact but slow).
      history_fresh_items: with "table", this many most recent history items
        still run through the item tower each step, with gradients.
      temperature: softmax temperature of the retrieval loss on cosine scores.
      dropout: dropout inside the encoders.
    """

    embedding_dim: int = 64
    token_dim: int = 64
    text_layers: int = 1
    attention_heads: int = 2
    image_channels: tuple[int, ...] = (32, 64)
    image_grid: int = 4
    modalities: str = "both"
    fusion: str = "cross_attention"
    item_id_embedding: bool = True
    item_id_dropout: float = 0.3
    content_loss_weight: float = 0.0
    item_bias: bool = False
    user_id_embedding: bool = False
    history_pooling: str = "attention"
    history_summary_units: tuple[int, ...] = ()
    history_encoding: str = "table"
    history_fresh_items: int = 1
    temperature: float = 0.05
    dropout: float = 0.1

    def __post_init__(self) -> None:
        for name in ("embedding_dim", "token_dim", "attention_heads", "image_grid"):
            if getattr(self, name) < 1:
                raise ValueError(f"model.{name} must be at least 1, got {getattr(self, name)}")
        if self.history_fresh_items < 0:
            raise ValueError(f"model.history_fresh_items must be >= 0, got "
                             f"{self.history_fresh_items}")
        if self.text_layers < 0:
            raise ValueError(f"model.text_layers must be >= 0, got {self.text_layers}")
        if self.history_summary_units and min(self.history_summary_units) < 1:
            raise ValueError("model.history_summary_units must be positive, got "
                             f"{self.history_summary_units}")
        if not self.image_channels or min(self.image_channels) < 1:
            raise ValueError(f"model.image_channels must be positive, got {self.image_channels}")
        for name in ("token_dim", "embedding_dim"):
            if getattr(self, name) % self.attention_heads:
                raise ValueError(f"model.{name} ({getattr(self, name)}) must be divisible by "
                                 f"model.attention_heads ({self.attention_heads})")
        for name, choices in (("modalities", MODALITIES), ("fusion", FUSIONS),
                              ("history_pooling", POOLINGS),
                              ("history_encoding", HISTORY_ENCODINGS)):
            _check_choice(f"model.{name}", getattr(self, name), choices)
        if not 0.0 <= self.item_id_dropout < 1.0 or not 0.0 <= self.dropout < 1.0:
            raise ValueError("model.item_id_dropout and model.dropout must be in [0, 1)")
        if self.content_loss_weight < 0:
            raise ValueError("model.content_loss_weight must be >= 0, got "
                             f"{self.content_loss_weight}")
        if self.temperature <= 0:
            raise ValueError(f"model.temperature must be positive, got {self.temperature}")
        if self.item_bias and self.embedding_dim < 2:
            raise ValueError("model.item_bias takes one of the embedding dimensions: "
                             f"model.embedding_dim must be at least 2, got {self.embedding_dim}")
        if self.modalities == "none" and not self.item_id_embedding:
            raise ValueError("an item needs content or an id: modalities='none' requires "
                             "item_id_embedding=True")


JIT_MODES = ("auto", "on", "off")
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
LEARNING_RATE_SCHEDULES = ("constant", "cosine")
IMAGE_PRETRAINING = ("none", "outside-catalogue")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How the model is trained and evaluated during training.

    Attributes:
      epochs: at most this many passes over the training clicks.
      learning_rate: Adam's step size (the peak, with a schedule).
      learning_rate_schedule: "cosine" decays the step size from
        ``learning_rate`` to a tenth of it over ``epochs`` epochs; "constant"
        keeps it. Cosine lifted MovieLens-100K test NDCG@10 over 3 seeds
        (docs/BENCHMARKS.md).
      jit: "on" compiles the train step with XLA, "off" uses TensorFlow's
        kernels, "auto" compiles with a GPU and not on CPU (where XLA measured
        slower here; see docs/BENCHMARKS.md).
      precision: "float32", or a mixed policy for GPUs.
      logq_correction: subtract log(sampling probability) from in-batch
        negative logits (popular items are over-sampled as negatives).
      remove_accidental_hits: do not count a batch's copy of the positive as
        a negative.
      hard_negative_share: the share of the batch kept as negatives for each
        click: the ``round(share * batch_size)`` highest-scoring in-batch
        negatives (after the logQ correction), so the loss concentrates on the
        items the model confuses with the positive; 1.0 keeps every in-batch
        negative. The default 0.5 (128 of a 256 batch) lifted MovieLens-100K
        test NDCG@10 from 0.1081 ± 0.0037 to 0.1152 ± 0.0009 over 3 seeds and
        widened the catalogue coverage of the top 10; a share of 1/8 made
        the model collapse onto popular items (docs/BENCHMARKS.md).
      catalogue_negatives: items drawn each step uniformly from the items
        with training clicks, added to every click's in-batch negatives (mixed
        negative sampling). In-batch negatives follow popularity, so a
        rarely clicked item is rarely a negative and the user tower seldom
        learns to rank it down; these come from the item-embedding table (no
        gradient into the item tower, so they cost a gather and a matmul).
        0 turns them off.
      table_refresh_steps: steps between refreshes of the item-embedding table
        used for history items (0: once per epoch).
      table_refresh_items: items re-encoded at each refresh. 0 (the
        default): the whole catalogue, also at every epoch's start. N > 0:
        the next N items in turn (a rolling slice; the whole catalogue only
        at the run's start, and validation re-encodes it after every epoch),
        so an epoch's cost grows with its clicks rather than the catalogue;
        a history item's vector is then up to ``num_items / N`` refreshes old.
      early_stopping_patience: epochs without a better validation NDCG@10
        before training stops; 0 (the default) never stops early. Either way
        the best epoch by validation is kept. A decaying schedule's last,
        smallest steps are often its best: patience 3 under cosine decay
        stopped a 10-epoch MovieLens run at epoch 9, cutting the tail before
        validation could judge it, so the schedule runs to its end unless
        asked otherwise (a constant schedule may want a patience).
      eval_k: the cut-off of the validation metric that picks the best epoch.
      image_pretraining: "outside-catalogue" teaches the image encoder to
        classify and reconstruct the pictures the data set offers outside its
        catalogue before it learns from clicks (the shop offers the
        Fashion-MNIST photos it did not pick; mmrec/train/image_pretraining.py);
        "none" starts from random weights. Skipped, with a log line and a
        note in metrics.json, when the model has no image encoder; refused
        before training when the data set offers no such pictures.
      image_pretraining_epochs: passes over the pretraining pictures.
      seed: seeds weights, dropout and shuffling.
    """

    epochs: int = 10
    learning_rate: float = 0.003
    learning_rate_schedule: str = "cosine"
    jit: str = "auto"
    precision: str = "float32"
    logq_correction: bool = True
    remove_accidental_hits: bool = True
    hard_negative_share: float = 0.5
    catalogue_negatives: int = 0
    table_refresh_steps: int = 100
    table_refresh_items: int = 0
    early_stopping_patience: int = 0
    eval_k: int = 10
    image_pretraining: str = "none"
    image_pretraining_epochs: int = 3
    seed: int = 42

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError(f"train.epochs must be at least 1, got {self.epochs}")
        if self.learning_rate <= 0:
            raise ValueError(f"train.learning_rate must be positive, got {self.learning_rate}")
        _check_choice("train.learning_rate_schedule", self.learning_rate_schedule,
                      LEARNING_RATE_SCHEDULES)
        _check_choice("train.jit", self.jit, JIT_MODES)
        _check_choice("train.precision", self.precision, PRECISIONS)
        _check_choice("train.image_pretraining", self.image_pretraining, IMAGE_PRETRAINING)
        if self.image_pretraining_epochs < 1:
            raise ValueError(f"train.image_pretraining_epochs must be at least 1, got "
                             f"{self.image_pretraining_epochs}")
        if not 0.0 < self.hard_negative_share <= 1.0:
            raise ValueError(f"train.hard_negative_share must be in (0, 1] (1: every in-batch "
                             f"negative), got {self.hard_negative_share}")
        if self.early_stopping_patience < 0:
            raise ValueError(f"train.early_stopping_patience must be >= 0 (0: never stop "
                             f"early), got {self.early_stopping_patience}")
        if self.catalogue_negatives < 0:
            raise ValueError(f"train.catalogue_negatives must be >= 0, got "
                             f"{self.catalogue_negatives}")
        if self.table_refresh_steps < 0 or self.table_refresh_items < 0 or self.eval_k < 1:
            raise ValueError("train.table_refresh_steps and table_refresh_items must be >= 0 "
                             "and eval_k >= 1")

    def hard_negative_count(self, batch_size: int) -> int:
        """Negatives kept per click in a batch of ``batch_size``; 0 means all."""
        if self.hard_negative_share >= 1.0:
            return 0
        return min(batch_size - 1, max(1, round(self.hard_negative_share * batch_size)))


RANKER_ATTENTIONS = ("candidate", "mean")


@dataclasses.dataclass(frozen=True)
class RankerConfig:
    """The ranking stage's shape (:class:`mmrec.model.ranker.CandidateRanker`).

    Retrieval narrows the catalogue to ``candidates`` items by one dot product;
    the ranker orders them with a read of the history per candidate.

    Attributes:
      candidates: N, how many retrieved items the ranker re-orders; 100 was
        chosen on validation (MovieLens, seed 1: 0.1262 against 0.1253 at
        200; docs/BENCHMARKS.md).
      attention: "candidate" (each candidate attends over the history) or
        "mean" (the ablation: the plain mean of the history for every
        candidate).
      heads: heads of the candidate attention; the item width must be
        divisible by it.
      cross_layers: feature-crossing layers (``tfrs.layers.dcn.Cross``) over
        the candidate, its user vector, their product and the cheap features.
      cross_projection_dim: low-rank width of each cross layer's kernel (None:
        full rank).
      hidden_units: layer sizes of the MLP after the crossing.
      dropout: dropout before each hidden layer, in training.
      epochs: passes over the training lists; the epoch with the best
        validation NDCG@10 of the re-ranked full ranking is kept.
      learning_rate: Adam's step size.
      batch_size: lists per training step.
      retrieval_scale: the ranker's score is its network's output plus this
        times the retrieval score (the retriever's cosine). At the retriever's
        own 1 / temperature (20 for 0.05) the ranker starts from the
        retriever's logits and learns a correction to them; its last layer
        then starts at zero, so an untrained ranker orders as retrieval
        does. 0: the network alone, which reads the retrieval score only as
        one feature among others.

    Example:

        config = RankerConfig(candidates=100, attention="mean")
    """

    candidates: int = 100
    attention: str = "candidate"
    heads: int = 2
    cross_layers: int = 1
    cross_projection_dim: int | None = None
    hidden_units: tuple[int, ...] = (64,)
    dropout: float = 0.0
    epochs: int = 3
    learning_rate: float = 0.001
    batch_size: int = 256
    retrieval_scale: float = 0.0

    def __post_init__(self) -> None:
        _check_choice("ranker.attention", self.attention, RANKER_ATTENTIONS)
        if self.candidates < 2:
            raise ValueError(f"ranker.candidates must be >= 2 (a list to order), got "
                             f"{self.candidates}")
        if self.heads < 1 or self.cross_layers < 0:
            raise ValueError(f"ranker.heads must be >= 1 and ranker.cross_layers >= 0, got "
                             f"{self.heads} and {self.cross_layers}")
        if self.cross_projection_dim is not None and self.cross_projection_dim < 1:
            raise ValueError(f"ranker.cross_projection_dim must be >= 1 or unset, got "
                             f"{self.cross_projection_dim}")
        if any(units < 1 for units in self.hidden_units):
            raise ValueError(f"ranker.hidden_units must be positive, got {self.hidden_units}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"ranker.dropout must be in [0, 1), got {self.dropout}")
        if self.retrieval_scale < 0:
            raise ValueError(f"ranker.retrieval_scale must be >= 0, got {self.retrieval_scale}")
        if self.epochs < 1 or self.batch_size < 1 or self.learning_rate <= 0:
            raise ValueError(f"ranker.epochs and ranker.batch_size must be >= 1 and "
                             f"ranker.learning_rate > 0, got {self.epochs}, "
                             f"{self.batch_size} and {self.learning_rate}")

    @classmethod
    def from_dict(cls, values: dict) -> "RankerConfig":
        """From a ``[ranker]`` table (or its JSON copy in a ranker folder):
        unknown keys and wrong types refused, lists read as tuples."""
        return _from_table(cls, values, "ranker")


def _from_table(cls, values: dict, prefix: str):
    return cls(**checked_values(cls, values, prefix))


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything a training run needs: the ``[data]``, ``[model]`` and
    ``[train]`` tables of a TOML file, and its ``[ranker]`` table for the
    ranking stage trained over the run (``mmrec train-ranker``), so one file
    holds a data set's settings for both stages.

    Example:

        config = RunConfig.from_toml("mmrec.toml")
        config = RunConfig(model=ModelConfig(fusion="concat"))
    """

    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    ranker: RankerConfig = dataclasses.field(default_factory=RankerConfig)

    @classmethod
    def from_dict(cls, document: dict) -> "RunConfig":
        unknown = sorted(set(document) - {"data", "model", "train", "ranker"})
        if unknown:
            raise ValueError(f"unknown config table(s) {unknown}; known: data, model, train, "
                             f"ranker")
        return cls(data=DataConfig.from_dict(document.get("data", {})),
                   model=_from_table(ModelConfig, document.get("model", {}), "model"),
                   train=_from_table(TrainConfig, document.get("train", {}), "train"),
                   ranker=RankerConfig.from_dict(document.get("ranker", {})))

    @classmethod
    def from_toml(cls, path: str | os.PathLike) -> "RunConfig":
        document = read_toml(path)
        try:
            return cls.from_dict(document)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{path}: {error}") from error

    def to_dict(self) -> dict:
        """A JSON/TOML-ready dict (what a run folder and a version store);
        ``RunConfig.from_dict`` reads it back."""
        return {"data": self.data.to_dict(), "model": dataclasses.asdict(self.model),
                "train": dataclasses.asdict(self.train),
                "ranker": dataclasses.asdict(self.ranker)}
